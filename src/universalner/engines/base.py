"""The engine protocol: prompts in, answers with per-token log-probabilities out."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..constraints import Penalties


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
    """What ``UniversalNER`` needs from a backend.

    ``generate`` checks its input once, here, for every engine, and hands the work to the engine's
    ``_generate``; an engine adds only its own checks there (llama.cpp: the context size). ``load``
    builds an engine from a model name (``weights.resolve`` finds it), ``record_dirs`` says where the
    student's template record may be.
    """

    name: str = "engine"
    #: the tokenizer, where the engine has a transformers one (chat templates, token counts)
    tokenizer: Any = None
    #: folders that may hold the student's template record (``universalner.json``), the first found wins
    record_dirs: Sequence[Path] = ()

    @classmethod
    def load(
        cls,
        model: Any,
        quantization: str | None = None,
        device: str | None = "auto",
        adapter: Any = None,
        **kw: Any,
    ) -> Engine:
        """An engine for ``model`` (see each engine's ``load``)."""
        raise NotImplementedError(f"engine {cls.name!r} cannot load a model by name")

    def generate(
        self,
        requests: Sequence[Request],
        *,
        max_new_tokens: int = 256,
        constrained: bool = False,
        list_threshold: float = 0.5,
        continue_threshold: float = 0.5,
    ) -> list[Generation]:
        """One greedy answer per request, in order. Constrained answers open a non-empty list more
        readily below ``list_threshold``, and go on to another mention more readily below
        ``continue_threshold`` (0.5: plain greedy); the exact rules are ``constraints.choose``'s."""
        requests = list(requests)
        penalty = self.penalties(list_threshold, continue_threshold)
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, not {max_new_tokens!r}")
        for i, r in enumerate(requests):
            if not isinstance(r, Request):
                raise TypeError(f"requests[{i}] must be a Request, not {type(r).__name__}")
        if not requests:
            return []
        return self._generate(requests, max_new_tokens, constrained, penalty)

    def penalties(self, list_threshold: float = 0.5, continue_threshold: float = 0.5) -> Penalties:
        """The logit shifts that move the two list decisions to these thresholds (0.0 at 0.5, plain
        greedy); an engine that cannot move them refuses other values here."""
        from ..constraints import Penalties, list_penalty

        return Penalties(
            list_penalty(list_threshold) if list_threshold != 0.5 else 0.0,
            list_penalty(continue_threshold) if continue_threshold != 0.5 else 0.0,
        )

    @abstractmethod
    def _generate(
        self, requests: list[Request], max_new_tokens: int, constrained: bool, penalty: Penalties
    ) -> list[Generation]:
        """``generate`` for checked, non-empty ``requests``; ``penalty``: see ``penalties``."""

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
