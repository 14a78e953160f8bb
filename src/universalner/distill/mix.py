"""``python -m universalner.distill.mix``: the default student's training data, from every allowed source.

Sources (``../shared/data``; see its README for what may be trained on):

* Pile-NER-type teacher annotations (BIO), chunked and negative-sampled exactly as
  ``distill.convert`` does, its fixed 5% of passages held out for dev;
* Pile-NER one-type examples: each text asked only the one type it was labelled for;
* the nine supervised corpora, each sentence asked every type of its corpus in natural language
  (``corpora.supervised``), sampled to a fixed number per corpus rather than by file size.

A share of questions is asked by definition or by a variant of the type's name (``phrasing``).
Every conversation whose passage contains a sentence of a benchmark or evaluation set is dropped
(``heldout``), the output is checked again, and ``stats.json`` records each source file's sha256,
what was taken from it, and what was dropped. The dev sets (``dev/*.json``, the reference's
evaluation format) ask each sentence its own types and absent ones, as benchmarks do.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..checksums import sha256_file
from ..corpora import DataFormatError, Sentence
from ..corpora.conversations import (
    conversation_turns,
    eval_records,
    records_to_reference,
    sentences_to_conversations,
)
from ..corpora.pilener import read_definitions, read_typed_examples
from ..corpora.supervised import CORPORA, corpus, read_split, split_path
from ..prompts import format_answer
from .build import BuildReport, NegativeSampler, conversations, write_json
from .convert import ConvertConfig, dev_records, split_corpus
from .heldout import HeldOut, check_conversations, held_out_files, normalise
from .phrasing import phrasing


@dataclass
class MixConfig:
    shared: str
    output: str
    seed: int = 0
    pile_negatives: int = 6
    max_words: int = 64
    natural: float = 0.5
    examples: int = 600  # of the 1,954 one-type Pile-NER examples
    per_corpus: int = 600  # sentences from each supervised corpus's training split
    empty_share: float = 0.2  # at most this share of a corpus's sampled sentences has no mention
    definition_share: float = 0.1
    variant_share: float = 0.1
    dev_pile: int = 80  # Pile-NER dev chunks (own types + dev_negatives absent ones each)
    dev_per_corpus: int = 30
    dev_negatives: int = 12
    corpora: list[str] = field(default_factory=lambda: [c.name for c in CORPORA])

    def check(self) -> None:
        for name in (
            "examples",
            "per_corpus",
            "dev_pile",
            "dev_per_corpus",
            "pile_negatives",
            "dev_negatives",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be 0 or more")
        if not 0 <= self.empty_share <= 1:
            raise ValueError(f"--empty-share must be in [0, 1], not {self.empty_share}")
        for name in self.corpora:
            corpus(name)


def sample_sentences(
    sentences: list[Sentence], k: int, empty_share: float, rng: random.Random
) -> list[Sentence]:
    """``k`` sentences, at most ``empty_share`` of them without a mention (file order kept)."""
    full = [i for i, s in enumerate(sentences) if s.entities]
    empty = [i for i, s in enumerate(sentences) if not s.entities]
    n_empty = min(len(empty), round(k * empty_share))
    n_full = min(len(full), k - n_empty)
    n_empty = min(len(empty), k - n_full)
    chosen = rng.sample(full, n_full) + rng.sample(empty, n_empty)
    return [sentences[i] for i in sorted(chosen)]


def example_conversation(cid: str, text: str, asked: str, mentions: list[str]) -> dict:
    return {"id": cid, "conversations": conversation_turns(text, [(asked, format_answer(mentions))], None)}


PILENER_LICENCE = "CC BY-NC 4.0"  # Universal-NER/Pile-NER-type's card (docs/data_sources.md)


def count_questions(convs: list[dict]) -> dict[str, int]:
    answers = [t["value"] for c in convs for t in c["conversations"][3::2]]
    return {"conversations": len(convs), "questions": len(answers), "empty_answers": answers.count("[]"),
            "characters": sum(len(t["value"]) for c in convs for t in c["conversations"])}  # fmt: skip


def mix(cfg: MixConfig) -> dict:
    cfg.check()
    shared = Path(cfg.shared)
    data = shared / "data"
    pile_dir, sup_dir = data / "pilener", data / "supervised"
    bio, labels = pile_dir / "pilener_391types.bio", pile_dir / "label.txt"
    examples_file, definitions_file = (
        pile_dir / "pilener_391_examples.json",
        pile_dir / "pilener_391_definitions.json",
    )
    for p in (bio, labels, examples_file, definitions_file):
        if not p.is_file():
            raise FileNotFoundError(f"{p} is missing: --shared must be the folder holding data/pilener")
    ask = phrasing(read_definitions(definitions_file), cfg.definition_share, cfg.variant_share)
    sources: dict[str, dict] = {}

    # Pile-NER: the teacher's open-type annotations
    conv_cfg = ConvertConfig(str(bio), "", str(labels), cfg.pile_negatives, cfg.natural, seed=cfg.seed,
                             max_words=cfg.max_words)  # fmt: skip
    sp = split_corpus(conv_cfg)
    report = BuildReport()
    parts = {"pilener": conversations(sp.train, cfg.pile_negatives, cfg.seed, report, ask)}
    sampler = NegativeSampler(report.type_counts)
    sources["pilener"] = {"file": str(bio), "sha256": sha256_file(bio), "licence": PILENER_LICENCE, "passages": sp.passages,
                          "chunks": sp.chunks, "dev_passages": len(sp.dev_passages)}  # fmt: skip

    # one-type examples; none that overlaps a Pile-NER dev chunk
    rng = random.Random(f"{cfg.seed}:examples")
    every = read_typed_examples(examples_file)
    chunks_index, examples_index = (
        HeldOut.from_texts(s.text for s in sp.dev),
        HeldOut.from_texts(e.text for e in every),
    )
    inside_dev = {hit for s in sp.dev for hit in examples_index.found_in(s.text)}
    pool = [e for e in every if not chunks_index.found_in(e.text) and normalise(e.text) not in inside_dev]
    overlapping = len(every) - len(pool)
    chosen = rng.sample(pool, min(cfg.examples, len(pool)))
    parts["pilener_examples"] = [
        example_conversation(f"pilener_example_{k}", e.text, ask(e.label, rng), list(e.mentions))
        for k, e in enumerate(chosen)
    ]
    sources["pilener_examples"] = {"file": str(examples_file), "sha256": sha256_file(examples_file), "licence": PILENER_LICENCE,
                                   "available": len(pool), "dropped_overlapping_dev": overlapping}  # fmt: skip
    sources["pilener_definitions"] = {"file": str(definitions_file), "sha256": sha256_file(definitions_file),
                                      "licence": "Apache-2.0 (SLIMER); its example sentences are Pile-NER's, " + PILENER_LICENCE}  # fmt: skip

    # supervised corpora, each sentence asked every type of its corpus
    dev_sets: dict[str, list[Sentence]] = {}
    corpus_labels: dict[str, list[str]] = {}
    for name in cfg.corpora:
        c = corpus(name)
        train = read_split(sup_dir, c, "train")
        rng = random.Random(f"{cfg.seed}:corpus:{name}")
        picked = sample_sentences(train, cfg.per_corpus, cfg.empty_share, rng)
        identity = {lab: lab for lab in c.labels}
        parts[name] = sentences_to_conversations(picked, name, identity, dataset_specific=False, seed=cfg.seed,
                                                 ask=ask)  # fmt: skip
        dev = read_split(sup_dir, c, "dev")
        dev_sets[name] = sample_sentences(
            dev, cfg.dev_per_corpus, cfg.empty_share, random.Random(f"dev:{name}")
        )
        corpus_labels[name] = c.labels
        tf, df = split_path(sup_dir, c, "train"), split_path(sup_dir, c, "dev")
        sources[name] = {"train_file": str(tf), "train_sha256": sha256_file(tf), "train_sentences": len(train),
                         "dev_file": str(df), "dev_sha256": sha256_file(df), "dev_sentences": len(dev),
                         "labels": c.labels, "licence": c.licence}  # fmt: skip

    # nothing of a benchmark or an evaluation set, in training or dev data
    held = HeldOut.load(held_out_files(shared))
    dropped: Counter = Counter()
    for name, convs in parts.items():
        hit = {cid for cid, _ in check_conversations(held, convs)}
        dropped[name] = len(hit)
        parts[name] = [c for c in convs if c["id"] not in hit]
    pile_dev = [s for s in sp.dev[: cfg.dev_pile] if not held.found_in(s.text)]
    for name in dev_sets:
        dev_sets[name] = [s for s in dev_sets[name] if not held.found_in(s.text)]

    train = [c for convs in parts.values() for c in convs]
    random.Random(f"{cfg.seed}:order").shuffle(train)
    remaining = check_conversations(held, train)
    if remaining:  # cannot happen after the filter above; a check that the filter works
        raise AssertionError(f"{len(remaining)} held-out sentences still in the training data")

    out = Path(cfg.output)
    (out / "dev").mkdir(parents=True, exist_ok=True)
    write_json(train, out / "train.json")
    dev_files = {}
    recs = dev_records(pile_dev, sampler, cfg.dev_negatives, cfg.seed, "pilener_dev")
    write_json(records_to_reference(recs, pile_dev), out / "dev" / "pilener.json")
    dev_files["pilener"] = {"file": "dev/pilener.json", "sentences": len(pile_dev), "questions": len(recs)}
    for name, sents in dev_sets.items():
        recs = eval_records(sents, corpus_labels[name], f"{name}_dev")
        write_json(records_to_reference(recs, sents), out / "dev" / f"{name}.json")
        dev_files[name] = {"file": f"dev/{name}.json", "sentences": len(sents), "questions": len(recs)}

    stats = {
        "settings": asdict(cfg),
        "sources": sources,
        "train": {name: count_questions(convs) for name, convs in parts.items()},
        "train_total": count_questions(train),
        "dev": dev_files,
        "held_out": {
            **held.summary(),
            "dropped_conversations": dict(dropped),
            "found_in_output": len(remaining),
        },  # fmt: skip
        "top_pilener_types": Counter(report.type_counts).most_common(20),
    }
    write_json(stats, out / "stats.json")
    return stats


def main(argv: list[str] | None = None) -> int:
    d = MixConfig("", "")
    ap = argparse.ArgumentParser(
        prog="python -m universalner.distill.mix", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--shared", required=True, help="the folder holding data/ and benchmarks/ (../shared)")
    ap.add_argument("--output", required=True, help="folder for train.json, dev/*.json and stats.json")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument(
        "--pile-negatives", type=int, default=d.pile_negatives, help="absent types asked per Pile-NER chunk"
    )
    ap.add_argument("--max-words", type=int, default=d.max_words, help="Pile-NER chunk size in tokens")
    ap.add_argument(
        "--natural", type=float, default=d.natural, help="share of Pile-NER chunks naturally spaced"
    )
    ap.add_argument("--examples", type=int, default=d.examples, help="one-type Pile-NER examples taken")
    ap.add_argument("--per-corpus", type=int, default=d.per_corpus, help="sentences per supervised corpus")
    ap.add_argument(
        "--empty-share", type=float, default=d.empty_share, help="most sentences without a mention"
    )
    ap.add_argument(
        "--definition-share", type=float, default=d.definition_share, help="questions asked by definition"
    )
    ap.add_argument(
        "--variant-share", type=float, default=d.variant_share, help="questions with a variant name"
    )
    ap.add_argument("--dev-pile", type=int, default=d.dev_pile)
    ap.add_argument("--dev-per-corpus", type=int, default=d.dev_per_corpus)
    ap.add_argument("--dev-negatives", type=int, default=d.dev_negatives)
    ap.add_argument("--corpora", type=lambda v: v.split(","), default=d.corpora,
                    help="comma-separated supervised corpora (default: all nine)")  # fmt: skip
    a = ap.parse_args(argv)
    cfg = MixConfig(**{k: v for k, v in vars(a).items()})
    try:
        s = mix(cfg)
    except (DataFormatError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t = s["train_total"]
    print(f"{t['conversations']} training conversations, {t['questions']} questions "
          f"({t['empty_answers']} answered []); dev: "
          + ", ".join(f"{k} {v['sentences']}" for k, v in s["dev"].items())
          + f"; held-out sentences dropped: {sum(s['held_out']['dropped_conversations'].values())}; "
          f"written to {cfg.output}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
