"""The Hugging Face hub: whether a hub id can be fetched here, and the one clear error when it cannot."""

from __future__ import annotations

import os

from .errors import ModelNotFoundError


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
