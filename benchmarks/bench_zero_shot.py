"""Zero-shot on the reference's own benchmark files with `python -m universalner.evaluate run`.

The six sets of ``../shared/benchmarks/zero-shot/`` (CrossNER AI, literature, music, politics,
science and MIT Restaurant, in the reference's conversation JSON: every type of a set asked for
every sentence), the files the published numbers in DESIGN.md were measured on. By default the
shipped student ``universalner-135m`` with its own thresholds; ``--model`` takes any other
(``Universal-NER/UniNER-7B-type`` reproduces the paper's setting, ``--max-new-tokens 256``).

    python benchmarks/bench_zero_shot.py --limit 300 --output runs/zero_shot
    python benchmarks/bench_zero_shot.py --sets CrossNER_AI,mit-restaurant --unconstrained --limit 100

``--conll`` uses the CoNLL test files of ``../shared/data/crossner`` and the library's label maps
instead (same sentences, tokens joined by spaces). Answers are stored as they come, so an interrupted
run continues where it stopped.

``--record STUDENT_FOLDER`` writes the official F1 per set and their average into the student's
``universalner.json`` as its ``"benchmark"`` block (the model card, ``python -m universalner.tune.card``,
shows it), so the card's benchmark numbers are this command's, never typed by hand.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from universalner.evaluate.__main__ import main as evaluate

ROOT = Path(__file__).resolve().parents[1]
SETS = ("CrossNER_AI", "CrossNER_literature", "CrossNER_music", "CrossNER_politics", "CrossNER_science",
        "mit-restaurant")  # fmt: skip
DOMAINS = {
    "ai": "AI",
    "literature": "literature",
    "music": "music",
    "politics": "politics",
    "science": "science",
}


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="universalner-135m", help="default: the shipped student")
    p.add_argument("--bench-dir", default=str(ROOT.parent / "shared" / "benchmarks" / "zero-shot"))
    p.add_argument("--sets", default=",".join(SETS), help="comma-separated names of the files to run")
    p.add_argument("--conll", action="store_true", help="the CrossNER CoNLL test files instead")
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "crossner"))
    p.add_argument("--list-threshold", type=float, help="default: the student's own")
    p.add_argument("--threshold", type=float, help="default: the student's own")
    p.add_argument("--output", default="runs/bench_zero_shot")
    p.add_argument("--limit", type=int, help="first N sentences of each test set")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--unconstrained", action="store_true", help="free decoding, as the reference")
    p.add_argument("--record", help="write the scores into this student folder's universalner.json")
    a = p.parse_args()

    model = a.model
    if a.conll:
        data = [f"CrossNER_{name}={Path(a.data_dir) / d / 'test.txt'}" for d, name in DOMAINS.items()]
    else:
        data = [f"{name}={Path(a.bench_dir) / (name + '.json')}" for name in a.sets.split(",") if name]
    args = [
        "run",
        "--model",
        model,
        "--data",
        *data,
        "--output",
        a.output,
        "--batch-size",
        str(a.batch_size),
        "--max-new-tokens",
        str(a.max_new_tokens),
        "--device",
        a.device,
    ]
    if a.unconstrained:
        args.append("--unconstrained")
    for flag, value in (("--list-threshold", a.list_threshold), ("--threshold", a.threshold)):
        if value is not None:
            args += [flag, str(value)]
    if a.limit:
        args += ["--limit", str(a.limit)]
    t0 = time.perf_counter()
    rc = evaluate(args)
    wall = time.perf_counter() - t0
    if rc:
        raise SystemExit(rc)
    sets = json.loads((Path(a.output) / "metrics.json").read_text())["sets"]
    n = sum(r["n_sentences"] for r in sets.values())
    gen = sum(r["seconds"] for r in sets.values())
    questions = sum(r["n_records"] for r in sets.values())
    print(
        f"\n{n} sentences, {questions} questions; prediction time {gen:.1f} s "
        f"({n / gen:.3f} sentences/s, {questions / gen:.2f} questions/s); wall time this call {wall:.1f} s"
    )
    for name, r in sets.items():
        print(
            f"{name:22s} official F1 {100 * r['official']['f1']:5.1f}  strict F1 {100 * r['strict']['f1']:5.1f}  "
            f"predicted {r['official']['predicted']:4d} / gold {r['official']['gold']:4d}"
        )
    if a.record:
        write_benchmark(Path(a.record), sets, a)


def write_benchmark(folder: Path, sets: dict, a: argparse.Namespace) -> None:
    """The record's ``"benchmark"`` block: official F1 per set, the average, and how it was measured."""
    rec_path = folder / "universalner.json"
    if not rec_path.is_file():
        raise SystemExit(f"--record {folder}: no universalner.json there (not a student folder)")
    rec = json.loads(rec_path.read_text())
    scores = {name: round(r["official"]["f1"], 6) for name, r in sets.items()}
    n = sum(r["n_sentences"] for r in sets.values())
    how = f"the first {a.limit} sentences of each set" if a.limit else "every sentence of each set"
    rec["benchmark"] = {
        "note": f"`benchmarks/bench_zero_shot.py` on the reference's zero-shot files, {how} ({n} in all), "
        "official metric, this student's own thresholds and CPU path; none of these sets was trained on or "
        "used for any choice.",
        "sets": scores,
        "average": round(sum(scores.values()) / len(scores), 6),
        "sentences": n,
        "limit": a.limit or 0,
    }
    rec_path.write_text(json.dumps(rec, indent=2) + "\n")
    print(f"wrote the benchmark block into {rec_path}")


if __name__ == "__main__":
    cli()
