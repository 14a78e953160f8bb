"""The sentences a zero-shot student must never train on, and a check that none is in its data.

The benchmark files (``benchmarks/zero-shot``) and the evaluation sets (CrossNER any split, the
shared BC5CDR, NCBI-disease and WNUT-17, and CoNLL-2003 / MIT Movie / MIT Restaurant where a user
has a copy) are read into normalised sentences: lower-case letters and digits only, so that the
tokenised benchmark text ``Obama ( D )`` and a naturally spaced ``Obama (D)`` compare equal. A
training text *contains* a held-out sentence when that sentence's normalised form occurs in the
text's normalised form starting at one of its words. Sentences shorter than ``MIN_CHARS``
normalised characters ("Yes .") occur everywhere by chance and are not checked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..checksums import sha256_file
from ..corpora import read_conll, read_reference_json

MIN_CHARS = 20
_KEY = 16  # characters of a sentence used to find its candidate places
_DROP = re.compile(r"[^0-9a-z]+")


def normalise(text: str) -> str:
    return _DROP.sub("", text.lower())


def held_out_files(shared: str | Path) -> list[Path]:
    """Every held-out file present under ``shared`` (the folder holding ``data/`` and ``benchmarks/``)."""
    shared = Path(shared)
    data = shared / "data"
    files = sorted((shared / "benchmarks" / "zero-shot").glob("*.json"))
    files += sorted((data / "crossner").glob("*/*.txt"))
    for folder, pattern in (("bc5cdr", "*.tsv"), ("ncbi_disease", "*.tsv"), ("wnut17", "*.conll"),
                            ("wnut17", "*.annotated")):  # fmt: skip
        files += sorted((data / folder).glob(pattern))
    for folder in ("conll2003", "mit_movie", "mit_restaurant", "mit-movie", "mit-restaurant"):
        files += sorted(p for p in (data / folder).glob("*") if p.is_file() and p.suffix in (".txt", ".bio"))
    return files


def read_sentences(path: Path) -> list[str]:
    if path.suffix == ".json":
        sentences, _, _ = read_reference_json(path)
    else:
        sentences = read_conll(path)
    return [s.text for s in sentences]


@dataclass
class HeldOut:
    """Normalised held-out sentences, indexed by their first characters for a fast search."""

    files: dict[str, dict] = field(default_factory=dict)  # path -> {"sha256", "sentences"}
    sentences: dict[str, str] = field(default_factory=dict)  # normalised -> "file" it came from
    short: int = 0
    _by_key: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, paths: Iterable[Path]) -> HeldOut:
        self = cls()
        for path in paths:
            texts = read_sentences(path)
            self.files[str(path)] = {"sha256": sha256_file(path), "sentences": len(texts)}
            self.add(texts, path.name)
        return self

    @classmethod
    def from_texts(cls, texts: Iterable[str], source: str = "") -> HeldOut:
        self = cls()
        self.add(texts, source)
        return self

    def add(self, texts: Iterable[str], source: str) -> None:
        for t in texts:
            n = normalise(t)
            if len(n) < MIN_CHARS:
                self.short += 1
                continue
            if n not in self.sentences:
                self.sentences[n] = source
                self._by_key.setdefault(n[:_KEY], []).append(n)

    def found_in(self, text: str) -> list[str]:
        """The held-out sentences (normalised) that occur in ``text``, each starting at one of its words."""
        norm, starts, pos = [], [], 0
        for word in text.split():
            w = normalise(word)
            if w:
                starts.append(pos)
                norm.append(w)
                pos += len(w)
        joined = "".join(norm)
        hits = []
        for p in starts:
            for cand in self._by_key.get(joined[p : p + _KEY], ()):
                if joined.startswith(cand, p):
                    hits.append(cand)
        return hits

    def summary(self) -> dict:
        return {
            "files": self.files,
            "checked_sentences": len(self.sentences),
            "too_short_to_check": self.short,
        }


def texts_of(conversation: dict) -> str:
    """A training conversation's passage (its first human turn, ``Text: ...``)."""
    return conversation["conversations"][0]["value"]


def check_conversations(held: HeldOut, conversations: Sequence[dict]) -> list[tuple[str, str]]:
    """(conversation id, held-out sentence) for every occurrence; empty when the data is clean."""
    return [(c["id"], hit) for c in conversations for hit in held.found_in(texts_of(c))]


def main(argv: list[str] | None = None) -> int:
    """``python -m universalner.distill.heldout SHARED DATA.json``: list held-out sentences in training data."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m universalner.distill.heldout", description=main.__doc__)
    ap.add_argument("shared", help="the folder holding data/ and benchmarks/")
    ap.add_argument("data", help="training conversations (JSON list)")
    a = ap.parse_args(argv)
    held = HeldOut.load(held_out_files(a.shared))
    hits = check_conversations(held, json.loads(Path(a.data).read_text(encoding="utf-8")))
    for cid, sentence in hits:
        print(f"{cid}\t{held.sentences[sentence]}\t{sentence[:80]}")
    print(f"{len(hits)} held-out sentences found in {a.data} ({len(held.sentences)} checked)")
    return 1 if hits else 0


if __name__ == "__main__":
    raise SystemExit(main())
