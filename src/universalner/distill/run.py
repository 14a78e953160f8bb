"""The whole distillation: passages -> teacher -> conversations -> statistics, resumable at every step.

Output folder::

    config.json        the settings (never the API key); passage settings are checked on a rerun
    passages.jsonl     the sampled passages, written once
    teacher.jsonl      the teacher's answers, appended as they arrive (the resumable journal)
    train.json         the training conversations (reference format)
    stats.json         counts, drops, tokens, cost, type concentration
    type_frequency.png the type-frequency distribution
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..prompts import teacher_messages
from .build import BuildReport, annotate, conversations, write_json
from .lock import output_lock
from .passages import CorpusError, PassageStats, make_counter, read_passages, sample_passages, write_passages
from .prices import estimate_cost
from .stats import make_stats, plot_types
from .teacher import Journal, TeacherConfig, TeacherReport, passage_key, run_teacher, safe_url

# Completion tokens per passage assumed before a run (dry run only): the paper keeps 5.25 entities
# per passage; at about 10 tokens per ("mention", "type") tuple plus list syntax that is ~60 tokens.
ASSUMED_COMPLETION_TOKENS = 60


@dataclass
class DistillConfig:
    """Everything a run needs; ``teacher.api_key`` stays in memory only."""

    inputs: list[str]
    output: str
    text_field: str = "text"
    split: str = "train"
    passage_tokens: int = 256
    tokenizer: str | None = None
    min_tokens: int = 1
    max_passages: int | None = None
    seed: int = 0
    negatives: int = 2
    keep_non_english: bool = False
    teacher: TeacherConfig = field(default_factory=TeacherConfig)

    def passage_settings(self) -> dict[str, Any]:
        """What decides the passage set; a rerun with different values would not match the journal."""
        inputs = [str(Path(p).resolve()) if Path(p).exists() else p for p in self.inputs]
        return {
            "inputs": inputs,
            "text_field": self.text_field,
            "split": self.split,
            "passage_tokens": self.passage_tokens,
            "tokenizer": self.tokenizer,
            "min_tokens": self.min_tokens,
            "max_passages": self.max_passages,
            "seed": self.seed,
        }


@dataclass
class DistillResult:
    output: Path
    passages: int
    teacher: TeacherReport
    build: BuildReport
    stats: dict[str, Any]
    complete: bool


def _config_record(cfg: DistillConfig) -> dict[str, Any]:
    t = cfg.teacher
    return {
        "passages": cfg.passage_settings(),
        "teacher": {
            "model": t.model,
            "mode": t.mode,
            "base_url": safe_url(t.resolved_base_url()),
            "temperature": t.temperature,
            "max_tokens": t.max_tokens,
        },
        "build": {"negatives": cfg.negatives, "keep_non_english": cfg.keep_non_english, "seed": cfg.seed},
    }


def prepare_passages(cfg: DistillConfig, progress: bool = True) -> tuple[list, PassageStats | None]:
    """``passages.jsonl`` from the corpus, or the existing one when the settings match."""
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    path, conf = out / "passages.jsonl", out / "config.json"
    record = _config_record(cfg)
    if path.exists() and conf.exists():
        try:
            old = json.loads(conf.read_text()).get("passages", {})
        except json.JSONDecodeError as e:
            raise CorpusError(f"{conf}: not valid JSON ({e}); remove it to start over") from None
        diff = sorted(k for k in record["passages"] if old.get(k) != record["passages"][k])
        if diff:
            changes = ", ".join(f"{k}: {old.get(k)!r} -> {record['passages'][k]!r}" for k in diff)
            raise CorpusError(
                f"{out} holds passages made with other settings ({changes}); "
                "use a new --output, or delete passages.jsonl there to re-split"
            )
        conf.write_text(json.dumps(record, indent=1) + "\n")
        return read_passages(path), None
    stats = PassageStats()
    if progress:
        import sys

        print(f"reading and splitting {len(cfg.inputs)} input(s)...", file=sys.stderr, flush=True)
    passages = sample_passages(
        cfg.inputs,
        text_field=cfg.text_field,
        split=cfg.split,
        passage_tokens=cfg.passage_tokens,
        max_passages=cfg.max_passages,
        seed=cfg.seed,
        tokenizer=cfg.tokenizer,
        min_tokens=cfg.min_tokens,
        stats=stats,
    )
    if not passages:
        raise CorpusError(f"no passages in {', '.join(cfg.inputs)} (field {cfg.text_field!r})")
    write_passages(passages, path)
    conf.write_text(json.dumps(record, indent=1) + "\n")
    write_json(asdict(stats), out / "passages.stats.json")
    return passages, stats


def estimate(cfg: DistillConfig, passages: list) -> dict[str, Any]:
    """Prompt tokens counted with the passage tokenizer, completions assumed: a cost estimate before spending."""
    counter = make_counter(cfg.tokenizer)
    prompt = sum(
        sum(counter.count(m["content"]) + 4 for m in teacher_messages(p.text, cfg.teacher.mode)) + 3
        for p in passages
    )
    completion = ASSUMED_COMPLETION_TOKENS * len(passages)
    cost = estimate_cost(cfg.teacher.model, prompt, completion, cfg.teacher.price_in, cfg.teacher.price_out)
    return {
        "passages": len(passages),
        "prompt_tokens": prompt,
        "completion_tokens_assumed": completion,
        "usd": cost,
    }


def build_outputs(cfg: DistillConfig, passages: list, teacher: TeacherReport, pstats: PassageStats | None):
    out = Path(cfg.output)
    records = Journal(out / "teacher.jsonl").load()
    keys = {p.id: passage_key(p, cfg.teacher) for p in passages}
    report = BuildReport()
    anns = annotate(passages, records, keys, cfg.teacher.mode, cfg.keep_non_english, report)
    data = conversations(anns, cfg.negatives, cfg.seed, report)
    write_json(data, out / "train.json")
    if pstats is None and (out / "passages.stats.json").exists():
        pstats = PassageStats(**json.loads((out / "passages.stats.json").read_text()))
    stats = make_stats(pstats, teacher, report, cfg.teacher)
    write_json(stats, out / "stats.json")
    plot_types(report.type_counts, out / "type_frequency.png")
    return report, stats


def distill(cfg: DistillConfig, progress: bool = True) -> DistillResult:
    """Run (or resume) the whole pipeline; safe to call again after any crash."""
    if cfg.passage_tokens < 1:
        raise ValueError(f"--passage-tokens must be >= 1, not {cfg.passage_tokens}")
    if cfg.max_passages is not None and cfg.max_passages < 1:
        raise ValueError(f"--max-passages must be >= 1, not {cfg.max_passages}")
    if cfg.negatives < 0:
        raise ValueError(f"--negatives must be >= 0, not {cfg.negatives}")
    with output_lock(cfg.output):  # one run per folder: two would both pay the teacher
        passages, pstats = prepare_passages(cfg, progress)
        teacher = run_teacher(passages, Path(cfg.output) / "teacher.jsonl", cfg.teacher, progress=progress)
        build, stats = build_outputs(cfg, passages, teacher, pstats)
    return DistillResult(
        Path(cfg.output), len(passages), teacher, build, stats, complete=build.unanswered == 0
    )
