"""The token ids a prompt reaches the model as: the sequence its tokenizer builds by default.

A LLaMA tokenizer puts ``<s>`` (BOS) before every text, and the released UniNER students were trained
with it (FastChat) and served with it (vLLM); SmolLM2 or Qwen tokenizers put nothing there. Every
engine and the tuning collator encode through this module, so the first token is the one training saw:

* the text's own tokens, special-token strings in it (a chat template's ``<|im_start|>``) parsed as
  special tokens, as transformers does by default;
* before them, what the tokenizer adds before any text by default (``special_prefix``: its BOS, or
  nothing); never what it appends after one (an EOS after a prompt would end the conversation);
* no second BOS when the text already starts with it: a chat template that writes its own start
  token (Llama 3's ``<|begin_of_text|>``) gets none added.

For a tokenizer that adds nothing, the ids are exactly ``tokenizer(text, add_special_tokens=False)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_PROBE = "a"


def special_prefix(tokenizer: Any) -> list[int]:
    """The ids the tokenizer puts before a text by default (``[bos_id]`` for LLaMA, ``[]`` for none).

    Read off the tokenizer itself (``tokenizer("a")`` against ``tokenizer("a", add_special_tokens=False)``),
    so a post-processor, ``add_bos_token`` or a slow tokenizer's ``build_inputs_with_special_tokens``
    all count. Objects that are not transformers tokenizers (a GGUF header reader) give ``[]``.
    """
    if tokenizer is None or not callable(tokenizer):
        return []
    try:
        plain = list(tokenizer(_PROBE, add_special_tokens=False)["input_ids"])
        full = list(tokenizer(_PROBE, add_special_tokens=True)["input_ids"])
    except (TypeError, ValueError, KeyError, NotImplementedError):
        return []
    n = len(plain)
    if not n:
        return []
    for k in range(len(full) - n + 1):
        if full[k : k + n] == plain:
            return full[:k]
    return []


def prefix_text(tokenizer: Any) -> str:
    """The text of ``special_prefix`` (``"<s>"``), ``""`` when the tokenizer adds nothing.

    A GGUF header reader (``engines.llamacpp.GGUFTokenizer``) answers from the file's
    ``tokenizer.ggml.add_bos_token``.
    """
    if tokenizer is None:
        return ""
    if not callable(tokenizer):
        bos = getattr(tokenizer, "bos_token", None)
        return bos if bos and getattr(tokenizer, "add_bos_token", False) else ""
    prefix = special_prefix(tokenizer)
    if not prefix:
        return ""
    return "".join(tokenizer.convert_ids_to_tokens(prefix))


def with_prefix(prefix: Sequence[int], ids: Sequence[int]) -> list[int]:
    """``prefix + ids``, or ``ids`` when they already start with the prefix (no doubled BOS)."""
    prefix, ids = list(prefix), list(ids)
    if not prefix or ids[: len(prefix)] == prefix:
        return ids
    return prefix + ids


def prompt_ids(
    tokenizer: Any, texts: Sequence[str], offsets: bool = False, prefix: Sequence[int] | None = None
) -> tuple[list[list[int]], list[list[tuple[int, int]]] | None]:
    """Token ids of each text as the model is given it, and (``offsets=True``) each token's character
    span in its text, ``(0, 0)`` for an added prefix token.

    ``prefix``: ``special_prefix(tokenizer)`` when None (pass it to skip the probe).
    """
    prefix = special_prefix(tokenizer) if prefix is None else list(prefix)
    texts = list(texts)
    if offsets:
        got = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        ids_out, offs_out = [], []
        for ids, offs in zip(got["input_ids"], got["offset_mapping"], strict=True):
            full = with_prefix(prefix, ids)
            added = len(full) - len(ids)
            ids_out.append(full)
            offs_out.append([(0, 0)] * added + [tuple(o) for o in offs])
        return ids_out, offs_out
    got = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    return [with_prefix(prefix, ids) for ids in got], None
