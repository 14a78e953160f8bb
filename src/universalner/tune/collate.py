"""Conversations -> token ids and loss labels, and batches of them.

The template's segments say which characters carry the loss (each answer and its end-of-turn
token). Two rules make training match inference exactly:

* The loss starts where the inference prompt ends. In the ``uniner`` layout the prompt ends in
  ``ASSISTANT:`` while the rendered conversation reads ``ASSISTANT: ["..."]``: the space belongs
  to the answer's first token, as in the FastChat training of the released weights. The shift is
  measured once per template by comparing ``Template.prompt`` with the segments.
* The whole conversation is tokenised as one string and each token is labelled by the characters
  it covers (offset mapping), so the ids are exactly what the inference engines produce for the same
  prompt: the text's tokens after the tokenizer's own BOS where it adds one (LLaMA's ``<s>``, never
  doubled when a chat template writes it; ``universalner.tokens``), nothing added for tokenizers that
  add nothing. The BOS carries no loss. Tokenisers without offsets fall back to tokenising the
  pieces between target boundaries and concatenating them; the tests check both agree.

A conversation longer than ``max_length`` loses whole trailing question/answer pairs, never part
of a turn; one whose passage and first pair alone do not fit is left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..prompts import Conversation, Template
from ..tokens import special_prefix, with_prefix

IGNORE = -100


@dataclass
class Encoded:
    """One training sequence: ids, labels (``-100`` where no loss is taken), pairs kept."""

    input_ids: list[int]
    labels: list[int]
    pairs: int

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def target_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def answer_shift(template: Template) -> int:
    """How many characters of the rendered text before an answer the inference prompt lacks."""
    conv = Conversation("Alpha beta.", ["gamma"], ['["beta"]'])
    segs = template.segments(conv)
    first = next(i for i, s in enumerate(segs) if s.target)
    before = "".join(s.text for s in segs[:first])
    cue = template.prompt(conv.text, conv.questions[0])
    if not before.startswith(cue) or before[len(cue) :].strip():
        raise ValueError(
            f"the {template.layout!r} template's prompt is not a prefix of its training rendering; "
            "cannot tell where the answer starts"
        )
    return len(before) - len(cue)


def target_spans(template: Template, conv: Conversation, shift: int) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans that carry the loss, one per answer."""
    text, spans, _ = render_with_pairs(template, conv, shift)
    return text, spans


def render_with_pairs(
    template: Template, conv: Conversation, shift: int
) -> tuple[str, list[tuple[int, int]], list[int]]:
    """(text, target spans, pair ends): ``text[:ends[k - 1]]`` renders the first ``k`` pairs.

    A pair ends after its answer and the whitespace the layout puts after an answer (the chat
    layout's newline after the end-of-turn token); both templates render incrementally, so a
    prefix of the rendering is the rendering of the shorter conversation (the tests check it).
    """
    text, spans, ends = "", [], []
    for seg in template.segments(conv):
        if seg.target:
            spans.append((len(text) - shift, len(text) + len(seg.text)))
            ends.append(len(text) + len(seg.text))
        elif ends and ends[-1] == len(text) and not seg.text.strip():
            ends[-1] += len(seg.text)
        text += seg.text
    return text, spans, ends


def _tokenize(tokenizer: Any, text: str, offsets: bool):
    return tokenizer(text, add_special_tokens=False, return_offsets_mapping=offsets)


def label_by_offsets(
    tokenizer: Any, text: str, spans: list[tuple[int, int]], prefix: list[int] | None = None
) -> tuple[list[int], list[int]]:
    """Tokenise the whole string; a token is a target if it covers a character of a target span.

    ``prefix``: the tokenizer's BOS ids (``tokens.special_prefix``, probed when None), put in front
    unless the text starts with them; they carry no loss."""
    prefix = special_prefix(tokenizer) if prefix is None else prefix
    enc = _tokenize(tokenizer, text, True)
    ids = list(enc["input_ids"])
    labels = [IGNORE] * len(ids)
    k = 0
    for i, (a, b) in enumerate(enc["offset_mapping"]):
        while k < len(spans) and spans[k][1] <= a:
            k += 1
        if k < len(spans) and b > a and a < spans[k][1] and b > spans[k][0]:
            labels[i] = ids[i]
    full = with_prefix(prefix, ids)
    return full, [IGNORE] * (len(full) - len(ids)) + labels


def label_by_pieces(
    tokenizer: Any, text: str, spans: list[tuple[int, int]], prefix: list[int] | None = None
) -> tuple[list[int], list[int]]:
    """Tokenise the pieces between target boundaries separately and concatenate them (BOS as in
    ``label_by_offsets``)."""
    prefix = special_prefix(tokenizer) if prefix is None else prefix
    ids: list[int] = []
    labels: list[int] = []
    cuts = [0]
    for s, e in spans:
        cuts += [s, e]
    cuts.append(len(text))
    for j in range(len(cuts) - 1):
        piece = text[cuts[j] : cuts[j + 1]]
        if not piece:
            continue
        pid = list(_tokenize(tokenizer, piece, False)["input_ids"])
        ids += pid
        labels += pid if j % 2 == 1 else [IGNORE] * len(pid)
    full = with_prefix(prefix, ids)
    return full, [IGNORE] * (len(full) - len(ids)) + labels


def _supports_offsets(tokenizer: Any) -> bool:
    try:
        _tokenize(tokenizer, "a", True)["offset_mapping"]
    except (NotImplementedError, KeyError, TypeError, ValueError):
        return False
    return True


class Encoder:
    """Encodes conversations with one tokenizer and template; ``max_length`` in tokens."""

    def __init__(self, tokenizer: Any, template: Template, max_length: int = 1024):
        if max_length < 8:
            raise ValueError(f"max_length must be at least 8 tokens, not {max_length}")
        self.tokenizer = tokenizer
        self.template = template
        self.max_length = int(max_length)
        self.shift = answer_shift(template)
        self.prefix = special_prefix(tokenizer)  # the BOS inference puts in front ([] for none)
        self._label = label_by_offsets if _supports_offsets(tokenizer) else label_by_pieces

    def labeler(self, tokenizer: Any, text: str, spans: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
        return self._label(tokenizer, text, spans, self.prefix)

    def ids_and_spans(self, conv: Conversation) -> tuple[list[int], list[int], list[tuple[int, int]]]:
        text, spans = target_spans(self.template, conv, self.shift)
        ids, labels = self.labeler(self.tokenizer, text, spans)
        return ids, labels, spans

    def encode(self, conv: Conversation) -> Encoded | None:
        """Ids and labels; trailing pairs dropped to fit ``max_length``; None if no pair fits."""
        text, spans, ends = render_with_pairs(self.template, conv, self.shift)
        ids, labels = self.labeler(self.tokenizer, text, spans)
        if len(ids) <= self.max_length:
            return Encoded(ids, labels, len(spans))
        # the answers that end within the limit; re-tokenise that prefix (a token may straddle the cut)
        for k in range(_answers_within(labels, self.max_length), 0, -1):
            ids, labels = self.labeler(self.tokenizer, text[: ends[k - 1]], spans[:k])
            if len(ids) <= self.max_length:
                return Encoded(ids, labels, k)
        return None


def _answers_within(labels: list[int], limit: int) -> int:
    """How many answers (runs of target labels) end within the first ``limit`` tokens."""
    runs, start = 0, None
    for i, x in enumerate([*labels, IGNORE]):
        if x != IGNORE and start is None:
            start = i
        elif x == IGNORE and start is not None:
            if i > limit:
                break
            runs, start = runs + 1, None
    return runs


@dataclass
class Collator:
    """Right-pads a batch: ids with the pad token, labels with -100, attention mask 0 on padding."""

    pad_token_id: int
    pad_to_multiple_of: int = 8

    def __call__(self, features: Sequence[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        longest = max(len(f["input_ids"]) for f in features)
        m = self.pad_to_multiple_of
        if m > 1:
            longest = -(-longest // m) * m
        ids = torch.full((len(features), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), longest), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(features), longest), dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            ids[row, :n] = torch.as_tensor(f["input_ids"]).long()
            labels[row, :n] = torch.as_tensor(f["labels"]).long()
            mask[row, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
