"""Model weights: found, checked, converted, merged and loaded, for every engine and for ``tune``.

The rooms, lowest first: ``errors``, ``cache`` (the cache folder and its one-copy slots), ``record``
(the template record), ``lora`` (the merge arithmetic), ``int8``, ``hardware``; then ``gguf`` (GGUF
headers, tokenizer, conversion) and ``shipped`` (the students inside the package); then ``resolve``
(one name -> one ``Location``) and ``merged_gguf`` (a student as one GGUF file for llama.cpp); then
``hf`` (a transformers model loaded). Nothing here imports an engine. Inside the package, import from
the rooms; this face re-exports the names a user needs, lazily (``import universalner.weights``
imports no torch and nothing else).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["DEFAULT_STUDENT", "Location", "ModelNotFoundError", "cache_dir", "read_template_record",
           "resolve", "resolve_model"]  # fmt: skip

_WHERE = {
    "DEFAULT_STUDENT": "shipped",
    "Location": "resolve",
    "ModelNotFoundError": "errors",
    "cache_dir": "cache",
    "read_template_record": "record",
    "resolve": "resolve",
    "resolve_model": "resolve",
}

if TYPE_CHECKING:
    from .cache import cache_dir
    from .errors import ModelNotFoundError
    from .record import read_template_record
    from .resolve import Location, resolve, resolve_model
    from .shipped import DEFAULT_STUDENT


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
