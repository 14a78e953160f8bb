"""``python -m universalner.distill``: passages -> teacher LLM -> UniNER training conversations.

Rerun the same command after any stop (Ctrl-C, crash, ``kill -9``): answers already received are
kept and not asked again. Exit status 0 when every passage is answered, 3 when some still failed
after all retries (rerun to retry them), 2 on bad input or a teacher that refuses.
"""

from __future__ import annotations

import argparse
import sys

from .passages import CorpusError
from .teacher import TeacherConfig, TeacherError


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m universalner.distill",
        description="Targeted distillation data for UniversalNER from a teacher LLM (OpenAI-compatible API).",
        epilog="The API key comes from OPENAI_API_KEY and is never written. Rerun the same command to resume.",
    )
    io = ap.add_argument_group("passages")
    io.add_argument(
        "--input", nargs="+", required=True, metavar="PATH",
        help=".jsonl/.txt files, .parquet/.csv, a datasets folder (save_to_disk or data files), or a hub data set name",
    )  # fmt: skip
    io.add_argument(
        "--output", required=True, metavar="DIR", help="output folder (created; reused to resume)"
    )
    io.add_argument("--text-field", default="text", help="JSON field / column with the text (default: text)")
    io.add_argument("--split", default="train", help="datasets split (default: train)")
    io.add_argument("--passage-tokens", type=int, default=256, help="max tokens per passage (default: 256)")
    io.add_argument(
        "--tokenizer", metavar="NAME_OR_PATH",
        help="count tokens with this transformers tokenizer (default: words and punctuation marks, no download)",
    )  # fmt: skip
    io.add_argument("--min-tokens", type=int, default=1, help="drop passages shorter than this (default: 1)")
    io.add_argument("--max-passages", type=int, help="sample this many passages (default: all)")
    io.add_argument("--seed", type=int, default=0, help="sampling, negatives and query order (default: 0)")

    t = ap.add_argument_group("teacher")
    t.add_argument(
        "--mode", choices=("type", "definition"), default="type", help="teacher prompt (default: type)"
    )
    t.add_argument("--teacher-model", default="gpt-3.5-turbo", help="model name (default: gpt-3.5-turbo)")
    t.add_argument(
        "--base-url", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (or OPENAI_BASE_URL)"
    )
    t.add_argument("--concurrency", type=int, default=16, help="requests in flight (default: 16)")
    t.add_argument(
        "--max-retries", type=int, default=8, help="retries per passage on 429/5xx/timeouts (default: 8)"
    )
    t.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default: 120)")
    t.add_argument(
        "--backoff", type=float, default=1.0, help="first retry wait in seconds, doubling (default: 1)"
    )
    t.add_argument("--max-tokens", type=int, help="cap on the teacher's answer length (default: none)")
    t.add_argument("--price-in", type=float, help="USD per million prompt tokens (default: price table)")
    t.add_argument("--price-out", type=float, help="USD per million completion tokens (default: price table)")

    b = ap.add_argument_group("training data")
    b.add_argument(
        "--negatives", type=int, default=2, help="absent types per passage, answered [] (default: 2)"
    )
    b.add_argument("--keep-non-english", action="store_true", help="keep mentions in non-Latin scripts")

    ap.add_argument(
        "--dry-run", action="store_true", help="write passages.jsonl, print a cost estimate, ask nothing"
    )
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    return ap


def _config(args: argparse.Namespace):
    from .run import DistillConfig

    teacher = TeacherConfig(
        model=args.teacher_model,
        base_url=args.base_url,
        mode=args.mode,
        concurrency=args.concurrency,
        max_retries=args.max_retries,
        timeout=args.timeout,
        backoff=args.backoff,
        max_tokens=args.max_tokens,
        price_in=args.price_in,
        price_out=args.price_out,
    )
    return DistillConfig(
        inputs=args.input,
        output=args.output,
        text_field=args.text_field,
        split=args.split,
        passage_tokens=args.passage_tokens,
        tokenizer=args.tokenizer,
        min_tokens=args.min_tokens,
        max_passages=args.max_passages,
        seed=args.seed,
        negatives=args.negatives,
        keep_non_english=args.keep_non_english,
        teacher=teacher,
    )


UNKNOWN_PRICE = "unknown: no price for {model!r} (pass --price-in/--price-out)"


def _money(x: float) -> str:
    return f"${x:,.4f}"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from ..quiet import setup
    from .lock import OutputInUse, output_lock
    from .run import distill, estimate, prepare_passages

    setup(libraries=False)

    progress = not args.no_progress
    try:
        cfg = _config(args)
        if args.dry_run:
            with output_lock(cfg.output):
                passages, _ = prepare_passages(cfg, progress)
            e = estimate(cfg, passages)
            print(
                f"{e['passages']} passages -> {cfg.output}/passages.jsonl\n"
                f"prompt tokens (counted with {cfg.tokenizer or 'the word counter'}): {e['prompt_tokens']:,}\n"
                f"completion tokens (assumed {e['completion_tokens_assumed'] // max(1, e['passages'])}/passage): "
                f"{e['completion_tokens_assumed']:,}\n"
                f"estimated cost with {cfg.teacher.model}: "
                + (UNKNOWN_PRICE.format(model=cfg.teacher.model) if e["usd"] is None else _money(e["usd"]))
            )
            return 0
        r = distill(cfg, progress=progress)
    except (CorpusError, TeacherError, OutputInUse, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: answers so far are saved; rerun the same command to resume", file=sys.stderr)
        return 130
    s, t = r.stats, r.teacher
    per_1000 = s["cost"]["usd_per_1000_passages"]
    if t.cost_usd is None:
        cost = "estimated cost " + UNKNOWN_PRICE.format(model=cfg.teacher.model)
    else:
        cost = f"estimated cost {_money(t.cost_usd)}"
        cost += f" ({_money(per_1000)} per 1,000 passages)" if per_1000 is not None else ""
    print(
        f"passages: {r.passages} ({t.already_answered} answered before, {t.answered} now, {t.failed} failed)\n"
        f"train.json: {r.build.conversations} conversations, {r.build.entities} entities, "
        f"{s['types']} types, {r.build.negatives} negatives\n"
        f"dropped: {s['dropped']}\n"
        f"tokens: {t.prompt_tokens:,} prompt + {t.completion_tokens:,} completion; "
        f"{cost}\n"
        f"written to {r.output}/ (train.json, stats.json, type_frequency.png)"
    )
    if not r.complete:
        print(
            f"{r.build.unanswered} passages still unanswered: rerun the same command to retry them",
            file=sys.stderr,
        )
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
