"""``python -m universalner.tune.extract``: a full fine-tune -> a LoRA adapter of rank r, by SVD.

A full fine-tune of a 135M student is 270 MB in bfloat16 and cannot ship inside a package; the
change it made to each linear layer, ``W_full - W_base``, mostly lies in a few directions, so its
best rank-r approximation (truncated SVD, Eckart-Young) ships as a plain LoRA adapter that every
engine already loads and merges. What it cannot carry is reported, not hidden: the change to the
embeddings and norms (left at the base's) and the share of each layer's change beyond rank r.
Measure the extraction against the full weights on dev before shipping it (docs/students.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from ..weights.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from ..weights.record import TEMPLATE_RECORD, read_template_record, write_template_record

LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)


def _weights(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder} holds no .safetensors weights")
    out: dict[str, Any] = {}
    for f in files:
        out.update(load_file(str(f)))
    return out


def factorize(delta: Any, rank: int) -> tuple[Any, Any, float]:
    """(A, B, relative error) with ``B @ A`` the best rank-``rank`` approximation of ``delta``; the
    singular values are split evenly between the two factors so both stay in float16's range."""
    import torch

    u, s, vh = torch.linalg.svd(delta.float(), full_matrices=False)
    r = min(rank, s.numel())
    root = s[:r].sqrt()
    b, a = u[:, :r] * root, root[:, None] * vh[:r]
    if r < rank:  # a layer narrower than the rank: zeros keep one rank for all (as peft's config says)
        a = torch.cat([a, a.new_zeros(rank - r, a.shape[1])])
        b = torch.cat([b, b.new_zeros(b.shape[0], rank - r)], 1)
    total = float(s.pow(2).sum())
    kept = float(s[:r].pow(2).sum())
    return a.contiguous(), b.contiguous(), ((total - kept) / total) ** 0.5 if total > 0 else 0.0


def extract_lora(
    base: str | Path, full: str | Path, output: str | Path, rank: int, device: str = "cpu"
) -> dict:
    """Write ``output``: a LoRA adapter (alpha = rank, so scale 1) whose merge into ``base`` gives
    ``full``'s linear layers up to rank ``rank``; returns what was kept and what was lost."""
    import torch
    from safetensors.torch import save_file

    base, full, output = Path(base), Path(full), Path(output)
    if base.suffix.lower() == ".gguf":  # the base as the library loads it: converted once, cached
        from ..weights.gguf import gguf_to_folder

        base = gguf_to_folder(base)
    if rank < 1:
        raise ValueError(f"rank must be at least 1, not {rank}")
    record = read_template_record(full)
    if not record.get("template"):
        raise ValueError(
            f"{full} has no template record ({TEMPLATE_RECORD}); was it made by universalner.tune?"
        )
    w_base, w_full = _weights(base), _weights(full)
    tensors: dict[str, Any] = {}
    errors, lost_norm, kept_norm = [], 0.0, 0.0
    for key in sorted(w_full):
        if key not in w_base:
            continue
        delta = w_full[key].to(device, torch.float32) - w_base[key].to(device, torch.float32)
        parts = key.split(".")
        if key.endswith(".weight") and len(parts) > 2 and parts[-2] in LINEAR and delta.dim() == 2:
            a, b, err = factorize(delta, rank)
            module = key[: -len(".weight")]
            tensors[f"base_model.model.{module}.lora_A.weight"] = a.cpu()
            tensors[f"base_model.model.{module}.lora_B.weight"] = b.cpu()
            errors.append(err)
            kept_norm += float(delta.pow(2).sum())
        else:  # embeddings, norms: not in a LoRA adapter; how much of the change they held is reported
            lost_norm += float(delta.pow(2).sum())
    if not tensors:
        raise ValueError(f"no linear layer of {full} matches one of {base}: is it a full fine-tune of it?")
    tmp = output.with_name(output.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(tensors, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": rank, "lora_dropout": 0.0,
        "bias": "none", "target_modules": sorted({k.split(".")[-3] for k in tensors}),
        "base_model_name_or_path": record.get("base_model", str(base)), "inference_mode": True,
        "init_lora_weights": True, "fan_in_fan_out": False, "modules_to_save": None,
    }  # fmt: skip
    (tmp / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    report = {
        "rank": rank,
        "modules": len(errors),
        "mean_relative_error": sum(errors) / len(errors),
        "max_relative_error": max(errors),
        "share_of_change_outside_linear_layers": lost_norm / (lost_norm + kept_norm)
        if lost_norm + kept_norm
        else 0.0,
    }
    write_template_record(tmp, **dict(record, method="full, extracted to LoRA", extraction=report))
    for name in _TOKENIZER_FILES:
        if (full / name).is_file():
            shutil.copy2(full / name, tmp / name)
    shutil.rmtree(output, ignore_errors=True)
    tmp.replace(output)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m universalner.tune.extract", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "--base", required=True, help="the base the full fine-tune started from (model folder or .gguf)"
    )
    ap.add_argument(
        "--full", required=True, help="the full fine-tune (tune --method full output or checkpoint)"
    )
    ap.add_argument("--output", required=True, help="the LoRA adapter folder to write")
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--device", default="cpu", help="where the SVDs run (cuda is faster)")
    a = ap.parse_args(argv)
    try:
        report = extract_lora(a.base, a.full, a.output, a.rank, a.device)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
