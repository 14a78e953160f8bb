"""A student (a LoRA adapter on a GGUF base) as one GGUF file that llama.cpp runs: merged, quantised.

llama.cpp can apply a LoRA adapter at run time, but then every layer pays for the adapter's two extra
products; folding the adapter into the weights costs nothing per token. The base's weights are
dequantised (the exact numbers the transformers engine computes with), the adapter's update
``scale * B @ A`` is added, and the sum is quantised again:

* ``q8_0``: 8-bit blocks of 32 with one scale each; 91% of the default student's answers are those
  of float32 (F1 -1.9) at half the memory of the transformers engine (docs/performance.md);
* ``q4_0``: 4-bit blocks, faster and smaller again, but its answers move far (F1 -7.2 there);
* ``f16`` / ``f32``: no quantisation, for checking the merge itself.

Norms stay float32 and the token embedding (which is also the output head of tied models) keeps at
least 8 bits. The result is cached under ``loading.cache_dir()``, keyed by the adapter's sha256 and
the base file's size and modification time, so it is built once (seconds for the 135M student).

    python -m universalner.student_gguf universalner-135m --quant q8_0 -o student.gguf
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from .checksums import sha256_file
from .loading import ModelNotFoundError, cache_dir

QUANTS = ("q8_0", "q4_0", "f16", "f32")
FORMAT = 1  # bump when the merge changes, so that cached files are rebuilt

# peft module names of a LLaMA-style model -> llama.cpp tensor names
_TENSORS = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
log = logging.getLogger(__name__)


def adapter_base(folder: Path) -> Path:
    """The GGUF file an adapter folder was trained on (a shipped student's checked base, or the
    ``base_model_name_or_path`` of a tuned one when that is a .gguf file), else a clear error."""
    from .student import base_gguf, is_shipped, on_shipped_base

    if is_shipped(folder) or on_shipped_base(folder):  # shipped, or adapted from it (tune --from)
        return base_gguf(folder)
    base = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path") or ""
    path = Path(os.path.expanduser(base))
    if path.suffix.lower() == ".gguf" and path.is_file():
        return path
    raise ModelNotFoundError(
        f"engine='llama.cpp' runs an adapter merged into its GGUF base, but {folder} was trained on "
        f"{base!r}, not a .gguf file here; use engine='transformers', or set base_model_name_or_path in "
        f"{folder}/adapter_config.json to the base's .gguf file"
    )


def _permute(w, n_head: int):
    """llama.cpp's row order for attention q/k weights (its converter's ``permute``), applied to a
    transformers-ordered update so that it lands on the rows it belongs to."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _deltas(folder: Path, n_head: int, n_head_kv: int) -> dict[str, object]:
    """llama.cpp tensor name -> float32 update ``(B @ A) * scale`` of every adapted weight, computed as
    ``lora.merge_lora`` computes it for the transformers engine (the same adapters qualify)."""
    import torch

    from .lora import plain_factors

    plain = plain_factors(folder)
    if plain is None:
        raise ValueError(
            f"{folder}: only plain LoRA adapters (no DoRA, rsLoRA, per-module ranks or extra modules) can be "
            "merged into a GGUF file; use engine='transformers'"
        )
    scale, _, factors = plain
    out: dict[str, object] = {}
    for module, ab in factors.items():
        parts = module.split(".")
        try:
            layer = int(parts[parts.index("layers") + 1])
        except (ValueError, IndexError):
            raise ValueError(f"{folder}: adapter module {module} is not in a decoder layer") from None
        name = _TENSORS.get(".".join(parts[-2:]))
        if name is None:
            raise ValueError(f"{folder}: adapter module {module} has no llama.cpp tensor name")
        delta = (torch.matmul(ab["B"].float(), ab["A"].float()) * scale).numpy()
        if name == "attn_q":
            delta = _permute(delta, n_head)
        elif name == "attn_k":
            delta = _permute(delta, n_head_kv)
        out[f"blk.{layer}.{name}.weight"] = delta
    if not out:
        raise ValueError(f"{folder}: the adapter holds no LoRA weights")
    return out


def merged_gguf(
    folder: str | os.PathLike, quant: str = "q8_0", output: str | os.PathLike | None = None
) -> Path:
    """The student in ``folder`` merged into its base and quantised as ``quant``; returns the file.

    Without ``output`` the file goes to the cache and is reused while adapter and base are unchanged.
    """
    if quant not in QUANTS:
        raise ValueError(f"quant must be one of {QUANTS}, not {quant!r}")
    folder = Path(folder)
    if not (folder / "adapter_config.json").is_file():
        raise ModelNotFoundError(f"{folder} is not an adapter folder (no adapter_config.json)")
    base = adapter_base(folder)
    if output is None:
        st = base.stat()
        key = sha256_file(folder / "adapter_model.safetensors")[:12] + f"-{st.st_size}-{int(st.st_mtime)}"
        target = cache_dir() / "llamacpp" / f"{folder.name}-{quant}-v{FORMAT}-{key}.gguf"
        if target.is_file():
            return target
    else:
        target = Path(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("writing %s merged into its base as %s, once (%s)", folder.name, quant, target)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    try:
        _write(folder, base, quant, tmp)
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def _write(folder: Path, base: Path, quant: str, out: Path) -> None:
    import gguf
    import numpy as np
    from gguf.quants import dequantize, quantize

    Q = gguf.GGMLQuantizationType
    reader = gguf.GGUFReader(str(base))
    arch = reader.fields["general.architecture"].contents()
    n_head = int(reader.fields[f"{arch}.attention.head_count"].contents())
    n_head_kv = int(reader.fields[f"{arch}.attention.head_count_kv"].contents())
    deltas = _deltas(folder, n_head, n_head_kv)
    body = {"q8_0": Q.Q8_0, "q4_0": Q.Q4_0, "f16": Q.F16, "f32": Q.F32}[quant]
    embed = Q.Q8_0 if quant == "q4_0" else body  # the (tied) output head keeps 8 bits
    file_type = {"q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
                 "f16": gguf.LlamaFileType.MOSTLY_F16, "f32": gguf.LlamaFileType.ALL_F32}[quant]  # fmt: skip

    writer = gguf.GGUFWriter(str(out), arch)
    for field in reader.fields.values():
        if field.name in ("general.architecture", "general.finetune") or field.name.startswith("GGUF."):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        value = int(file_type) if field.name == "general.file_type" else field.contents()
        writer.add_key_value(field.name, value, vtype, sub_type=sub)
    writer.add_string("general.finetune", f"{folder.name} (universalner LoRA merged, {quant})")

    used = set()
    for t in reader.tensors:
        data = t.data
        shape = [int(x) for x in reversed(t.shape)]  # numpy order: rows, columns
        w = dequantize(data, t.tensor_type).reshape(shape).astype(np.float32, copy=False)
        if t.name in deltas:
            w = w + deltas[t.name]
            used.add(t.name)
        if w.ndim < 2 or w.shape[-1] % 32:
            writer.add_tensor(t.name, w)
            continue
        qtype = embed if t.name == "token_embd.weight" else body
        if qtype == Q.F32:
            writer.add_tensor(t.name, w)
        elif qtype == Q.F16:
            writer.add_tensor(t.name, w.astype(np.float16))
        else:
            writer.add_tensor(t.name, quantize(w, qtype), raw_dtype=qtype)
    missing = sorted(set(deltas) - used)
    if missing:
        raise ValueError(
            f"{folder}: the base {base.name} has no tensor for {missing[:3]} (another architecture?)"
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m universalner.student_gguf", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("student", help="a shipped student's name (universalner-135m) or a tuned adapter folder")
    ap.add_argument("--quant", choices=QUANTS, default="q8_0", help="weight format (default: q8_0)")
    ap.add_argument("-o", "--output", required=True, help="the .gguf file to write")
    a = ap.parse_args(argv)
    from .quiet import setup
    from .student import student_folder

    setup(libraries=False)
    folder = student_folder(a.student) or Path(a.student)
    try:
        if Path(a.output).is_dir():
            raise ValueError(f"--output {a.output} is a folder; give the .gguf file to write")
        print(merged_gguf(folder, a.quant, a.output))
    except (ModelNotFoundError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
