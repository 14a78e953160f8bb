"""``python -m universalner.tune``: conversation data -> a LoRA / QLoRA / fully tuned student.

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
    p.add_argument("--base-model", required=True, help="hub id, model folder or .gguf file")
    p.add_argument(
        "--data", nargs="+", default=[], metavar="FILE",
        help="conversation JSON files (what `universalner.distill` writes; Pile-NER files work too)",
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
    p.add_argument("--epochs", type=float, default=d.epochs)
    p.add_argument(
        "--max-steps", type=int, default=-1, help="stop after N optimizer steps (overrides --epochs)"
    )
    p.add_argument(
        "--lr", type=float, default=None,
        help=f"learning rate (default {DEFAULT_LR['full']} for full, {DEFAULT_LR['lora']} for lora/qlora)",
    )  # fmt: skip
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per device")
    p.add_argument("--grad-accum", type=int, default=d.grad_accum)
    p.add_argument("--max-length", type=int, default=d.max_length, help="tokens per conversation")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output")
    p.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio)
    p.add_argument("--lora-r", type=int, default=d.lora_r)
    p.add_argument("--lora-alpha", type=int, default=d.lora_alpha)
    p.add_argument("--lora-dropout", type=float, default=d.lora_dropout)
    p.add_argument("--save-steps", type=int, default=d.save_steps, help="checkpoint every N steps")
    p.add_argument("--save-total-limit", type=int, default=d.save_total_limit)
    p.add_argument("--logging-steps", type=int, default=d.logging_steps)
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
    return p


def config_from_args(args: argparse.Namespace) -> TuneConfig:
    return TuneConfig(
        base_model=args.base_model,
        output=args.output,
        data=list(args.data),
        supervised=[(name, str(path)) for name, path in map(parse_supervised_arg, args.supervised)],
        labels_map=args.labels_map,
        method=args.method,
        template=args.template,
        epochs=args.epochs,
        max_steps=args.max_steps,
        lr=args.lr,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        max_length=args.max_length,
        seed=args.seed,
        warmup_ratio=args.warmup_ratio,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        save_steps=args.save_steps,
        save_total_limit=args.save_total_limit,
        logging_steps=args.logging_steps,
        gradient_checkpointing=args.gradient_checkpointing,
        resume=args.resume,
        bf16=args.bf16,
        group_by_length=args.group_by_length,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..quiet import setup

    setup(verbose=args.verbose)  # the run's own progress and the Trainer's loss bar, not other logs
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


if __name__ == "__main__":
    sys.exit(main())
