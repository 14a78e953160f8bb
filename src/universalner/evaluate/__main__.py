"""python -m universalner.evaluate {run,score,convert}: the benchmark, from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..corpora import DataFormatError

USAGE = """examples:
  python -m universalner.evaluate run --model M --data CrossNER_AI=crossner/ai/test.txt --output runs/
  python -m universalner.evaluate score --gold gold.json --predictions outputs.jsonl
  python -m universalner.evaluate convert --input crossner/ai/test.txt --name CrossNER_AI --output ai.json
"""


def _data_arg(value: str) -> tuple[str, str]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {value!r}")
    return name, path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m universalner.evaluate",
        description="Benchmark UniversalNER students: the official UniNER metric and strict span F1.",
        epilog=USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--verbose", action="store_true", help="also show other libraries' logs, progress bars and warnings"
    )
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser(
        "run", parents=[common], help="run a model on data sets, store its answers, score them"
    )
    r.add_argument("--model", required=True, help="hub id, model folder, .gguf file or shipped student name")
    r.add_argument(
        "--data",
        required=True,
        nargs="+",
        type=_data_arg,
        metavar="NAME=PATH",
        help="CoNLL/BIO file or reference JSON; NAME picks the label map (e.g. CrossNER_AI)",
    )
    r.add_argument("--output", required=True, help="folder for answers, metrics.json and report.md")
    r.add_argument("--labels-map", help="JSON {tag: label|null} or {NAME: {tag: label|null}}")
    r.add_argument("--limit", type=int, help="only the first N sentences of each set")
    r.add_argument("--batch-size", type=int, default=8)
    r.add_argument("--quantization", choices=["4bit", "8bit"])
    r.add_argument("--device", default="auto")
    r.add_argument("--adapter", help="a LoRA adapter folder")
    r.add_argument("--template", default="auto", choices=["auto", "uniner", "chat"])
    r.add_argument("--engine", default="transformers")
    r.add_argument("--max-new-tokens", type=int, default=256, help="answer length limit (the reference: 256)")
    r.add_argument(
        "--unconstrained",
        action="store_true",
        help="let the model write anything, as the reference does (default: constrained to JSON lists)",
    )
    r.add_argument(
        "--dataset-prompt",
        action="store_true",
        help="ask 'Dataset: NAME \\n Text: ...' (supervised -type-sup/-all students)",
    )
    r.add_argument("--tag-column", default="auto", choices=["auto", "first", "last"])
    r.add_argument("--no-progress", action="store_true")
    r.add_argument(
        "--list-threshold", type=float,
        help="lower opens non-empty lists more readily; exact rule in docs/inference.md "
        "(default: the student's, else 0.5)",
    )  # fmt: skip
    r.add_argument(
        "--continue-threshold", type=float,
        help="lower goes on to another mention more readily instead of closing the list; exact rule in "
        "docs/inference.md (default: the student's, else 0.5)",
    )  # fmt: skip
    r.add_argument(
        "--threshold", type=float,
        help="score only mentions with at least this confidence (default: the student's own, else 0 = raw answers)",
    )  # fmt: skip

    w = sub.add_parser(
        "sweep",
        parents=[common],
        help="official F1 of a finished run at several thresholds (choose one on dev)",
    )
    w.add_argument("--output", required=True, help="the folder of a finished `run`")
    w.add_argument("--data", required=True, nargs="+", type=_data_arg, metavar="NAME=PATH")
    w.add_argument("--labels-map")
    w.add_argument("--limit", type=int, help="the --limit the run used")
    w.add_argument("--tag-column", default="auto", choices=["auto", "first", "last"])
    w.add_argument(
        "--thresholds", default="0,0.05,0.1,0.15,0.2,0.25,0.3,0.35,0.4,0.45,0.5,0.6,0.7,0.8,0.9",
        help="comma-separated thresholds to try",
    )  # fmt: skip

    s = sub.add_parser(
        "score", parents=[common], help="official metric of stored answers against reference-format gold"
    )
    s.add_argument("--gold", required=True, help="reference-format JSON (e.g. from `convert` or `run`)")
    s.add_argument("--predictions", required=True, help='JSON lines {"id": ..., "output": raw answer}')
    s.add_argument("--allow-missing", action="store_true", help="score records without an answer as []")

    c = sub.add_parser(
        "convert", parents=[common], help="BIO file -> the reference's JSON, every type asked per sentence"
    )
    c.add_argument("--input", required=True)
    c.add_argument("--name", required=True, help="data set name (picks the label map; ids NAME_k)")
    c.add_argument("--output", required=True)
    c.add_argument("--labels-map")
    c.add_argument("--tag-column", default="auto", choices=["auto", "first", "last"])
    c.add_argument(
        "--conversation",
        action="store_true",
        help="one multi-turn training conversation per sentence instead of one record per type",
    )
    c.add_argument("--dataset-specific", action="store_true", help="first turn 'Dataset: NAME \\n Text: ...'")
    c.add_argument("--seed", type=int, default=0, help="question order shuffle for --conversation")
    return p


def _load(name: str, path: str, labels_map: str | None, tag_column: str):
    from ..corpora.labels import read_label_maps
    from .dataset import load_eval_set

    override = read_label_maps(labels_map) if labels_map else None
    return load_eval_set(path, name, override, tag_column)


def cmd_run(a: argparse.Namespace) -> int:
    from ..model import ModelSpec
    from .runner import run_benchmark

    if a.limit is not None and a.limit < 1:
        raise ValueError("--limit must be at least 1")
    if Path(a.output).exists() and not Path(a.output).is_dir():
        raise ValueError(f"--output {a.output} is a file; give a folder (it is created if missing)")
    names = [n for n, _ in a.data]
    if len(set(names)) != len(names):
        raise ValueError(f"--data names must be distinct: {names}")
    sets = [_load(n, p, a.labels_map, a.tag_column).head(a.limit) for n, p in a.data]
    spec = ModelSpec(
        a.model,
        a.quantization,
        a.device,
        a.adapter,
        a.template,
        a.engine,
        {"max_new_tokens": a.max_new_tokens, "constrained": not a.unconstrained}
        | ({"list_threshold": a.list_threshold} if a.list_threshold is not None else {})
        | ({"continue_threshold": a.continue_threshold} if a.continue_threshold is not None else {}),
    )
    if a.threshold is not None and not 0 <= a.threshold <= 1:
        raise ValueError(f"--threshold must be between 0 and 1, not {a.threshold}")
    run_benchmark(sets, spec, a.output, a.batch_size, a.dataset_prompt, not a.no_progress, a.threshold)
    print((Path(a.output) / "report.md").read_text(encoding="utf-8"))
    return 0


def cmd_sweep(a: argparse.Namespace) -> int:
    from .runner import sweep_thresholds

    try:
        thresholds = [float(x) for x in a.thresholds.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--thresholds must be comma-separated numbers, not {a.thresholds!r}") from None
    sets = [_load(n, p, a.labels_map, a.tag_column).head(a.limit) for n, p in a.data]
    res = sweep_thresholds(sets, a.output, thresholds)
    print("| threshold | P | R | F1 |")
    print("|---:|---:|---:|---:|")
    for r in res["rows"]:
        print(
            f"| {r['threshold']:g} | {100 * r['precision']:.1f} | {100 * r['recall']:.1f} | {100 * r['f1']:.1f} |"
        )
    print(json.dumps({"best": res["best"]}))
    return 0


def cmd_score(a: argparse.Namespace) -> int:
    from .scoring import score_files

    scores, n = score_files(a.gold, a.predictions, a.allow_missing)
    print("| type | P | R | F1 | gold | predicted | correct |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, sc in scores.per_type.items():
        print(
            f"| {label} | {100 * sc.precision:.1f} | {100 * sc.recall:.1f} | {100 * sc.f1:.1f} "
            f"| {sc.gold} | {sc.predicted} | {sc.correct} |"
        )
    m = scores.micro
    print(
        json.dumps(
            {
                "precision": m.precision,
                "recall": m.recall,
                "f1": m.f1,
                "n_records": n,
                "correct": m.correct,
                "predicted": m.predicted,
                "gold": m.gold,
            }
        )
    )
    return 0


def cmd_convert(a: argparse.Namespace) -> int:
    from ..corpora.conversations import records_to_reference, sentences_to_conversations

    out = Path(a.output)
    if out.is_dir():
        raise ValueError(f"--output {out} is a folder; give the path of the JSON file to write")
    if any(p.exists() and not p.is_dir() for p in out.parents):
        raise ValueError(f"--output {out}: a part of that path is a file, not a folder")
    ds = _load(a.name, a.input, a.labels_map, a.tag_column)
    if a.conversation:
        data = sentences_to_conversations(
            ds.sentences, a.name, {x: x for x in ds.labels}, a.dataset_specific, a.seed
        )
    else:
        data = records_to_reference(ds.records, ds.sentences, a.name if a.dataset_specific else None)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")  # a reader never sees half a file, a crash leaves none
    tmp.write_text(json.dumps(data, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(out)
    n_ents = sum(len(s.entities) for s in ds.sentences)
    print(
        f"{out}: {len(data)} records from {len(ds.sentences)} sentences, {n_ents} mentions; "
        f"types asked: {', '.join(ds.labels)}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..quiet import setup

    setup(verbose=args.verbose)
    try:
        commands = {"run": cmd_run, "sweep": cmd_sweep, "score": cmd_score, "convert": cmd_convert}
        return commands[args.command](args)
    except Exception as e:
        # bad input and the library's own errors (an unreachable server, a model not found) are
        # reported in one line; anything else is a bug and keeps its traceback
        ours = type(e).__module__.startswith("universalner")
        if not (ours or isinstance(e, (DataFormatError, FileNotFoundError, ValueError))):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
