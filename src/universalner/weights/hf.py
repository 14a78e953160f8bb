"""A model for transformers: device, dtype and quantisation chosen, its adapter merged, and the shipped
student's merged weights kept under the cache so that later loads read them as they are.

``load_model_and_tokenizer`` serves the transformers engine and ``tune`` alike. The model is found by
``resolve.resolve`` (one ``Location``; an adapter's base by ``Location.base``). On a CPU, a model asked
for in bf16 or fp16 is loaded in that dtype directly (a 7B model then peaks near 14 GB, not 28), except
where float32 comes first on purpose: an adapter is merged into float32 weights and the sum rounded
once, and int8 layers are quantised from float32 weights.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from ..quiet import progress_bars
from .cache import Slot, cache_dir
from .hub import check_hub_reachable, offline_hint
from .lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, merge_lora
from .record import read_template_record
from .resolve import resolve

QUANTIZATIONS = (None, "4bit", "8bit", "int8")  # 4bit/8bit: bitsandbytes; int8: the CPU's (int8.py)
DTYPES = ("float32", "bfloat16", "float16")
# one load at a time in a process: transformers' lazy imports and ``from_pretrained`` (which patches
# torch's initialisers for the duration) are not safe in several threads at once
_LOADING = threading.RLock()


def pick_device(device: str | None) -> str:
    """The device asked for, checked; "auto" or None: the GPU when there is one, else the CPU."""
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu', 'cuda' or 'auto', not {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but no CUDA GPU is available here; use device='cpu' or 'auto'")
    return device


def quantization_config(quantization: str | None, device: str):
    """bitsandbytes settings: nf4 with double quantisation; bf16 compute on CUDA, fp32 on CPU."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, not {quantization!r}")
    if quantization is None:
        return None
    if quantization == "int8":  # not bitsandbytes: torch's own int8 products, CPU only (int8.py)
        if not device.startswith("cpu"):
            raise ValueError(
                f"quantization='int8' is the CPU's int8 path; on {device!r} use '8bit' (bitsandbytes) or '4bit'"
            )
        from .int8 import check_supported

        check_supported()
        return None
    import torch
    from transformers import BitsAndBytesConfig

    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"quantization={quantization!r} needs bitsandbytes: pip install bitsandbytes"
        ) from e
    if quantization == "4bit":
        compute = torch.bfloat16 if device.startswith("cuda") else torch.float32
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
    return BitsAndBytesConfig(load_in_8bit=True)


def load_model_and_tokenizer(
    model: str | os.PathLike,
    quantization: str | None = None,
    device: str | None = "auto",
    adapter: str | os.PathLike | None = None,
    dtype: Any = None,
):
    """(model, tokenizer, device, [folders that may hold a template record]).

    ``model``: anything ``resolve.resolve`` takes (an adapter folder loads its base first);
    ``adapter``: a LoRA adapter to fold in; ``dtype``: "float32", "bfloat16", "float16" or the torch
    dtype itself (None: ``default_dtype``). Threads that load at once are served one after the other."""
    with _LOADING:
        return _load(model, quantization, device, adapter, dtype)


def _load(model, quantization, device, adapter, dtype):
    if quantization not in QUANTIZATIONS:  # checked before anything slow happens
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, not {quantization!r}")
    where = resolve(model)
    extra = resolve(adapter) if adapter is not None else None  # a missing adapter fails before the base
    record_dirs: list[Path] = []
    if where.kind == "adapter":  # a LoRA output folder given as the model: load its base first
        extra, record_dirs = where, [Path(where.path)]
        where = where.base()
    location = where.transformers_path()
    adapter_path = extra.transformers_path() if extra is not None else None
    if isinstance(location, Path):
        record_dirs.append(location)
    else:
        check_hub_reachable(location)
    # torch and transformers only now: a model that is not there fails before seconds of imports
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = pick_device(device)
    # on a CPU with no dtype asked for: what the student recorded as its fastest path there
    choice = cpu_choice(record_dirs) if dtype is None and device.startswith("cpu") else {}
    if quantization is None and choice.get("quantization") == "int8":
        quantization = "int8"
    qconf = quantization_config(quantization, device)
    torch_dtype = default_dtype(device, quantization, choice) if dtype is None else _torch_dtype(dtype)
    # on a CPU, a bf16/fp16 model is read in that dtype, and rounded from float32 only where float32
    # comes first on purpose: an adapter's merge (one rounding of the merged weights, and the merged
    # copy kept for the shipped student) and int8 layers (quantised from the float32 weights)
    final = (
        torch_dtype if qconf is None and device.startswith("cpu") and torch_dtype != torch.float32 else None
    )
    load_dtype = torch_dtype
    if final is not None and (adapter_path is not None or quantization == "int8"):
        load_dtype = torch.float32
    # the merged copy is kept in the dtype the model ends in (bf16: half the disk), float32 before int8
    keep = final if final is not None and quantization != "int8" else load_dtype
    kwargs: dict[str, Any] = {}
    if qconf is not None:
        kwargs["quantization_config"] = qconf
        kwargs["device_map"] = {"": device}
    slot = None
    if qconf is None and load_dtype == torch.float32 and extra is not None and extra.shipped:
        slot = merged_slot(location, Path(adapter_path), keep)
    try:
        tok_src = (
            adapter_path
            if adapter_path is not None and (Path(adapter_path) / "tokenizer_config.json").is_file()
            else location
        )
        tokenizer = AutoTokenizer.from_pretrained(str(tok_src))
        lm = _from_merged(slot, {"dtype": keep, **kwargs})
        kept = lm is not None  # the shipped student's weights, merged by an earlier load
        if lm is None:
            lm = AutoModelForCausalLM.from_pretrained(str(location), dtype=load_dtype, **kwargs)
    except OSError as e:
        if isinstance(location, str):
            raise offline_hint(location, e) from e
        raise
    if qconf is None:
        lm = lm.to(device)
    merged_now = False
    if kept:
        record_dirs.insert(0, Path(adapter_path))
    elif adapter_path is not None:
        # a plain LoRA adapter is folded in here, as peft would, without importing peft (~1 s)
        if qconf is None and isinstance(adapter_path, Path) and merge_lora(lm, adapter_path):
            merged_now = slot is not None  # a shipped student: the next load reads the merged weights
        else:
            try:
                from peft import PeftModel
            except ImportError as e:
                raise ImportError("adapter= needs peft: pip install 'universalner[tune]'") from e
            lm = PeftModel.from_pretrained(lm, str(adapter_path))
            if qconf is None:  # folded into the weights: no extra LoRA products at every step
                lm = lm.merge_and_unload()
        if isinstance(adapter_path, Path):
            record_dirs.insert(0, adapter_path)
    if merged_now and keep == torch.float32:
        save_merged(lm, slot, location, adapter_path)
    if quantization == "int8":
        from .int8 import quantize_linears

        quantize_linears(lm)
    if final is not None:  # also the buffers a direct load keeps in float32, as before
        lm = lm.to(final)
    if merged_now and keep != torch.float32:
        save_merged(lm, slot, location, adapter_path)
    lm.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return lm, tokenizer, device, record_dirs


def _torch_dtype(dtype: Any):
    """The torch dtype of "float32", "bfloat16", "float16" or of such a torch dtype itself."""
    import torch

    value = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
    if not isinstance(value, torch.dtype) or not value.is_floating_point or str(value)[6:] not in DTYPES:
        raise ValueError(
            f"dtype must be 'float32', 'bfloat16' or 'float16' (or torch.float32, ...), not {dtype!r}"
        )
    return value


def cpu_choice(record_dirs) -> dict[str, Any]:
    """The CPU settings a student records as its fastest within 1 F1 point of float32 (``"cpu"`` in
    its ``universalner.json``, from ``benchmarks/bench_cpu.py``); {} for a model that records none."""
    from .hardware import cpu_has_bf16

    for folder in record_dirs:
        choice = read_template_record(folder).get("cpu")
        if isinstance(choice, dict):
            if choice.get("dtype") == "bfloat16" and not cpu_has_bf16():
                return {}  # measured where bf16 is native; emulated, it is slower than float32
            return {k: choice[k] for k in ("dtype", "quantization") if isinstance(choice.get(k), str)}
    return {}


def default_dtype(device: str, quantization: str | None = None, choice: dict[str, Any] | None = None):
    """bf16 on GPUs; on a CPU, the dtype the student recorded (``cpu_choice``: bf16 for the shipped
    student, on CPUs that multiply bf16 natively), else float32: a model nobody measured keeps the
    numbers it was trained with. bitsandbytes models keep float32 on a CPU."""
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16
    if quantization in (None, "int8") and (choice or {}).get("dtype") == "bfloat16":
        return torch.bfloat16
    return torch.float32


# --- the merged weights of a shipped student, kept on disk ----------------------------------------
MERGED_RECORD = "merged.json"


def merged_slot(base: Path | str, adapter: Path, dtype: Any) -> Slot | None:
    """Where the merged weights of a shipped student are kept in ``dtype``, else None (not kept).

    Merging costs a third of a second per load on a CPU core (writing every weight page of the
    memory-mapped base), a quarter of the README command's budget; a merged copy is read like any
    model. Only shipped students are kept: a copy costs the base's size on disk (270 MB in bf16 for the
    135M student, 540 MB in float32), which a user's own adapters, tuned and evaluated by the dozen,
    should not each take. One slot per student, base and dtype (``cache.Slot``); the copy's key is the
    adapter's bytes (``adapter_config.json`` and the weights' sha256) and the base folder's files
    (path, size, modification time), so a changed adapter or base is merged again and the old copy
    removed once unused."""
    import hashlib

    from ..checksums import sha256_file

    if not isinstance(base, Path) or not (adapter / ADAPTER_WEIGHTS).is_file():
        return None
    name = str(dtype).removeprefix("torch.")
    h = hashlib.sha256(b"universalner merged lora v2\n")
    h.update((adapter / ADAPTER_CONFIG).read_bytes())
    h.update(sha256_file(adapter / ADAPTER_WEIGHTS).encode())
    h.update(f"\n{base.resolve()}|{name}".encode())
    for f in sorted(base.iterdir()):
        if f.is_file():
            st = f.stat()
            h.update(f"\n{f.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    where = hashlib.sha256(f"{adapter.resolve()}\n{base.resolve()}\n{name}".encode()).hexdigest()[:12]
    return Slot(cache_dir() / "merged" / f"{adapter.name}-{name}-{where}", h.hexdigest()[:16])


def has_merged(folder: Path | None) -> bool:
    """Whether ``folder`` holds a whole merged copy."""
    return folder is not None and (folder / MERGED_RECORD).is_file() and (folder / "config.json").is_file()


def save_merged(model: Any, slot: Slot, base: Path, adapter: Path) -> None:
    """Keep the merged model in ``slot`` (whole or not at all, safe beside other threads and
    processes); a failure only costs the next load its merge again."""
    import logging

    def write(tmp: Path) -> None:
        with progress_bars(False):
            model.save_pretrained(tmp)
        (tmp / MERGED_RECORD).write_text(json.dumps({"base": str(base), "adapter": str(adapter)}))

    with slot.reading():
        if slot.put(write, has_merged) is not None:
            logging.getLogger(__name__).debug("kept the merged weights of %s in %s", adapter, slot.path)


def _from_merged(slot: Slot | None, kwargs: dict[str, Any]):
    """The model read from a shipped student's merged weights, or None. A copy that cannot be read (a
    cut file, a full disk) is moved aside in one step (a process reading it keeps its open files) and
    the student merged again."""
    if slot is None or not slot.folder.is_dir():
        return None
    with slot.reading():
        if not has_merged(slot.path):
            return None
        from transformers import AutoModelForCausalLM

        try:
            lm = AutoModelForCausalLM.from_pretrained(str(slot.path), **kwargs)
            return lm.requires_grad_(False)  # as after a merge
        except Exception:  # noqa: BLE001 - a damaged copy is made again
            import uuid

            try:
                os.rename(slot.path, slot.folder / f".tmp-damaged-{uuid.uuid4().hex[:8]}")
            except OSError:
                pass
            return None
