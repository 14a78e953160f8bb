"""The spaCy component ``universal_ner``: UniversalNER inside an ordinary spaCy pipeline.

Registered through the ``spacy_factories`` entry point, so after ``pip install universalner``::

    nlp.add_pipe("universal_ner", config={"model": "/models/UniNER-7B-type", "labels": ["person"]})

works without importing this package. The student answers with character offsets; they become spaCy
spans covering whole tokens (a mention that cuts a token is widened to the token, never dropped), go to
``doc.ents`` (non-overlapping) or ``doc.spans[span_key]`` (all mentions), and carry ``Span._.score``.

Saving: ``nlp.to_disk`` writes the settings (``config.cfg``) and the labels, not the model weights; the
config names the model, and ``spacy.load`` loads it from there again (see docs/spacy.md).
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import srsly
from confection import ConfigValidationError
from spacy import util
from spacy.language import Language
from spacy.pipeline import Pipe
from spacy.scorer import Scorer, get_ner_prf
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example, validate_examples, validate_get_examples

from .entity import Entity
from .weights.shipped import DEFAULT_STUDENT

logger = logging.getLogger(__name__)

FACTORY = "universal_ner"
STYLES = ("ents", "spans")
TEMPLATES = ("auto", "uniner", "chat")
QUANTIZATIONS = (None, "4bit", "8bit", "int8")  # int8: the CPU's own int8 layers (transformers engine)
CFG_FILE = "cfg"  # what to_disk writes next to config.cfg: the labels (the config names the model)

DEFAULT_CONFIG: dict[str, Any] = {
    "model": DEFAULT_STUDENT,
    "labels": None,
    "quantization": None,
    "device": "auto",
    "template": "auto",
    "dataset": None,
    "batch_size": 8,
    "threshold": None,
    "style": "ents",
    "span_key": "sc",
    "overwrite_ents": False,
    "constrained": True,
    "adapter": None,
    "engine": "transformers",
    "max_new_tokens": 256,
}


def _register_score_extension() -> None:
    """``Span._.score``, registered once; a different ``score`` extension from elsewhere is an error."""
    if not Span.has_extension("score"):
        Span.set_extension("score", default=None)
        return
    default, method, getter, setter = Span.get_extension("score")
    if method is not None or (getter is not None and setter is None):
        raise ValueError(
            "another package registered a read-only Span._.score extension; universal_ner needs to "
            "write it. Remove it with Span.remove_extension('score') before adding universal_ner."
        )


# --------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Settings:
    """The component's configuration after validation (the ``[components.*]`` block of config.cfg)."""

    model: str
    labels: list[str] | dict[str, str] | None = None
    quantization: str | None = None
    device: str | None = "auto"
    template: str = "auto"
    dataset: str | None = None
    batch_size: int = 8
    threshold: float | None = None  # None: the student's own
    style: str = "ents"
    span_key: str = "sc"
    overwrite_ents: bool = False
    constrained: bool = True
    adapter: str | None = None
    engine: str = "transformers"
    max_new_tokens: int = 256

    def spec(self) -> Any:
        """The ``model.ModelSpec`` of these settings: what loading the model takes."""
        from .model import ModelSpec

        return ModelSpec(
            self.model, self.quantization, self.device, self.adapter, self.template, self.engine,
            {"max_new_tokens": self.max_new_tokens},
        )  # fmt: skip

    def model_key(self) -> tuple:
        """What decides the loaded weights: components agreeing on it share one engine."""
        return self.spec().key()


def _config_error(name: str, key: str, msg: str) -> ConfigValidationError:
    return ConfigValidationError(
        title=f"Config validation error for component '{name}' ({FACTORY})",
        errors=[{"loc": [key], "msg": msg}],
        show_config=False,
    )


def check_settings(name: str, s: Settings) -> None:
    """Values spaCy's type check lets through but the component cannot use; the error names the key."""

    def bad(key: str, msg: str) -> None:
        raise _config_error(name, key, msg)

    if not isinstance(s.model, str) or not s.model.strip():
        bad("model", f"must name a model (hub id, folder, .gguf file or shipped student), not {s.model!r}")
    model = Path(os.path.expanduser(s.model))
    if model.suffix.lower() == ".gguf":
        if not model.is_file():
            bad("model", f"GGUF file not found: {s.model}")
    else:  # a folder without a model, or a path that is neither a folder nor a hub id: say so now
        from .weights.errors import ModelNotFoundError
        from .weights.resolve import resolve

        try:
            resolve(s.model)
        except ModelNotFoundError as e:
            bad(
                "model",
                f"{e}. A saved pipeline can be pointed elsewhere: "
                f"spacy.load(path, config={{'components.{name}.model': '/new/place'}})",
            )
    if s.labels is not None:
        check_labels(s.labels, lambda msg: bad("labels", msg))
    if s.quantization not in QUANTIZATIONS:
        bad("quantization", f"must be one of {QUANTIZATIONS}, not {s.quantization!r}")
    if s.template not in TEMPLATES:
        bad("template", f"must be one of {TEMPLATES}, not {s.template!r}")
    if isinstance(s.batch_size, bool) or not isinstance(s.batch_size, int) or s.batch_size < 1:
        bad("batch_size", f"must be a positive integer, not {s.batch_size!r}")
    if isinstance(s.max_new_tokens, bool) or not isinstance(s.max_new_tokens, int) or s.max_new_tokens < 1:
        bad("max_new_tokens", f"must be a positive integer, not {s.max_new_tokens!r}")
    if s.threshold is not None and (
        isinstance(s.threshold, bool)
        or not isinstance(s.threshold, (int, float))
        or not 0 <= s.threshold <= 1
    ):
        bad("threshold", f"must be a number from 0 to 1, not {s.threshold!r}")
    if s.style not in STYLES:
        bad("style", f"must be one of {STYLES}, not {s.style!r}")
    if not isinstance(s.span_key, str) or not s.span_key:
        bad("span_key", f"must be a non-empty string, not {s.span_key!r}")
    for key in ("overwrite_ents", "constrained"):
        if not isinstance(getattr(s, key), bool):
            bad(key, f"must be true or false, not {getattr(s, key)!r}")


def check_labels(labels: Any, fail: Callable[[str], None]) -> None:
    if isinstance(labels, str) or not isinstance(labels, (list, tuple, Mapping)):
        fail(f"must be a list of entity type names or a {{name: definition}} dict, not {labels!r}")
    names = list(labels.keys()) if isinstance(labels, Mapping) else list(labels)
    if not names:
        fail("must name at least one entity type (or leave it null and run nlp.initialize with examples)")
    for n in names:
        if not isinstance(n, str) or not n.strip():
            fail(f"entity type names must be non-empty strings, not {n!r}")
    if isinstance(labels, Mapping):
        for n, d in labels.items():
            if not isinstance(d, str):
                fail(f"the definition of {n!r} must be a string, not {d!r}")


# --------------------------------------------------------------------------------- the model cache
_MODELS: weakref.WeakValueDictionary[tuple, Any] = weakref.WeakValueDictionary()


def load_model(s: Settings) -> tuple[Any, Any]:
    """(shared, own): the loaded model for these weights and settings, and this component's view of it.

    Components that agree on the weights (model, engine, quantization, device, adapter) share one loaded
    engine while any of them is alive; each gets its own ``UniversalNER`` for its template and answer length.
    """
    spec = s.spec()
    key = spec.key()
    shared = _MODELS.get(key)
    if shared is None:
        logger.info("universal_ner: loading %s", s.model)
        shared = spec.load()
        _MODELS[key] = shared
    own = type(shared)(
        shared.engine,
        template=s.template,
        max_new_tokens=s.max_new_tokens,
        max_passage_tokens=shared.max_passage_tokens,
        window_overlap=shared.window_overlap,
        record=shared.record,
    )
    return shared, own


# --------------------------------------------------------------------------------- placing mentions
@dataclass(frozen=True)
class Placed:
    """A mention as a token span of the doc, with its confidence."""

    span: Span
    score: float

    @property
    def key(self) -> tuple[int, int, str]:
        return (self.span.start, self.span.end, self.span.label_)


def to_spans(doc: Doc, entities: Iterable[Entity]) -> tuple[list[Placed], int]:
    """Character offsets -> token spans, widened to the covering tokens; (spans, how many were widened).

    The same token span for the same label twice (two mentions widened to one span) keeps the higher score.
    """
    out: dict[tuple[int, int, str], Placed] = {}
    widened = 0
    for e in entities:
        span = doc.char_span(e.start, e.end, label=e.label, alignment_mode="expand")
        if span is None or len(span) == 0:  # offsets outside the doc's text: a caller's bug, say so
            raise ValueError(f"entity {e!r} does not lie in the doc's text ({len(doc.text)} characters)")
        if (span.start_char, span.end_char) != (e.start, e.end):
            widened += 1
        p = Placed(span, float(e.score))
        if p.key not in out or p.score > out[p.key].score:
            out[p.key] = p
    return sorted(out.values(), key=lambda p: (p.span.start, p.span.end, p.span.label_)), widened


def _overlaps(a: Span, b: Span) -> bool:
    return a.start < b.end and b.start < a.end


def non_overlapping(placed: Sequence[Placed]) -> list[Placed]:
    """Longest first (tokens, then characters), then highest score, then earliest: a greedy choice."""
    order = sorted(
        placed,
        key=lambda p: (
            -len(p.span),
            -(p.span.end_char - p.span.start_char),
            -p.score,
            p.span.start,
            p.span.label_,
        ),
    )
    chosen: list[Placed] = []
    for p in order:
        if not any(_overlaps(p.span, c.span) for c in chosen):
            chosen.append(p)
    return sorted(chosen, key=lambda p: p.span.start)


def set_ents(doc: Doc, placed: Sequence[Placed], overwrite: bool) -> None:
    """Put the non-overlapping best mentions in ``doc.ents``, next to the entities already there.

    ``overwrite=False``: an existing entity wins over a mention that overlaps it; ``True``: the mention
    wins and the existing entity it overlaps is removed. Existing entities nothing overlaps stay either way.
    """
    mine = non_overlapping(placed)
    existing = list(doc.ents)
    if overwrite:
        kept = [e for e in existing if not any(_overlaps(e, p.span) for p in mine)]
    else:
        kept = existing
        mine = [p for p in mine if not any(_overlaps(e, p.span) for e in existing)]
    doc.ents = sorted(kept + [p.span for p in mine], key=lambda s: s.start)
    for p in mine:
        p.span._.score = p.score


def set_spans(doc: Doc, placed: Sequence[Placed], key: str, overwrite: bool) -> None:
    """All mentions, overlaps allowed, in ``doc.spans[key]``; ``attrs["scores"]`` holds each one's score.

    ``overwrite=False`` adds them to spans already under ``key``; ``True`` replaces those.
    """
    old = doc.spans.get(key) if not overwrite else None
    spans = list(old) if old is not None else []
    scores = list(old.attrs.get("scores", [None] * len(old))) if old is not None else []
    if len(scores) != len(spans):
        scores = [None] * len(spans)
    for p in placed:
        spans.append(p.span)
        scores.append(p.score)
        # spaCy keys span extensions by character offsets: one score per offsets, the highest wins
        if p.span._.score is None or p.score > p.span._.score:
            p.span._.score = p.score
    group = SpanGroup(doc, name=key, spans=spans)
    group.attrs["scores"] = scores
    doc.spans[key] = group


# --------------------------------------------------------------------------------- the component
class UniversalNERComponent(Pipe):
    """Asks a UniversalNER student for each label and writes the mentions into the docs.

    ``nlp.pipe`` hands whole batches of docs to ``UniversalNER.extract_batch`` (``batch_size`` passages
    per engine call); the model is loaded on first use, once per distinct model setting.
    """

    def __init__(self, nlp: Language, name: str = FACTORY, **config: Any):
        _register_score_extension()
        self.vocab = nlp.vocab
        self.name = name
        self.settings = Settings(**config)
        check_settings(name, self.settings)
        # no labels in the config: those an adapted student records (``tune --from``), if any
        self._labels: list[str] | dict[str, str] | None = _copy_labels(
            self.settings.labels
            if self.settings.labels is not None
            else _recorded_labels(self.settings.model)
        )
        self._ner: Any = None
        self._shared: Any = None  # keeps the shared engine alive as long as this component
        self.widened = 0  # mentions widened to whole tokens so far (docs/spacy.md explains why)

    # -- labels
    @property
    def labels(self) -> tuple[str, ...]:
        if self._labels is None:
            return ()
        return tuple(self._labels.keys() if isinstance(self._labels, Mapping) else self._labels)

    @property
    def label_definitions(self) -> list[str] | dict[str, str] | None:
        """The labels as they are asked: a list of names, or a {name: definition} dict."""
        return _copy_labels(self._labels)

    def _require_labels(self) -> list[str] | dict[str, str]:
        if not self._labels:
            raise ValueError(
                f"component '{self.name}' has no labels: set config 'labels' (a list of entity types or "
                "a {name: definition} dict), or call nlp.initialize(get_examples) with annotated examples"
            )
        return self._labels

    # -- the model
    @property
    def ner(self) -> Any:
        """The ``UniversalNER`` behind the component (loaded here on first use)."""
        if self._ner is None:
            self._shared, self._ner = load_model(self.settings)
        return self._ner

    def predict(self, docs: Sequence[Doc]) -> list[list[Entity]]:
        """Entities for each doc, character offsets into ``doc.text``; one ``extract_batch`` call."""
        labels = self._require_labels()
        s = self.settings
        kwargs: dict[str, Any] = {
            "batch_size": s.batch_size,
            "dataset": s.dataset,
            "threshold": s.threshold,
            "constrained": s.constrained,
        }
        return self.ner.extract_batch([doc.text for doc in docs], labels, **kwargs)

    def set_annotations(self, docs: Sequence[Doc], predictions: Sequence[Sequence[Entity]]) -> None:
        s = self.settings
        for doc, ents in zip(docs, predictions, strict=True):
            placed, widened = to_spans(doc, ents)
            self.widened += widened
            if s.style == "ents":
                set_ents(doc, placed, s.overwrite_ents)
            else:
                set_spans(doc, placed, s.span_key, s.overwrite_ents)

    def __call__(self, doc: Doc) -> Doc:
        self._require_labels()
        error_handler = self.get_error_handler()
        try:
            self.set_annotations([doc], self.predict([doc]))
            return doc
        except Exception as e:  # noqa: BLE001 - spaCy's error handler decides
            error_handler(self.name, self, [doc], e)
            return doc

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        """Docs in batches of ``batch_size`` (``nlp.pipe``'s), each batch one ``extract_batch`` call.

        As in spaCy's own components, a batch that fails goes to the error handler and, if the handler
        does not raise, its docs are left out of the output.
        """
        self._require_labels()
        error_handler = self.get_error_handler()
        for docs in util.minibatch(stream, size=batch_size):
            try:
                self.set_annotations(docs, self.predict(docs))
                yield from docs
            except Exception as e:  # noqa: BLE001 - spaCy's error handler decides
                error_handler(self.name, self, docs, e)

    # -- training-time hooks
    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]] | None = None,
        *,
        nlp: Language | None = None,
        labels: list[str] | dict[str, str] | None = None,
    ) -> None:
        """Labels: ``labels`` if given, else the config's, else every label annotated in the examples."""
        if labels is not None:
            check_labels(labels, lambda msg: _raise(_config_error(self.name, "labels", msg)))
            self._labels = _copy_labels(labels)
        elif not self._labels:
            if get_examples is None:
                self._require_labels()
            validate_get_examples(get_examples, f"{type(self).__name__}.initialize")
            found: dict[str, None] = {}
            for eg in get_examples():
                spans = (
                    eg.reference.ents
                    if self.settings.style == "ents"
                    else eg.reference.spans.get(self.settings.span_key, [])
                )
                for span in spans:
                    found.setdefault(span.label_, None)
            if not found:
                where = (
                    "doc.ents" if self.settings.style == "ents" else f"doc.spans[{self.settings.span_key!r}]"
                )
                raise ValueError(
                    f"component '{self.name}': no labels in the examples' {where} to take labels from"
                )
            self._labels = sorted(found)

    def score(self, examples: Iterable[Example], **kwargs: Any) -> dict[str, Any]:
        """spaCy's NER scores (``ents_p/r/f``, ``ents_per_type``) or span scores (``spans_<key>_p/r/f``)."""
        validate_examples(examples, f"{type(self).__name__}.score")
        if self.settings.style == "ents":
            return get_ner_prf(examples)
        key = self.settings.span_key
        return Scorer.score_spans(
            examples,
            f"spans_{key}",
            getter=lambda doc, _attr: doc.spans.get(key, []),
            has_annotation=lambda doc: key in doc.spans,
            allow_overlap=True,
            **kwargs,
        )

    # -- serialization: the labels (the settings travel in config.cfg, the weights stay where they are)
    def _state(self) -> dict[str, Any]:
        return {"labels": self._labels, "settings": asdict(self.settings)}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        labels = state.get("labels")
        if labels is not None:
            check_labels(labels, lambda msg: _raise(_config_error(self.name, "labels", msg)))
        self._labels = _copy_labels(labels)

    def to_bytes(self, *, exclude: Iterable[str] = ()) -> bytes:
        return srsly.json_dumps(self._state()).encode("utf8")

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = ()) -> UniversalNERComponent:
        self._load_state(srsly.json_loads(bytes_data))
        return self

    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> None:
        path = util.ensure_path(path)
        path.mkdir(parents=True, exist_ok=True)
        srsly.write_json(path / CFG_FILE, self._state())

    def from_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> UniversalNERComponent:
        path = util.ensure_path(path)
        f = path / CFG_FILE
        if not f.is_file():
            raise ValueError(f"{f} is missing: not a saved {FACTORY} component")
        self._load_state(srsly.read_json(f))
        return self

    def __repr__(self) -> str:
        return (
            f"UniversalNERComponent(name={self.name!r}, model={self.settings.model!r}, labels={self.labels})"
        )


def _recorded_labels(model: Any) -> list[str] | None:
    from .weights.shipped import recorded_labels

    return recorded_labels(model)


def _copy_labels(labels: Any) -> list[str] | dict[str, str] | None:
    if labels is None:
        return None
    if isinstance(labels, Mapping):
        return {str(k).strip(): str(v) for k, v in labels.items()}
    return [str(x).strip() for x in labels]


def _raise(e: Exception) -> None:
    raise e


# --------------------------------------------------------------------------------- the factory
@Language.factory(
    FACTORY,
    default_config=DEFAULT_CONFIG,
    assigns=["doc.ents", "doc.spans", "span._.score"],
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_universal_ner(
    nlp: Language,
    name: str,
    model: str,
    labels: list[str] | dict[str, str] | None,
    quantization: Literal["4bit", "8bit", "int8"] | None,
    device: str | None,
    template: Literal["auto", "uniner", "chat"],
    dataset: str | None,
    batch_size: int,
    threshold: float | None,
    style: Literal["ents", "spans"],
    span_key: str,
    overwrite_ents: bool,
    constrained: bool,
    adapter: str | None,
    engine: str,
    max_new_tokens: int,
) -> UniversalNERComponent:
    """``nlp.add_pipe("universal_ner", config={"model": ..., "labels": [...]})``; docs/spacy.md lists the keys."""
    return UniversalNERComponent(
        nlp,
        name,
        model=model,
        labels=labels,
        quantization=quantization,
        device=device,
        template=template,
        dataset=dataset,
        batch_size=batch_size,
        threshold=threshold,
        style=style,
        span_key=span_key,
        overwrite_ents=overwrite_ents,
        constrained=constrained,
        adapter=adapter,
        engine=engine,
        max_new_tokens=max_new_tokens,
    )
