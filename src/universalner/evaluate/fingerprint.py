"""What an evaluation run's stored answers depend on, beyond the options it was given.

``evaluate run`` resumes from the answers in its output folder only when they were made by the same
thing: the options (``ModelSpec.fingerprint``) and everything this module adds, which changes an
answer without changing an option: the weights and the adapter (their files' contents), the student's
record (its template, list threshold and CPU path), the CPU dtype and quantization that loading will
pick on this machine, and the library's version (a fix to decoding changes answers too).

Files up to ``FULL_HASH_BYTES`` are hashed whole (an adapter, a record, a config); larger ones (a
base model's weights) by their size, modification time and their first and last MiB, so a 14 GB model
is not read on every resume. A retrained adapter or a replaced base file changes the fingerprint.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

FULL_HASH_BYTES = 64 << 20
_EDGE = 1 << 20


def file_digest(path: Path) -> str:
    """sha256 of a file's contents; for files over ``FULL_HASH_BYTES``, of its size, mtime and edges."""
    h = hashlib.sha256()
    st = path.stat()
    with open(path, "rb") as f:
        if st.st_size <= FULL_HASH_BYTES:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        else:
            h.update(f"{st.st_size}|{st.st_mtime_ns}|".encode())
            h.update(f.read(_EDGE))
            f.seek(-_EDGE, os.SEEK_END)
            h.update(f.read(_EDGE))
    return h.hexdigest()[:16]


def folder_digest(where: Path | str) -> str:
    """One digest of a model folder or file (every file in it, by name and ``file_digest``), or, for a
    hub id, the id and the snapshot the local hub cache holds."""
    if isinstance(where, str):
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(where, "config.json")
        except Exception:  # noqa: BLE001 - no cache: the id is all that is known
            cached = None
        snapshot = Path(cached).parent.name if isinstance(cached, str) else "not cached"
        return f"hub:{where}@{snapshot}"
    path = Path(where)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        if f.name.startswith(".") or "__pycache__" in f.parts:
            continue
        h.update(f"{f.relative_to(path) if f != path else f.name}={file_digest(f)}\n".encode())
    return h.hexdigest()[:16]


def answer_fingerprint(spec: Any) -> dict[str, Any]:
    """What the answers of ``spec`` (an ``evaluate.runner.ModelSpec``) depend on besides its options."""
    import universalner

    from ..weights.record import read_template_record

    out: dict[str, Any] = {"version": universalner.__version__}
    if spec.engine == "openai":  # a served model: its weights are the server's, not readable here
        out["served"] = "weights not fingerprinted: the server's (restart the run after changing them)"
        out["list_threshold"] = dict(spec.options).get("list_threshold", 0.5)
        return out | _continue(dict(spec.options), {})
    loc = _locate(spec.model)
    model = loc.path
    out["model_files"] = folder_digest(model)
    base = None
    record_dirs = [model] if isinstance(model, Path) else []
    if loc.kind == "adapter":  # a LoRA student: its base, found by the one rule every engine uses
        try:
            base = loc.base().path
        except (OSError, ValueError) as e:
            base = f"unresolved:{e}"
    if spec.adapter is not None:
        adapter = _locate(spec.adapter).path
        out["adapter_files"] = folder_digest(adapter)
        if isinstance(adapter, Path):
            record_dirs.insert(0, adapter)
    if base:
        try:
            out["base_files"] = folder_digest(Path(base) if Path(str(base)).exists() else str(base))
        except OSError:
            out["base_files"] = f"unreadable:{base}"
    record: dict[str, Any] = {}
    for folder in record_dirs:
        record = read_template_record(folder)
        if record:
            break
    options = dict(spec.options)
    out["list_threshold"] = options.get("list_threshold", record.get("list_threshold", 0.5))
    out |= _continue(options, record)
    out["template"] = spec.template if spec.template != "auto" else record.get("template", "auto")
    if spec.engine == "transformers":
        out["dtype"], out["quantization"] = _load_choice(spec, record_dirs)
    return out


def _locate(model: Any):
    """The model's ``weights.resolve.Location``; a GGUF file is fingerprinted itself, never converted here."""
    from ..weights.resolve import resolve

    return resolve(model)


def _load_choice(spec: Any, record_dirs: list[Path]) -> tuple[str, str | None]:
    """The dtype and quantization loading will use here (the student's record and this machine's CPU
    decide them when the options do not)."""
    from ..weights.hf import cpu_choice, default_dtype, pick_device

    quantization = spec.quantization
    dtype = spec.options.get("dtype")
    device = pick_device(spec.device)
    choice = cpu_choice(record_dirs) if dtype is None and device.startswith("cpu") else {}
    if quantization is None and choice.get("quantization") == "int8":
        quantization = "int8"
    if dtype is None:
        dtype = str(default_dtype(device, quantization, choice)).removeprefix("torch.")
    return str(dtype), quantization


def _continue(options: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The continue threshold when it moves answers (0.5 leaves them, and keeps older folders valid)."""
    ct = options.get("continue_threshold", record.get("continue_threshold", 0.5))
    return {} if ct == 0.5 else {"continue_threshold": ct}
