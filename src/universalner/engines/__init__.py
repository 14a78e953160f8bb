"""Engines turn prompts into answers; ``model.UniversalNER`` does everything else.

One small protocol (``base.Engine``) and several engines: transformers (``hf``), and the
optional ones added beside it. Engines are imported lazily so that a missing optional
dependency only matters to the engine that needs it.
"""

from __future__ import annotations

from .base import Engine, Generation, Request

__all__ = ["Engine", "Generation", "Request", "ENGINES"]

ENGINES = {
    "transformers": "universalner.engines.hf:HFEngine",
    "llama.cpp": "universalner.engines.llamacpp:LlamaCppEngine",
    "openai": "universalner.engines.openai:OpenAIEngine",
}


def engine_class(name: str) -> type[Engine]:
    """The engine class registered under ``name``, imported on demand."""
    import importlib

    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose one of {sorted(ENGINES)}")
    module, _, cls = ENGINES[name].partition(":")
    return getattr(importlib.import_module(module), cls)
