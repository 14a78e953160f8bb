"""Where a model is: one ``resolve`` turns a model name into a ``Location``, by one rule for all engines.

A name is, in this order: a shipped student's name (a string without a path separator, such as
``"universalner-135m"``; a local folder of the same name is given as ``./universalner-135m``), a
``.gguf`` file, a folder (a transformers model, or a LoRA adapter with ``adapter_config.json``), or a
hub id (``owner/name``, checked when loaded: ``hub.check_hub_reachable``, ``hub.offline_hint``). An adapter's
base is found by one rule too (``Location.base``). Nothing is loaded or converted here, except by
``Location.transformers_path``, which converts a GGUF file once (``gguf.gguf_to_folder``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelNotFoundError
from .gguf import gguf_to_folder
from .lora import ADAPTER_CONFIG
from .shipped import base_gguf, is_shipped, on_shipped_base, student_folder

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
KINDS = ("hub", "folder", "gguf", "adapter")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Location:
    """A model as ``resolve`` found it: its ``kind`` (one of ``KINDS``) and ``path``: the hub id (a
    string) for "hub", else the folder or the ``.gguf`` file; ``shipped``: a student inside the package."""

    kind: str
    path: Path | str
    shipped: bool = False

    @property
    def local(self) -> bool:
        return isinstance(self.path, Path)

    def base(self) -> Location:
        """The model an adapter was trained on, by the one rule every engine and ``tune`` use: a shipped
        student's base is its GGUF checked by sha256 (``shipped.base_gguf``); any other adapter's is
        the ``base_model_name_or_path`` of its ``adapter_config.json``, resolved like any model."""
        if self.kind != "adapter":
            raise ValueError(f"{self.path} is not an adapter; only an adapter has a base")
        folder = Path(self.path)
        if self.shipped or on_shipped_base(folder):  # shipped, or adapted from it (tune --from)
            return Location("gguf", base_gguf(folder))
        base = json.loads((folder / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
        if not base:
            raise ValueError(f"{folder}/{ADAPTER_CONFIG} names no base model")
        try:
            return resolve(base)
        except ModelNotFoundError as e:
            raise ModelNotFoundError(
                f"the adapter {folder} was trained on {base!r}, which is not here ({e}); put the base model "
                f"there, or set base_model_name_or_path in {folder}/{ADAPTER_CONFIG} to where it is"
            ) from e

    def transformers_path(self) -> Path | str:
        """What transformers' ``from_pretrained`` reads: a GGUF file converted once into a folder under the
        cache, else the folder or hub id itself."""
        return gguf_to_folder(self.path) if self.kind == "gguf" else self.path


def resolve(model: str | os.PathLike) -> Location:
    """The ``Location`` of ``model`` (see the module docstring for the rule), or a clear error:
    ModelNotFoundError for a path that does not hold a model, TypeError for something that is no name."""
    if not isinstance(model, (str, os.PathLike)) or not str(model).strip():
        raise TypeError(f"model must be a hub id, a folder or a .gguf file, not {model!r}")
    if isinstance(model, str):
        shipped = student_folder(model)  # a short name such as "universalner-135m"
        if shipped is not None:
            if Path(model).is_dir():
                log.debug("%r names the shipped student; pass './%s' for the folder here", model, model)
            return Location("adapter", shipped, shipped=True)
    path = Path(os.path.expanduser(str(model)))
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file not found: {path.resolve()}")
        return Location("gguf", path)
    if path.is_dir():
        if (path / ADAPTER_CONFIG).is_file():
            return Location("adapter", path, shipped=is_shipped(path))
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path} is a folder but holds no model (no config.json)")
        return Location("folder", path)
    if path.exists():
        raise ModelNotFoundError(
            f"{path} is a file but not a .gguf model; give a model folder or a .gguf file"
        )
    if _HUB_ID.match(str(model)) and not str(model).startswith((".", "/", "~")):
        return Location("hub", str(model))
    raise ModelNotFoundError(
        f"model not found: {model!r} is neither an existing path nor a hub id (owner/name)"
    )


def resolve_model(model: str | os.PathLike) -> Path | str:
    """A loadable location: a local folder, a converted GGUF folder, or a hub id
    (``resolve(model).transformers_path()``).

    Raises ModelNotFoundError for a path that does not exist; hub ids are returned as they are
    and checked when loaded (see ``hub.offline_hint``).
    """
    return resolve(model).transformers_path()
