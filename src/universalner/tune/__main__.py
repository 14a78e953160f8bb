"""``python -m universalner.tune``: conversation data -> a LoRA / QLoRA / fully tuned student.

With ``--from STUDENT`` it adapts a LoRA student to the user's own annotations instead (``adapt.py``,
docs/adapt.md): ``--data`` then names annotated files (.spacy, .jsonl with spans, CoNLL/BIO).

Runs unchanged under ``accelerate launch -m universalner.tune ...`` (see docs/tune.md).
"""

from __future__ import annotations

import argparse
import os
import sys

from ..weights.errors import ModelNotFoundError
from .data import DataError, parse_supervised_arg
from .train import DEFAULT_LR, METHODS, TuneConfig


def build_parser() -> argparse.ArgumentParser:
    d = TuneConfig("", "")
    p = argparse.ArgumentParser(
        prog="python -m universalner.tune",
        description="Conversation-style instruction tuning of a UniversalNER student "
        "(loss on the answers only; resumable).",
    )
    p.add_argument("--base-model", help="hub id, model folder or .gguf file (or --from)")
    p.add_argument(
        "--from", dest="student", metavar="STUDENT",
        help="adapt a LoRA student (universalner-135m, or a folder tune wrote) to --data, your annotations",
    )  # fmt: skip
    p.add_argument(
        "--data", nargs="+", default=[], metavar="FILE",
        help="conversation JSON files (what `universalner.distill` writes; Pile-NER files work too); "
        "with --from: annotated files (.spacy DocBin, .jsonl with character spans, CoNLL/BIO)",
    )  # fmt: skip
    p.add_argument("--output", required=True, help="folder for checkpoints and the trained student")
    p.add_argument(
        "--supervised", action="append", default=[], metavar="NAME=PATH",
        help="a BIO/CoNLL file asked in the dataset-specific form 'Dataset: NAME'; repeatable",
    )  # fmt: skip
    p.add_argument("--labels-map", help="JSON file overriding the built-in tag -> type maps of --supervised")
    p.add_argument("--method", choices=METHODS, default=d.method)
    p.add_argument("--template", choices=("auto", "uniner", "chat"), default=d.template,
                   help="conversation layout (auto: chat if the base has a chat template)")  # fmt: skip
    p.add_argument("--epochs", type=float, default=None, help=f"default {d.epochs} (--from: 2)")
    p.add_argument(
        "--max-steps", type=int, default=-1, help="stop after N optimizer steps (overrides --epochs)"
    )
    p.add_argument(
        "--lr", type=float, default=None,
        help=f"learning rate (default {DEFAULT_LR['full']} for full, {DEFAULT_LR['lora']} for lora/qlora, 5e-4 with --from)",
    )  # fmt: skip
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per device")
    p.add_argument("--grad-accum", type=int, default=d.grad_accum)
    p.add_argument(
        "--max-length", type=int, default=None,
        help=f"tokens per conversation (default {d.max_length}; --from: the student's)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output")
    p.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio)
    p.add_argument("--lora-r", type=int, default=d.lora_r)
    p.add_argument("--lora-alpha", type=int, default=d.lora_alpha)
    p.add_argument("--lora-dropout", type=float, default=d.lora_dropout)
    p.add_argument(
        "--save-steps",
        type=int,
        default=None,
        help=f"checkpoint every N steps (default {d.save_steps}; --from: 50)",
    )
    p.add_argument("--save-total-limit", type=int, default=d.save_total_limit)
    p.add_argument("--logging-steps", type=int, default=None, help=f"default {d.logging_steps} (--from: 5)")
    p.add_argument("--gradient-checkpointing", action="store_true", help="less memory, about 30%% slower")
    p.add_argument(
        "--bf16", choices=("auto", "on", "off"), default=d.bf16,
        help="bf16 autocast (auto: GPUs that support it, CPUs with AVX512-BF16 or AMX; not QLoRA on a CPU)",
    )  # fmt: skip
    p.add_argument(
        "--no-group-by-length", dest="group_by_length", action="store_false",
        help="plain random batches (default: batches of similar lengths, less padding)",
    )  # fmt: skip
    p.add_argument(
        "--verbose", action="store_true", help="also show other libraries' logs, progress bars and warnings"
    )
    a = p.add_argument_group("adapting a student (--from)")
    a.add_argument(
        "--labels", metavar="SPEC",
        help="the label set: 'chemical,disease', a map 'CHEM=chemical,DIS=disease,MISC=null', or a JSON "
        "map file (default: every label of the data, asked as written)",
    )  # fmt: skip
    a.add_argument("--adapter", choices=("continue", "stack"), default="continue",
                   help="train the student's own adapter on (default), or a new one on top of it")  # fmt: skip
    a.add_argument(
        "--replay", metavar="FILE",
        help="the student's own training conversations to mix in: conversation JSON (Pile-NER-type.json, "
        "distill's train.json) or a Pile-NER BIO file; 'none' for no replay (the default without a file)",
    )  # fmt: skip
    a.add_argument(
        "--replay-ratio", type=float, default=1.0, help="replay conversations per training sentence"
    )
    a.add_argument(
        "--dev", metavar="FILE", help="annotated dev file for the thresholds (default: a share of --data)"
    )
    a.add_argument(
        "--dev-share", type=float, default=0.2,
        help="share of --data held out to choose the thresholds (none under 5 sentences)",
    )  # fmt: skip
    a.add_argument("--spans-key", help="read doc.spans[KEY] of a .spacy file instead of doc.ents")
    a.add_argument("--list-thresholds", type=_floats, default=None,
                   help="list thresholds tried on the dev share (default 0.3,0.4,0.5)")  # fmt: skip
    a.add_argument("--continue-thresholds", type=_floats, default=None,
                   help="continue thresholds tried on the dev share (default 0.5: plain greedy; lower: longer lists)")  # fmt: skip
    return p


def _floats(value: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"want comma-separated numbers, not {value!r}") from None


def _or(value, default):
    return default if value is None else value


def config_from_args(args: argparse.Namespace) -> TuneConfig:
    d = TuneConfig("", "")
    if not args.base_model:
        raise ValueError("give --base-model (a model to tune) or --from (a student to adapt)")
    return TuneConfig(
        base_model=args.base_model,
        output=args.output,
        data=list(args.data),
        supervised=[(name, str(path)) for name, path in map(parse_supervised_arg, args.supervised)],
        labels_map=args.labels_map,
        method=args.method,
        template=args.template,
        epochs=_or(args.epochs, d.epochs),
        max_steps=args.max_steps,
        lr=args.lr,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        max_length=_or(args.max_length, d.max_length),
        seed=args.seed,
        warmup_ratio=args.warmup_ratio,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        save_steps=_or(args.save_steps, d.save_steps),
        save_total_limit=args.save_total_limit,
        logging_steps=_or(args.logging_steps, d.logging_steps),
        gradient_checkpointing=args.gradient_checkpointing,
        resume=args.resume,
        bf16=args.bf16,
        group_by_length=args.group_by_length,
    )


def adapt_config_from_args(args: argparse.Namespace):
    from .adapt import AdaptConfig

    if args.base_model or args.supervised or args.labels_map or args.method != "lora":
        raise ValueError(
            "--from adapts a LoRA student: leave out --base-model, --supervised, --labels-map, --method"
        )
    a = AdaptConfig(args.student, list(args.data), args.output)
    return AdaptConfig(
        student=args.student,
        data=list(args.data),
        output=args.output,
        labels=args.labels,
        adapter=args.adapter,
        replay=args.replay,
        replay_ratio=args.replay_ratio,
        dev=args.dev,
        dev_share=args.dev_share,
        spans_key=args.spans_key,
        list_thresholds=_or(args.list_thresholds, a.list_thresholds),
        continue_thresholds=_or(args.continue_thresholds, a.continue_thresholds),
        epochs=_or(args.epochs, a.epochs),
        max_steps=args.max_steps,
        lr=_or(args.lr, a.lr),
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        max_length=args.max_length,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        seed=args.seed,
        save_steps=_or(args.save_steps, a.save_steps),
        logging_steps=_or(args.logging_steps, a.logging_steps),
        resume=args.resume,
        bf16=args.bf16,
        tune_extra={"warmup_ratio": args.warmup_ratio, "save_total_limit": args.save_total_limit,
                    "group_by_length": args.group_by_length,
                    "gradient_checkpointing": args.gradient_checkpointing},
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.base_model and not args.student:
        parser.error("the following arguments are required: --base-model (or --from, to adapt a student)")
    from ..quiet import setup

    setup(verbose=args.verbose)  # the run's own progress and the Trainer's loss bar, not other logs
    if args.student:
        return adapt_main(args)
    try:
        cfg = config_from_args(args)
        from .train import run

        result = run(cfg)
    except (DataError, ModelNotFoundError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") != "0":  # one line from a multi-process run
        return 0
    print(
        f"trained {result.global_step} steps"
        + (f" (resumed at step {result.resumed_from})" if result.resumed_from is not None else "")
        + f"; student in {result.output}"
    )
    return 0


def adapt_main(args: argparse.Namespace) -> int:
    try:
        cfg = adapt_config_from_args(args)
        from .adapt import adapt

        result = adapt(cfg)
    except (DataError, ModelNotFoundError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") != "0":
        return 0
    print(
        f"adapted in {result.steps} steps ({result.train_seconds / 60:.1f} min: load, train, save) on "
        f"{result.train_sentences} sentences + {result.replay_conversations} replay conversations; "
        f"labels {result.labels}; student in {result.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
