"""The one conversation template: the only module that spells out the prompt.

UniversalNER asks one entity type per user turn, after a first turn that shows the passage
and an assistant acknowledgement. Two layouts render the same conversation:

* ``uniner``: FastChat's "Vicuna v1.1" layout the released UniNER weights were trained with,
  byte-exact (separators ``" "`` and the end-of-sequence string, ``"</s>"`` for LLaMA).
* ``chat``: the tokenizer's own chat template, for students tuned from chat models.

Inference, distillation and tuning all build their strings here, so a student tuned by
``universalner.tune`` is asked exactly the way it was taught.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

SYSTEM = "A virtual assistant answers questions from a user based on the provided text."
ACK = "I've read this text."
USER, ASSISTANT = "USER", "ASSISTANT"
LLAMA_EOS = "</s>"

LAYOUTS = ("uniner", "chat")

# --- the teacher's prompts (targeted distillation, gpt-3.5-turbo-0301 in the paper) -----------
TEACHER_SYSTEM = "You are a helpful information extraction system."
TEACHER_TYPE_PROMPT = (
    "Given a passage, your task is to extract all entities and identify their entity types. "
    'The output should be in a list of tuples of the following format: [("entity 1", "type of entity 1"), ... ].'
    "\n\nPassage: {passage}"
)
TEACHER_DEFINITION_PROMPT = (
    "Given a paragraph, your task is to extract all entities and concepts, and define their type using a "
    "short sentence. The output should be in the following format: "
    '[("entity", "definition of entity type in a short sentence"), ... ]'
    "\n\nParagraph: {passage}"
)


def teacher_messages(passage: str, mode: str = "type") -> list[dict[str, str]]:
    """Chat messages that ask the teacher to annotate one passage (``mode``: type or definition)."""
    if mode == "type":
        user = TEACHER_TYPE_PROMPT.format(passage=passage)
    elif mode == "definition":
        user = TEACHER_DEFINITION_PROMPT.format(passage=passage)
    else:
        raise ValueError(f"teacher mode must be 'type' or 'definition', not {mode!r}")
    return [{"role": "system", "content": TEACHER_SYSTEM}, {"role": "user", "content": user}]


# --- the turns of a UniNER conversation ------------------------------------------------------
def passage_turn(text: str, dataset: str | None = None) -> str:
    """First user turn; the supervised "dataset-specific" students also see the data set's name."""
    if dataset:
        return f"Dataset: {dataset} \n Text: {text}"
    return f"Text: {text}"


def question_turn(label: str) -> str:
    """The question for one entity type (or, for definition students, a sentence defining it)."""
    return f"What describes {label} in the text?"


def format_answer(mentions: Sequence[str]) -> str:
    """The answer the student learns to give: a JSON list of strings copied from the text."""
    return json.dumps(list(mentions), ensure_ascii=False)


@dataclass
class Conversation:
    """One passage and the questions asked about it, with answers when they are known."""

    text: str
    questions: list[str] = field(default_factory=list)
    answers: list[str | None] = field(default_factory=list)
    dataset: str | None = None

    def messages(self) -> list[dict[str, str]]:
        """Role/content messages (no system turn); a trailing unanswered question is kept."""
        msgs = [
            {"role": "user", "content": passage_turn(self.text, self.dataset)},
            {"role": "assistant", "content": ACK},
        ]
        for q, a in zip(self.questions, self.answers, strict=True):
            msgs.append({"role": "user", "content": question_turn(q)})
            if a is not None:
                msgs.append({"role": "assistant", "content": a})
        return msgs


@dataclass
class Segment:
    """A piece of a rendered training conversation; ``target`` pieces carry the loss."""

    text: str
    target: bool


class Template:
    """Renders conversations to strings; ``segments`` marks what the loss is taken on."""

    layout: str

    def prompt(self, text: str, label: str, dataset: str | None = None) -> str:
        """The exact string the model continues to answer one question about a passage."""
        return self.render(Conversation(text, [label], [None], dataset))

    def prefix(self, text: str, dataset: str | None = None) -> str:
        """The part of every prompt about ``text`` that does not depend on the question."""
        raise NotImplementedError

    def render(self, conv: Conversation) -> str:
        """The conversation as one string, ending in the assistant's cue if the last answer is None."""
        return "".join(s.text for s in self.segments(conv))

    def segments(self, conv: Conversation) -> list[Segment]:
        raise NotImplementedError

    @property
    def stop_strings(self) -> list[str]:
        raise NotImplementedError


class UniNERTemplate(Template):
    """FastChat Vicuna v1.1 as used by the released UniNER weights.

    ``eos`` is ``"</s>"`` for LLaMA students; a student tuned from another base in this layout
    uses its tokenizer's end-of-sequence string, so that the answer ends in a single token.
    """

    layout = "uniner"

    def __init__(self, eos: str = LLAMA_EOS):
        self.eos = eos or LLAMA_EOS

    def prefix(self, text: str, dataset: str | None = None) -> str:
        return f"{SYSTEM} {USER}: {passage_turn(text, dataset)} {ASSISTANT}: {ACK}{self.eos}"

    def segments(self, conv: Conversation) -> list[Segment]:
        segs = [Segment(self.prefix(conv.text, conv.dataset), False)]
        for q, a in zip(conv.questions, conv.answers, strict=True):
            if a is None:
                segs.append(Segment(f"{USER}: {question_turn(q)} {ASSISTANT}:", False))
                break
            segs.append(Segment(f"{USER}: {question_turn(q)} {ASSISTANT}: ", False))
            segs.append(Segment(f"{a}{self.eos}", True))
        return segs

    @property
    def stop_strings(self) -> list[str]:
        return [self.eos]


class ChatTemplate(Template):
    """The tokenizer's own chat template, with the UniNER system text as the system turn.

    Target pieces are found by rendering growing prefixes of the conversation and taking
    what each assistant turn adds, so any Jinja chat template works without knowing its tags.
    """

    layout = "chat"

    def __init__(self, tokenizer: Any, system: str | None = SYSTEM):
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "template='chat' needs a tokenizer with a chat template; this one has none. "
                "Use template='uniner' for base (non-chat) models."
            )
        self.tokenizer = tokenizer
        self.system = system

    def _apply(self, messages: list[dict[str, str]], generation_prompt: bool) -> str:
        if self.system:
            messages = [{"role": "system", "content": self.system}, *messages]
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt
        )

    def prefix(self, text: str, dataset: str | None = None) -> str:
        return self._apply(Conversation(text, dataset=dataset).messages(), False)

    def segments(self, conv: Conversation) -> list[Segment]:
        msgs = conv.messages()
        segs: list[Segment] = []
        done = ""
        for k, msg in enumerate(msgs):
            if msg["role"] != "assistant":
                continue
            cue = self._apply(msgs[:k], True)
            full = self._apply(msgs[: k + 1], False)
            if not (cue.startswith(done) and full.startswith(cue)):
                raise ValueError("the tokenizer's chat template does not render conversations incrementally")
            segs.append(Segment(cue[len(done) :], False))
            turn = full[len(cue) :]
            if k == 1:  # the acknowledgement belongs to the prompt, never a target
                segs.append(Segment(turn, False))
            else:
                body, tail = _split_after_eos(turn, self.tokenizer.eos_token)
                segs.append(Segment(body, True))
                if tail:
                    segs.append(Segment(tail, False))
            done = full
        if msgs[-1]["role"] == "user":  # an unanswered question: end on the assistant's cue
            segs.append(Segment(self._apply(msgs, True)[len(done) :], False))
        return segs

    @property
    def stop_strings(self) -> list[str]:
        eos = self.tokenizer.eos_token
        return [eos] if eos else []


def _split_after_eos(answer: str, eos: str | None) -> tuple[str, str]:
    """Keep the answer and its end-of-turn token as the target; whitespace after it is not."""
    if eos and eos in answer:
        cut = answer.index(eos) + len(eos)
        return answer[:cut], answer[cut:]
    return answer.rstrip("\n"), answer[len(answer.rstrip("\n")) :]


def get_template(layout: str, tokenizer: Any = None) -> Template:
    """``uniner`` or ``chat``; the chat layout and a non-LLaMA eos need the tokenizer."""
    if layout == "uniner":
        eos = getattr(tokenizer, "eos_token", None) if tokenizer is not None else None
        return UniNERTemplate(eos or LLAMA_EOS)
    if layout == "chat":
        if tokenizer is None:
            raise ValueError("template='chat' needs the model's tokenizer")
        return ChatTemplate(tokenizer)
    raise ValueError(f"template must be one of {LAYOUTS} or 'auto', not {layout!r}")


def resolve_labels(labels: Sequence[str] | Mapping[str, str] | str) -> list[tuple[str, str]]:
    """(label, what to ask) pairs: a list asks by type name, a dict by definition."""
    if isinstance(labels, str):
        raise TypeError(
            "labels must be a list of entity type names or a {label: definition} dict, not a string"
        )
    if isinstance(labels, Mapping):
        pairs = [(str(k), str(v) if v else str(k)) for k, v in labels.items()]
    elif isinstance(labels, Sequence) or hasattr(labels, "__iter__"):
        pairs = [(str(x), str(x)) for x in labels]
    else:
        raise TypeError(f"labels must be a list or a dict, not {type(labels).__name__}")
    pairs = [(k.strip(), v.strip()) for k, v in pairs]
    if not pairs or any(not k for k, _ in pairs):
        raise ValueError("labels must name at least one entity type, and no name may be empty")
    seen: dict[str, str] = {}
    for k, v in pairs:
        seen.setdefault(k, v)
    return list(seen.items())


# --- parsing answers ----------------------------------------------------------------------
_LIST_START = re.compile(r"\[")


def parse_answer(output: str) -> list[str]:
    """The mentions in a model's answer; never raises.

    Takes the first JSON list in the output and tolerates trailing text, single quotes,
    and a list cut off at the length limit (the complete strings before the cut are kept).
    """
    if not isinstance(output, str):
        return []
    for m in _LIST_START.finditer(output):
        found = _parse_list_at(output, m.start())
        if found is not None:
            return found
    return []


def _parse_list_at(s: str, i: int) -> list[str] | None:
    end = matching_bracket(s, i)
    if end is not None:
        chunk = s[i : end + 1]
        for loader in (json.loads, ast.literal_eval):
            try:
                value = loader(chunk)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            if isinstance(value, list):
                return _strings(value)
        return _scan_strings(s[i + 1 : end], complete_only=False)
    # no closing bracket (cut at max_new_tokens): keep the complete strings
    items = _scan_strings(s[i + 1 :], complete_only=True)
    return items if items else ([] if s[i + 1 :].strip() == "" or s[i + 1 :].lstrip()[:1] in "\"'" else None)


def matching_bracket(s: str, i: int) -> int | None:
    """Index of the ``]`` that closes the ``[`` at ``s[i]`` (quoted brackets skipped), or None."""
    depth, quote, esc = 0, None, False
    for j in range(i, len(s)):
        c = s[j]
        if quote:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == quote:
                quote = None
            continue
        if c in "\"'" and (j == 0 or not s[j - 1].isalnum()):
            quote = c
        elif c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return j
    return None


_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\'', re.S)


def _scan_strings(body: str, complete_only: bool) -> list[str]:
    out = []
    for m in _STRING.finditer(body):
        raw = m.group(1) if m.group(1) is not None else m.group(2)
        try:
            out.append(json.loads(f'"{raw}"') if m.group(1) is not None else raw.replace("\\'", "'"))
        except json.JSONDecodeError:
            out.append(raw)
    return _strings(out)


def _strings(values: list[Any]) -> list[str]:
    out = []
    for v in values:
        if isinstance(v, str):
            v = v.strip()
            if v:
                out.append(v)
        elif isinstance(v, (list, tuple)) and v and isinstance(v[0], str):
            out.append(v[0].strip())  # a (mention, type) pair: keep the mention
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(str(v))
    return out
