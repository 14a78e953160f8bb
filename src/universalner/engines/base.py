"""The engine protocol: prompts in, answers with per-token log-probabilities out."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    """One question about one passage.

    ``prompt`` is the full string the model continues; ``passage`` is the text answers must be
    copied from (constrained decoding uses it); requests with the same ``group`` are about the
    same passage, so their prompts share a prefix that an engine may compute once.
    """

    prompt: str
    passage: str
    group: int = 0


@dataclass
class Generation:
    """An answer: its text (stop string removed) and where each generated token sits in it.

    ``token_spans`` holds (start, end, logprob) per generated token, character offsets into
    ``text``; engines that cannot report log-probabilities leave it empty.
    """

    text: str
    token_spans: list[tuple[int, int, float]] = field(default_factory=list)
    prompt_tokens: int = 0


class Engine(ABC):
    """What ``UniversalNER`` needs from a backend."""

    name: str = "engine"
    #: the tokenizer, where the engine has a transformers one (chat templates, token counts)
    tokenizer: Any = None

    @abstractmethod
    def generate(
        self,
        requests: Sequence[Request],
        *,
        max_new_tokens: int = 256,
        constrained: bool = False,
        list_threshold: float = 0.5,
    ) -> list[Generation]:
        """One greedy answer per request, in order; constrained answers open a non-empty list when the
        model gives that at least ``list_threshold`` (0.5: plain greedy)."""

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the tokens of ``text`` (for windowing long texts)."""
        if self.tokenizer is not None and getattr(self.tokenizer, "is_fast", False):
            enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            return [tuple(o) for o in enc["offset_mapping"]]
        # about one token per word piece: a safe over-estimate for windowing
        return [(m.start(), m.end()) for m in re.finditer(r"\w{1,6}|[^\w\s]", text)]

    @property
    def eos_token(self) -> str | None:
        return getattr(self.tokenizer, "eos_token", None)

    @property
    def chat_template(self) -> str | None:
        return getattr(self.tokenizer, "chat_template", None)
