"""Passages for the teacher: read corpora, split at sentence/paragraph boundaries, dedupe, sample.

Every passage is an exact substring of its source document (original whitespace kept), so the
teacher's mentions can be checked against it and later placed by character offsets.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


class CorpusError(ValueError):
    """Input that cannot be read as a corpus; the message names the file, line or key."""


@dataclass
class Passage:
    """One unit of teacher work: ``text == document[start:start + len(text)]``; ``id`` is stable."""

    id: str
    text: str
    tokens: int
    doc: str
    start: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- token counting ------------------------------------------------------------------------------
_WORD_PIECES = re.compile(r"\w+|[^\w\s]")


class TokenCounter:
    """Counts tokens; ``additive`` means a span's count is the sum of its whitespace-split parts."""

    name = "words"
    additive = True

    def count(self, text: str) -> int:
        """Words and single punctuation marks: no download, no dependency.

        On the shared English corpora this is within a few percent of LLaMA-family and OpenAI BPE
        counts (docs/distill.md has the measured ratios); pass a real tokenizer for exact limits.
        """
        return sum(1 for _ in _WORD_PIECES.finditer(text))

    def count_many(self, texts: list[str]) -> list[int]:
        return [self.count(t) for t in texts]


class HFTokenCounter(TokenCounter):
    """An exact count with a transformers tokenizer (a hub id or a local folder)."""

    additive = False

    def __init__(self, name_or_path: str):
        try:
            from transformers import AutoTokenizer
        except ImportError as e:  # pragma: no cover - transformers is a dependency
            raise CorpusError(f"--tokenizer needs transformers: {e}") from e
        local = Path(os.path.expanduser(str(name_or_path))).exists()
        try:
            if not local:  # a hub id: fail in seconds, not minutes of retries, when the hub is out of reach
                from ..weights.hub import check_hub_reachable

                check_hub_reachable(str(name_or_path))
            self.tok = AutoTokenizer.from_pretrained(name_or_path)
        except Exception as e:
            raise CorpusError(
                f"cannot load tokenizer {name_or_path!r}: {type(e).__name__}: {e}. "
                "Pass a local folder with tokenizer files, or omit --tokenizer for the built-in word count."
            ) from e
        self.name = str(name_or_path)

    def count(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    def count_many(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in self.tok(texts, add_special_tokens=False)["input_ids"]]


def make_counter(tokenizer: str | None) -> TokenCounter:
    return HFTokenCounter(tokenizer) if tokenizer else TokenCounter()


# --- splitting -----------------------------------------------------------------------------------
_PARAGRAPH = re.compile(r"[^\n]+")
_SENTENCE_END = re.compile(
    r"[.!?][\"')\]\u201d\u2019]*(?:\[\d+\]|\[[a-z]\])*(?=\s+[\"'(\[\u201c\u2018A-Z0-9])"
)
_WORD = re.compile(r"\S+")
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "etc", "e.g", "i.e", "no", "inc", "ltd", "co",
    "prof", "gen", "col", "lt", "sgt", "mt", "fig", "vol", "approx", "est", "dept", "univ", "u.s", "u.k",
}  # fmt: skip


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _sentences(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Sentence spans inside ``text[start:end]``; initials and common abbreviations do not end one."""
    spans, cur = [], start
    for m in _SENTENCE_END.finditer(text, start, end):
        word = text[cur : m.start()].rsplit(None, 1)[-1] if text[cur : m.start()].strip() else ""
        word = word.lstrip("(\"'").lower()
        if text[m.start()] == "." and (word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())):
            continue
        s, e = _strip_span(text, cur, m.end())
        if e > s:
            spans.append((s, e))
        cur = m.end()
    s, e = _strip_span(text, cur, end)
    if e > s:
        spans.append((s, e))
    return spans


def _pack(
    text: str, units: list[tuple[int, int, int]], counter: TokenCounter, limit: int
) -> list[tuple[int, int, int]]:
    """Greedily join consecutive (start, end, tokens) units into such triples of at most ``limit`` tokens."""
    groups: list[tuple[int, int, int]] = []
    i = 0
    while i < len(units):
        j, total = i + 1, units[i][2]
        while j < len(units) and total + units[j][2] <= limit:
            total += units[j][2]
            j += 1
        if not counter.additive and j > i + 1:
            # a real tokenizer counts joined text differently from its parts: shrink until it fits
            total = counter.count(text[units[i][0] : units[j - 1][1]])
            while total > limit and j > i + 1:
                j -= 1
                total = counter.count(text[units[i][0] : units[j - 1][1]])
        groups.append((units[i][0], units[j - 1][1], total))
        i = j
    return groups


def _words(text: str, s: int, e: int, counter: TokenCounter, limit: int) -> list[tuple[int, int, int]]:
    """Word units of a sentence too long to keep whole; a "word" over the limit (a URL) is cut."""
    spans: list[tuple[int, int]] = []
    for m in _WORD.finditer(text, s, e):
        k, end = m.start(), m.end()
        while k < end:
            step = end - k
            while step > 1 and counter.count(text[k : k + step]) > limit:
                step = min(step // 2, limit)
            spans.append((k, k + step))
            k += step
    counts = counter.count_many([text[a:b] for a, b in spans])
    return [(a, b, n) for (a, b), n in zip(spans, counts, strict=True)]


def split_document(text: str, limit: int, counter: TokenCounter | None = None) -> list[tuple[int, int, int]]:
    """(start, end, tokens) of passages of at most ``limit`` tokens.

    Paragraphs (lines) are kept whole when they fit and packed together greedily; a paragraph that
    does not fit is split at sentence ends, and a sentence that does not fit at word boundaries.
    """
    if limit < 1:
        raise ValueError(f"passage token limit must be >= 1, not {limit}")
    counter = counter or TokenCounter()
    paras = [_strip_span(text, m.start(), m.end()) for m in _PARAGRAPH.finditer(text)]
    paras = [(s, e) for s, e in paras if e > s]
    units: list[tuple[int, int, int]] = []
    for (s, e), n in zip(paras, counter.count_many([text[s:e] for s, e in paras]), strict=True):
        if n <= limit:
            units.append((s, e, n))
            continue
        sents = _sentences(text, s, e)
        for (a, b), m in zip(sents, counter.count_many([text[a:b] for a, b in sents]), strict=True):
            units.extend([(a, b, m)] if m <= limit else _words(text, a, b, counter, limit))
    return _pack(text, units, counter, limit)


# --- reading corpora -----------------------------------------------------------------------------
@dataclass
class Document:
    id: str
    text: str


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _read_jsonl(path: Path, label: str, text_field: str) -> Iterator[Document]:
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise CorpusError(
                    f"{path}:{lineno}: not UTF-8 text ({e.reason} at column {e.start + 1}); save the file as UTF-8"
                ) from None
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise CorpusError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(rec, dict):
                raise CorpusError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
            if text_field not in rec:
                keys = ", ".join(sorted(rec)[:8])
                raise CorpusError(
                    f"{path}:{lineno}: no field {text_field!r} (fields: {keys}); choose one with --text-field"
                )
            text = rec[text_field]
            if not isinstance(text, str):
                raise CorpusError(f"{path}:{lineno}: field {text_field!r} is {type(text).__name__}, not text")
            yield Document(f"{label}:{lineno}", text)


def _read_txt(path: Path, label: str) -> Iterator[Document]:
    try:
        with _open_text(path) as f:
            yield Document(label, f.read())
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_HF_FILE_TYPES = {".parquet": "parquet", ".csv": "csv", ".arrow": "arrow", ".json": "json"}
_FILE_TYPES = {".jsonl", ".ndjson", ".txt", ".md", *_HF_FILE_TYPES}


def _load_hf(source: str | Path, split: str) -> Any:
    """A ``datasets`` corpus: a ``save_to_disk`` folder, a local data folder/file, or a hub name."""
    import datasets

    path = Path(source)
    try:
        if path.is_dir() and any((path / f).is_file() for f in ("state.json", "dataset_dict.json")):
            ds = datasets.load_from_disk(str(path))
        elif path.is_dir():
            ds = datasets.load_dataset(str(path), split=split)
        elif path.is_file():
            ds = datasets.load_dataset(_HF_FILE_TYPES[path.suffix], data_files=str(path), split=split)
        else:
            ds = datasets.load_dataset(str(source), split=split, streaming=True)
    except ConnectionError as e:
        raise CorpusError(
            f"cannot reach the Hugging Face hub for data set {str(source)!r} ({e}). Offline, download it "
            "where the hub is reachable (datasets.load_dataset(...).save_to_disk(DIR), or its .jsonl/.parquet "
            "files) and pass that local folder or file with --input."
        ) from None
    except (FileNotFoundError, ValueError) as e:
        raise CorpusError(f"cannot load data set {str(source)!r}: {type(e).__name__}: {e}") from None
    if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if split not in ds:
            raise CorpusError(f"data set {str(source)!r} has splits {sorted(ds)}, not {split!r}; use --split")
        ds = ds[split]
    return ds


def _read_hf(source: str | Path, label: str, text_field: str, split: str) -> Iterator[Document]:
    ds = _load_hf(source, split)
    names = getattr(ds, "column_names", None)
    if names is not None and text_field not in names:
        raise CorpusError(
            f"data set {str(source)!r} has no column {text_field!r} (columns: {', '.join(names)})"
        )
    for row, rec in enumerate(ds):
        text = rec.get(text_field)
        if not isinstance(text, str):
            raise CorpusError(f"data set {str(source)!r}, row {row}: column {text_field!r} is not text")
        yield Document(f"{label}:{row}", text)


def iter_documents(inputs: Iterable[str | os.PathLike], text_field: str = "text", split: str = "train"):
    """Documents from ``.jsonl``/``.json`` lines, ``.txt`` files and ``datasets`` corpora, in order."""
    inputs = [str(p) for p in inputs]
    if not inputs:
        raise CorpusError("no input given")
    names = [Path(p).name or p for p in inputs]
    labels = [n if names.count(n) == 1 else f"{i}-{n}" for i, n in enumerate(names)]
    for src, label in zip(inputs, labels, strict=True):
        path = Path(src)
        suffixes = [s for s in path.suffixes if s != ".gz"]
        kind = suffixes[-1].lower() if suffixes else ""
        if not path.exists():
            if kind in _FILE_TYPES or not _HUB_NAME.match(src):
                raise CorpusError(f"input not found: {src}")
            yield from _read_hf(src, label, text_field, split)  # a hub data set name
        elif path.is_dir():
            yield from _read_hf(path, label, text_field, split)
        elif kind in (".jsonl", ".ndjson") or (kind == ".json" and _is_jsonl(path)):
            yield from _read_jsonl(path, label, text_field)
        elif kind in (".txt", ".md"):
            yield from _read_txt(path, label)
        elif kind in _HF_FILE_TYPES:
            yield from _read_hf(path, label, text_field, split)
        else:
            raise CorpusError(
                f"{src}: unsupported input type {kind or '(no extension)'}; use .jsonl, .txt, "
                ".parquet/.csv, a datasets folder, or a hub data set name"
            )


def _is_jsonl(path: Path) -> bool:
    """A ``.json`` file of one object per line (not one JSON array)."""
    with _open_text(path) as f:
        head = f.read(1).lstrip()
        return head == "{"


# --- the passage set -----------------------------------------------------------------------------
@dataclass
class PassageStats:
    documents: int = 0
    passages: int = 0
    duplicates: int = 0
    sampled: int = 0


def iter_passages(
    docs: Iterable[Document], limit: int = 256, counter: TokenCounter | None = None, min_tokens: int = 1
) -> Iterator[Passage]:
    counter = counter or TokenCounter()
    for doc in docs:
        for k, (s, e, n) in enumerate(split_document(doc.text, limit, counter)):
            if n >= min_tokens:
                yield Passage(f"{doc.id}#{k}", doc.text[s:e], n, doc.id, s)


def sample_passages(
    inputs: Iterable[str | os.PathLike],
    *,
    text_field: str = "text",
    split: str = "train",
    passage_tokens: int = 256,
    max_passages: int | None = None,
    seed: int = 0,
    tokenizer: str | None = None,
    min_tokens: int = 1,
    stats: PassageStats | None = None,
) -> list[Passage]:
    """Split every document, drop exact duplicate passages, and keep a seeded uniform sample.

    Streams the corpus (reservoir sampling), so the input can be far larger than memory; the sample
    is returned in corpus order.
    """
    stats = stats if stats is not None else PassageStats()
    counter = make_counter(tokenizer)
    rng = random.Random(seed)
    seen: set[bytes] = set()
    reservoir: list[tuple[int, Passage]] = []
    n = 0

    def docs():
        for d in iter_documents(inputs, text_field, split):
            stats.documents += 1
            yield d

    for p in iter_passages(docs(), passage_tokens, counter, min_tokens):
        stats.passages += 1
        key = hashlib.blake2b(p.text.encode(), digest_size=12).digest()
        if key in seen:
            stats.duplicates += 1
            continue
        seen.add(key)
        if max_passages is None or len(reservoir) < max_passages:
            reservoir.append((n, p))
        else:
            j = rng.randrange(n + 1)
            if j < max_passages:
                reservoir[j] = (n, p)
        n += 1
    reservoir.sort(key=lambda x: x[0])
    stats.sampled = len(reservoir)
    return [p for _, p in reservoir]


def write_passages(passages: Iterable[Passage], path: str | os.PathLike) -> None:
    """Write atomically, so a crash never leaves a half-written passage list behind."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for p in passages:
            f.write(json.dumps(p.to_dict(), ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_passages(path: str | os.PathLike) -> list[Passage]:
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                out.append(
                    Passage(
                        rec["id"],
                        rec["text"],
                        int(rec.get("tokens", 0)),
                        rec.get("doc", ""),
                        int(rec.get("start", 0)),
                    )
                )
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise CorpusError(
                    f"{path}:{lineno}: not a passage record ({type(e).__name__}: {e})"
                ) from None
    return out
