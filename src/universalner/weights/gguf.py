"""GGUF files: the header read in milliseconds, the chat-template tokenizer it holds, the file of a
folder, and a GGUF model converted once into a transformers folder under the cache.

A GGUF file is dequantised by transformers on every load (seconds to minutes), so the first load
converts it once into a plain safetensors folder under the cache and later loads read that.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..quiet import progress_bars
from .cache import Slot, cache_dir
from .errors import ModelNotFoundError

_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


class GGUFError(ValueError):
    """A file that is not a readable GGUF model."""


def read_gguf_metadata(path: str | os.PathLike, keys: Sequence[str] | None = None) -> dict[str, Any]:
    """The key/value header of a GGUF file (all keys, or only ``keys``), read without the tensors.

    A few milliseconds even for big files: only the header is parsed (``gguf.GGUFReader`` also maps
    every tensor and takes tens of seconds on a slow CPU).
    """
    path = Path(path)
    want = set(keys) if keys is not None else None
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            if m[:4] != b"GGUF":
                raise GGUFError(f"{path} is not a GGUF file (it does not start with 'GGUF')")
            version, _, n_kv = struct.unpack_from("<IQQ", m, 4)
            if version < 2 or version > 3:
                raise GGUFError(f"{path}: GGUF version {version} is not supported (2 or 3 are)")
            pos, out = 24, {}

            def string(p: int) -> tuple[str, int]:
                (n,) = struct.unpack_from("<Q", m, p)
                return m[p + 8 : p + 8 + n].decode("utf-8", errors="replace"), p + 8 + n

            def value(vtype: int, p: int, keep: bool) -> tuple[Any, int]:
                if vtype in _SCALARS:
                    fmt = "<" + _SCALARS[vtype]
                    return struct.unpack_from(fmt, m, p)[0], p + struct.calcsize(fmt)
                if vtype == _STRING:
                    return string(p)
                if vtype == _ARRAY:
                    etype, count = struct.unpack_from("<IQ", m, p)
                    p += 12
                    if etype in _SCALARS:
                        size = struct.calcsize("<" + _SCALARS[etype])
                        vals = list(struct.unpack_from(f"<{count}{_SCALARS[etype]}", m, p)) if keep else None
                        return vals, p + size * count
                    items = []
                    for _ in range(count):
                        v, p = value(etype, p, keep)
                        if keep:
                            items.append(v)
                    return (items if keep else None), p
                raise GGUFError(f"{path}: unknown GGUF value type {vtype} at byte {p}")

            for _ in range(n_kv):
                key, pos = string(pos)
                (vtype,) = struct.unpack_from("<I", m, pos)
                keep = want is None or key in want
                val, pos = value(vtype, pos + 4, keep)
                if keep:
                    out[key] = val
            return out
    except (struct.error, ValueError, OSError) as e:
        if isinstance(e, GGUFError):
            raise
        raise GGUFError(f"could not read {path} as a GGUF file: {e}") from e


class GGUFTokenizer:
    """What the template needs from a tokenizer, read from a GGUF file's header.

    ``apply_chat_template`` renders the file's Jinja chat template the way transformers does
    (sandboxed, ``trim_blocks``/``lstrip_blocks``, ``bos_token``/``eos_token`` in scope), so the chat
    layout comes out byte-identical to a transformers tokenizer of the same model.

    ``add_bos_token``: whether the model's tokenizer puts its BOS before a text, as llama.cpp and
    transformers decide it: the file's ``tokenizer.ggml.add_bos_token``, else yes for a sentencepiece
    (``llama``) vocabulary, no otherwise (what an OpenAI-compatible server serving the file adds itself).
    """

    is_fast = False

    def __init__(
        self,
        chat_template: str | None,
        eos_token: str | None,
        bos_token: str | None = None,
        add_bos_token: bool = False,
    ):
        self.chat_template = chat_template
        self.eos_token = eos_token
        self.bos_token = bos_token
        self.add_bos_token = bool(add_bos_token and bos_token)
        self._compiled = None

    KEYS = (
        "tokenizer.chat_template",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.add_bos_token",
        "tokenizer.ggml.model",
    )

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> GGUFTokenizer:
        return cls.from_metadata(read_gguf_metadata(path, cls.KEYS))

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> GGUFTokenizer:
        keys = cls.KEYS
        tokens = meta.get("tokenizer.ggml.tokens") or []

        def text(key: str) -> str | None:
            i = meta.get(key)
            return tokens[i] if isinstance(i, int) and 0 <= i < len(tokens) else None

        add_bos = meta.get("tokenizer.ggml.add_bos_token")
        if not isinstance(add_bos, bool):  # older files: llama.cpp adds BOS to a sentencepiece vocabulary
            add_bos = meta.get("tokenizer.ggml.model") == "llama"
        return cls(meta.get("tokenizer.chat_template"), text(keys[1]), text(keys[2]), add_bos)

    def apply_chat_template(
        self,
        messages: list[dict[str, str]],
        tokenize: bool = False,
        add_generation_prompt: bool = False,
        **kwargs: Any,
    ) -> str:
        if tokenize:
            raise ValueError("GGUFTokenizer renders text only: call apply_chat_template(..., tokenize=False)")
        if not self.chat_template:
            raise ValueError("this GGUF file has no chat template (tokenizer.chat_template)")
        if self._compiled is None:
            self._compiled = _compile_template(self.chat_template)
        return self._compiled.render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token or "",
            eos_token=self.eos_token or "",
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"GGUFTokenizer(eos_token={self.eos_token!r}, chat_template={bool(self.chat_template)})"


def _compile_template(source: str):
    """The Jinja environment transformers renders chat templates in."""
    from datetime import datetime

    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)


def find_gguf(model: str | os.PathLike) -> Path:
    """The ``.gguf`` file for ``model``: the file itself, or the only one in a folder."""
    if not isinstance(model, (str, os.PathLike)) or not str(model).strip():
        raise TypeError(f"model must be a .gguf file or a folder holding one, not {model!r}")
    path = Path(os.path.expanduser(str(model)))
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelNotFoundError(f"engine='llama.cpp' reads .gguf files; {path} is not one")
        return path
    if path.is_dir():
        found = sorted(path.glob("*.gguf"))
        if len(found) == 1:
            return found[0]
        raise ModelNotFoundError(
            f"{path} holds {len(found)} .gguf files; pass the one to load"
            + (f" ({', '.join(f.name for f in found)})" if found else "")
        )
    raise ModelNotFoundError(
        f"GGUF model not found: {model!r}. engine='llama.cpp' loads local .gguf files only; download one "
        "(e.g. huggingface-cli download <repo> <file>.gguf) and pass its path"
    )


_SPECIAL_TOKENS = (
    ("bos_token", "tokenizer.ggml.bos_token_id"),
    ("eos_token", "tokenizer.ggml.eos_token_id"),
    ("unk_token", "tokenizer.ggml.unknown_token_id"),
    ("pad_token", "tokenizer.ggml.padding_token_id"),
)


def special_tokens_as_in_gguf(tok: Any, metadata: dict[str, Any]) -> list[str]:
    """Set the tokenizer's bos/eos/unk/pad tokens to the ids the GGUF header names; return the changed.

    Some transformers versions (5.17) read SmolLM2's GGUF with ``<|im_start|>`` as eos and no pad,
    where the file says ``<|im_end|>`` for both: the chat turn's end would then never stop an answer,
    and a record written from it would name the wrong eos. The header is the file's own word.
    """
    changed = []
    for name, key in _SPECIAL_TOKENS:
        i = metadata.get(key)
        if not isinstance(i, int) or not 0 <= i < len(tok):
            continue
        token = tok.convert_ids_to_tokens(i)
        if getattr(tok, name, None) != token:
            setattr(tok, name, token)
            changed.append(name)
    return changed


def _converted(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "tokenizer_config.json").is_file()


def gguf_to_folder(gguf: str | os.PathLike, progress: bool | None = None) -> Path:
    """Dequantise a GGUF file once into a transformers folder under the cache; return it.

    One current copy per file (``cache.Slot``): the copy's key is the file's path, size and
    modification time, so a changed file converts again and its old copy is removed once unused.
    The conversion is announced in one line on the ``universalner`` logger; ``progress``: show
    transformers' bars while it runs (None: as transformers is set, which the command line turns off).
    A conversion that fails leaves nothing in the cache.
    """
    gguf = Path(gguf).resolve()
    if not gguf.is_file():
        raise ModelNotFoundError(f"GGUF file not found: {gguf}")
    st = gguf.stat()
    # "|tokens": copies made before the special tokens were taken from the header convert again
    key = hashlib.sha1(f"{gguf}|{st.st_size}|{int(st.st_mtime)}|tokens".encode()).hexdigest()[:16]
    where = hashlib.sha1(str(gguf).encode()).hexdigest()[:12]
    slot = Slot(cache_dir() / "gguf" / f"{gguf.stem}-{where}", key)
    if slot.folder.is_dir():
        with slot.reading():
            if _converted(slot.path):
                return slot.path
    import logging

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
        "converting %s into a transformers folder, once (later runs read %s)", gguf.name, slot.path
    )
    show = hf_logging.is_progress_bar_enabled() if progress is None else progress
    try:
        with progress_bars(show):
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as e:  # noqa: BLE001 - a bad file surfaces deep inside gguf/transformers
        raise ValueError(
            f"could not read {gguf} as a GGUF model ({type(e).__name__}: {e}); "
            "is the file complete? Download it again or give another model"
        ) from e
    special_tokens_as_in_gguf(tok, read_gguf_metadata(gguf, [k for _, k in _SPECIAL_TOKENS]))
    # transformers marks GGUF-loaded models as quantized and refuses to save them otherwise
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config

    def write(tmp: Path) -> None:
        with progress_bars(show):
            model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "source.json").write_text(json.dumps({"gguf": str(gguf)}))

    with slot.reading():
        slot.put(write, _converted, required=True)
    return slot.path
