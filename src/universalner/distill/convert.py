"""``python -m universalner.distill.convert``: an annotated corpus (BIO columns) -> training conversations.

The teacher's annotations already exist for Pile-NER-type (``../shared/data/pilener``): this
turns such a file into exactly what ``distill`` writes after asking a teacher, with the same
negative sampler and conversation builder (``build.py``), plus a fixed dev split asked the way
benchmarks ask (every passage asked its own types and many absent ones), so that settings and
checkpoints are chosen on it and never on a benchmark's test set.

Outputs in ``--output``: ``train.json`` (conversations), ``dev.json`` and ``dev_natural.json``
(one record per passage and type, the reference's evaluation format, tokens joined by spaces and
naturally spaced), ``stats.json`` (counts, settings and the input's sha256).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..checksums import sha256_file
from ..corpora import DataFormatError, Sentence, decode_tags, read_conll, sentence_from_tokens
from ..corpora.conversations import eval_records, records_to_reference
from ..corpora.spacing import join_tokens
from ..entity import Entity
from .build import Annotation, BuildReport, NegativeSampler, conversations, write_json
from .passages import Passage


@dataclass
class ConvertConfig:
    input: str
    output: str
    labels: str | None = None  # a label.txt: the types negatives may be drawn from
    negatives: int = 8
    natural: float = 0.5  # share of training passages rebuilt with natural spacing
    dev_fraction: float = 0.05
    dev_negatives: int = 12
    seed: int = 0
    tag_column: str = "auto"
    max_words: int | None = None  # cut passages into chunks of whole sentences of at most this many tokens

    def check(self) -> None:
        if not 0 <= self.natural <= 1:
            raise ValueError(f"--natural must be in [0, 1], not {self.natural}")
        if not 0 <= self.dev_fraction < 1:
            raise ValueError(f"--dev-fraction must be in [0, 1), not {self.dev_fraction}")
        if self.negatives < 0 or self.dev_negatives < 0:
            raise ValueError("--negatives and --dev-negatives must be 0 or more")


def natural_sentence(s: Sentence) -> Sentence:
    """The same sentence with natural spacing; mentions cut from the new text by token offsets."""
    text, starts = join_tokens(s.tokens)
    ents = []
    for a, b, typ in decode_tags(s.tags, s.source):
        start, end = starts[a], starts[b - 1] + len(s.tokens[b - 1])
        ents.append(Entity(text[start:end], typ, start, end))
    return Sentence(text, ents, list(s.tokens), list(s.tags), s.source)


_SENTENCE_END = {".", "?", "!"}


def split_sentence(s: Sentence, max_words: int) -> list[Sentence]:
    """Chunks of whole sentences of at most ``max_words`` tokens (a longer sentence stays whole).

    A mention never spans a cut: cuts fall after a sentence-final token that no mention continues.
    """
    tokens, tags = s.tokens, s.tags
    cuts = [
        i + 1 for i, t in enumerate(tokens[:-1])
        if t in _SENTENCE_END and not tags[i + 1].startswith(("I-", "E-", "L-"))
    ]  # fmt: skip
    bounds, start, last = [], 0, 0
    for c in [*cuts, len(tokens)]:
        if c - start > max_words and last > start:
            bounds.append((start, last))
            start = last
        last = c
    bounds.append((start, len(tokens)))
    out = []
    for k, (a, b) in enumerate(bounds):
        chunk_tags = list(tags[a:b])
        if chunk_tags and chunk_tags[0][:2] in ("I-", "E-"):  # never happens at a cut; kept valid anyway
            chunk_tags[0] = "B-" + chunk_tags[0][2:]
        out.append(sentence_from_tokens(tokens[a:b], chunk_tags, f"{s.source}#{k}"))
    return out


def types_of(s: Sentence, allowed: set[str] | None) -> dict[str, list[str]]:
    """type -> distinct mentions in text order (types outside ``allowed`` left out)."""
    out: dict[str, list[str]] = {}
    for e in sorted(s.entities, key=lambda e: (e.start, e.end)):
        if allowed is not None and e.label not in allowed:
            continue
        assert s.text[e.start : e.end] == e.text, (s.source, e)
        mentions = out.setdefault(e.label, [])
        if e.text not in mentions:
            mentions.append(e.text)
    return out


def dev_indices(n: int, fraction: float) -> set[int]:
    """A fixed sample of passage indices: depends on the corpus size only, not on ``--seed``."""
    k = round(n * fraction)
    return set(random.Random(f"dev-split:{n}").sample(range(n), k)) if k else set()


def read_labels(path: str) -> list[str]:
    labels = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    labels = [x for x in labels if x]
    if not labels:
        raise DataFormatError(f"{path}: no labels (one type per line)")
    return labels


def dev_records(sentences: list[Sentence], sampler: NegativeSampler, k: int, seed: int, name: str) -> list:
    """Reference-format records: each passage asked its own types plus ``k`` absent ones."""
    records = []
    for i, s in enumerate(sentences):
        own = list(types_of(s, None))
        negs = sampler.sample(random.Random(f"{seed}:dev-negatives:{i}"), set(own), k)
        labels = own + negs
        for r in eval_records([s], labels, name):
            r.sentence = i
            r.id = f"{name}_{len(records)}"
            records.append(r)
    return records


@dataclass
class Split:
    """A converted corpus before it is written: training annotations and held-out dev chunks."""

    passages: int
    chunks: int
    train: list[Annotation]
    dev: list[Sentence]
    dev_passages: set[int]
    natural: int  # training chunks rebuilt with natural spacing


def split_corpus(cfg: ConvertConfig, prefix: str = "pilener") -> Split:
    """Read, chunk and split a BIO corpus: whole passages go to dev, the rest become annotations."""
    cfg.check()
    passages = read_conll(cfg.input, cfg.tag_column)
    allowed = set(read_labels(cfg.labels)) if cfg.labels else None
    dev = dev_indices(len(passages), cfg.dev_fraction)  # whole passages: no chunk of a dev passage trains
    train_ann, dev_sents, natural_count, unmatched = [], [], 0, 0
    chunks = [
        (i, k, c)
        for i, p in enumerate(passages)
        for k, c in enumerate(split_sentence(p, cfg.max_words) if cfg.max_words else [p])
    ]
    for i, k, s in chunks:
        if i in dev:
            dev_sents.append(Sentence(s.text, [e for e in s.entities if allowed is None or e.label in allowed],
                                      s.tokens, s.tags, s.source))  # fmt: skip
            continue
        pid = f"{prefix}_{i}" + (f"_{k}" if cfg.max_words else "")
        natural = random.Random(f"{cfg.seed}:spacing:{pid}").random() < cfg.natural
        if natural:
            s = natural_sentence(s)
        types = types_of(s, allowed)
        unmatched += sum(m not in s.text for ms in types.values() for m in ms)
        if types:  # as in the paper, a passage without entities is left out
            natural_count += natural
            train_ann.append(Annotation(Passage(pid, s.text, len(s.tokens), pid), types))
    if unmatched:
        raise AssertionError(f"{unmatched} rebuilt mentions do not occur in their passage")
    return Split(len(passages), len(chunks), train_ann, dev_sents, dev, natural_count)


def convert(cfg: ConvertConfig) -> dict:
    sp = split_corpus(cfg)
    report = BuildReport()
    train = conversations(sp.train, negatives=cfg.negatives, seed=cfg.seed, report=report)
    sampler = NegativeSampler(report.type_counts)
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    write_json(train, out / "train.json")
    for fname, sents in (
        ("dev.json", sp.dev),
        ("dev_natural.json", [natural_sentence(s) for s in sp.dev]),
    ):
        recs = dev_records(sents, sampler, cfg.dev_negatives, cfg.seed, "pilener_dev")
        write_json(records_to_reference(recs, sents), out / fname)
    positives = report.questions - report.negatives
    stats = {
        "input": str(Path(cfg.input).resolve()),
        "input_sha256": sha256_file(cfg.input),
        "settings": vars(cfg),
        "passages": sp.passages,
        "chunks": sp.chunks,
        "train_conversations": len(train),
        "train_natural_spacing": sp.natural,
        "train_questions": report.questions,
        "train_positive_questions": positives,
        "train_negative_questions": report.negatives,
        "train_entities": report.entities,
        "types": len(report.type_counts),
        "dev_passages": len(sp.dev_passages),
        "dev_chunks": len(sp.dev),
        "dev_passage_indices": sorted(sp.dev_passages),
        "top_types": Counter(report.type_counts).most_common(20),
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=1, ensure_ascii=False) + "\n")
    return stats


def main(argv: list[str] | None = None) -> int:
    d = ConvertConfig("", "")
    ap = argparse.ArgumentParser(
        prog="python -m universalner.distill.convert",
        description="An annotated BIO/CoNLL corpus (e.g. Pile-NER-type) -> UniNER training conversations "
        "with frequency-sampled negatives, and a fixed dev split asked the way benchmarks ask.",
    )
    ap.add_argument("--input", required=True, help="BIO/CoNLL file, blank line between passages")
    ap.add_argument("--output", required=True, help="folder for train.json, dev.json, stats.json")
    ap.add_argument("--labels", help="label.txt: keep only these types and draw negatives from them")
    ap.add_argument("--negatives", type=int, default=d.negatives, help=f"absent types asked per training passage (default {d.negatives})")  # fmt: skip
    ap.add_argument("--natural", type=float, default=d.natural, help=f"share of training passages with natural spacing (default {d.natural})")  # fmt: skip
    ap.add_argument("--dev-fraction", type=float, default=d.dev_fraction)
    ap.add_argument("--dev-negatives", type=int, default=d.dev_negatives, help=f"absent types asked per dev passage (default {d.dev_negatives})")  # fmt: skip
    ap.add_argument("--seed", type=int, default=d.seed, help="negatives, spacing choice and query order")
    ap.add_argument("--tag-column", default="auto", choices=["auto", "first", "last"])
    ap.add_argument(
        "--max-words", type=int,
        help="cut passages into chunks of whole sentences of at most N tokens (default: whole passages)",
    )  # fmt: skip
    a = ap.parse_args(argv)
    cfg = ConvertConfig(a.input, a.output, a.labels, a.negatives, a.natural, a.dev_fraction, a.dev_negatives,
                        a.seed, a.tag_column, a.max_words)  # fmt: skip
    try:
        s = convert(cfg)
    except (DataFormatError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"{s['train_conversations']} training conversations ({s['train_natural_spacing']} naturally spaced), "
        f"{s['train_positive_questions']} positive and {s['train_negative_questions']} negative questions; "
        f"{s['dev_passages']} dev passages ({s['dev_chunks']} chunks); written to {cfg.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
