"""``python -m universalner.tune --from STUDENT --data FILE ... --output DIR``: teach a student your own types.

From a LoRA student (the shipped ``universalner-135m`` or any adapter ``tune`` wrote) and a few hundred
annotated sentences (spaCy DocBin, JSON lines with character spans, CoNLL/BIO: ``corpora.annotated``)
to an adapted student that loads like any other:

1. the annotations are read and checked (every bad span, overlap, unknown label or empty file stops
   here, before anything is written), labels mapped to the names the student is asked (``--labels``);
2. a dev share is held out (``--dev-share``, or ``--dev FILE``) to choose the thresholds;
3. every training sentence becomes one conversation asking **every** label of the set (most answers
   ``[]``: the negatives), in the plain ``Text: ...`` form inference uses;
4. replay: as many of the student's own training conversations as ``--replay-ratio`` says are mixed in
   (``--replay FILE``: conversation JSON, or a Pile-NER BIO file converted with the shipped student's
   own settings), so that it keeps its zero-shot skill;
5. the student's adapter trains on (``--adapter continue``) or is merged into the base and a new one
   trained on top (``--adapter stack``; the two are folded into one adapter of their summed rank at the
   end, so the output is one plain LoRA adapter either way);
6. the list and score thresholds are chosen on the dev share with ``evaluate``'s own run and sweep,
   and written with the labels into the student's record (``universalner.json``).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..corpora.conll import DataFormatError, Sentence
from ..weights.record import read_template_record, write_template_record
from .data import DataError, Example, read_conversations

ADAPTERS = ("continue", "stack")
MIN_DEV = 5  # fewer dev sentences than this choose nothing: the student's thresholds are kept
ADAPT_DIR = "adapt"  # inside the output: the training conversations, the dev share, dev runs
# how the shipped student's own conversations were made from Pile-NER (recipes/universalner_135m.py)
REPLAY_CONVERT = {"negatives": 6, "max_words": 64, "natural": 0.5, "seed": 0}
LIST_THRESHOLDS = (0.3, 0.4, 0.5)
CONTINUE_THRESHOLDS = (0.5,)  # 0.5: plain greedy; lower values write more mentions a list (docs/inference.md)
SCORE_THRESHOLDS = tuple(round(0.1 * k, 1) for k in range(10))


@dataclass
class AdaptConfig:
    """Everything an adaptation depends on."""

    student: str
    data: list[str]
    output: str
    labels: str | None = None
    adapter: str = "continue"
    replay: str | None = None  # conversation JSON or Pile-NER BIO; None or "none": no replay
    replay_ratio: float = 1.0  # replay conversations per training sentence
    dev: str | None = None
    dev_share: float = 0.2
    spans_key: str | None = None
    list_thresholds: tuple[float, ...] = LIST_THRESHOLDS
    continue_thresholds: tuple[float, ...] = CONTINUE_THRESHOLDS
    epochs: float = 2.0
    max_steps: int = -1
    # chosen on the dev share of benchmarks/bench_adapt.py's BC5CDR 200-sentence run (docs/adapt.md):
    # 62.9 strict F1 against 58.0 at tune's LoRA default 2e-4 and 55.3 at 1e-3, at equal steps
    lr: float = 5e-4
    batch_size: int = 4
    grad_accum: int = 4
    max_length: int | None = None  # None: the student's own
    lora_r: int = 16  # --adapter stack only: the new adapter's rank
    lora_alpha: int = 32
    seed: int = 0
    save_steps: int = 50
    logging_steps: int = 5
    resume: bool = False
    bf16: str = "auto"
    tune_extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        if self.adapter not in ADAPTERS:
            raise ValueError(f"--adapter must be one of {ADAPTERS}, not {self.adapter!r}")
        if not self.data:
            raise ValueError("--from needs --data: your annotated files (.spacy, .jsonl, CoNLL/BIO)")
        if not 0 <= self.dev_share < 1:
            raise ValueError(f"--dev-share must be in [0, 1), not {self.dev_share}")
        if self.replay_ratio < 0:
            raise ValueError(f"--replay-ratio must be 0 or more, not {self.replay_ratio}")
        for kind, values in (("list", self.list_thresholds), ("continue", self.continue_thresholds)):
            if not values:
                raise ValueError(f"--{kind}-thresholds needs at least one value")
            for t in values:
                if not 0 < t < 1:
                    raise ValueError(f"{kind} thresholds must be between 0 and 1 (exclusive), not {t}")


@dataclass
class AdaptResult:
    output: Path
    train_sentences: int
    dev_sentences: int
    replay_conversations: int
    labels: list[str]
    steps: int
    train_seconds: float
    thresholds: dict[str, Any]


def say(msg: str) -> None:
    from .train import say as tune_say

    tune_say(msg)


# --- the student and its base --------------------------------------------------------------------
def student_and_base(student: str) -> tuple[Path, str, dict[str, Any]]:
    """(the student's adapter folder, its base as ``tune --base-model`` takes it, its record)."""
    from ..weights.resolve import resolve

    where = resolve(student)
    if where.kind != "adapter":
        raise ValueError(
            f"--from {student}: not a LoRA student (no adapter_config.json); give a student folder or "
            "'universalner-135m', or tune a plain model with --base-model"
        )
    loc = Path(where.path)
    record = read_template_record(loc)
    base = str(where.base().path)  # the one rule: a shipped (or shipped-based) student's checked GGUF
    return loc, base, record


# --- the data ------------------------------------------------------------------------------------
def read_user_data(
    files: list[str], labels: str | None, spans_key: str | None = None, label_map: dict | None = None
) -> tuple[list[Sentence], list[str], dict | None]:
    """(sentences with asked names, the label set, the label map) of every file; DataError on any problem.

    ``label_map`` (a map already read): used instead of ``labels``."""
    from ..corpora.annotated import label_map_from, read_annotated, relabel

    try:
        if label_map is None:
            label_map = label_map_from(labels)
        sentences: list[Sentence] = []
        for f in files:
            sentences.extend(read_annotated(f, spans_key=spans_key))
        sentences, asked = relabel(sentences, label_map)
    except (DataFormatError, FileNotFoundError) as e:
        raise DataError(str(e)) from None
    return sentences, asked, label_map


def split_dev(sentences: list[Sentence], share: float, seed: int) -> tuple[list[Sentence], list[Sentence]]:
    """(train, dev): a seeded ``share`` of the sentences held out, none when that is under ``MIN_DEV``."""
    n_dev = int(len(sentences) * share)
    if n_dev < MIN_DEV or len(sentences) - n_dev < 1:
        return list(sentences), []
    order = list(range(len(sentences)))
    random.Random(f"{seed}:adapt-dev").shuffle(order)
    dev = set(order[:n_dev])
    return [s for i, s in enumerate(sentences) if i not in dev], [
        s for i, s in enumerate(sentences) if i in dev
    ]


def user_conversations(sentences: list[Sentence], labels: list[str]) -> list[dict]:
    """One conversation per sentence asking every label (the plain ``Text:`` form inference asks)."""
    from ..corpora.conversations import sentences_to_conversations

    convs = sentences_to_conversations(
        sentences, "user", {x: x for x in labels}, dataset_specific=False, seed=None
    )
    for i, c in enumerate(convs):
        c["id"] = f"user_{i}"
    return convs


def replay_examples(replay: str | None, work: Path, count: int, seed: int) -> tuple[list[dict], str]:
    """(``count`` conversations of the replay source, what they came from)."""
    if replay is None or str(replay).lower() == "none" or count <= 0:
        return [], "none"
    path = Path(os.path.expanduser(replay))
    if not path.is_file():
        raise DataError(f"--replay {replay}: file not found")
    if path.suffix.lower() in (".json", ".jsonl"):
        examples = read_conversations(path)
        what = f"{path.resolve()} (conversation JSON)"
    else:  # a Pile-NER BIO file: the student's own training conversations, made as they were made
        from ..distill.convert import ConvertConfig, convert

        labels = path.parent / "label.txt"
        tmp = work / f"replay-convert.tmp{os.getpid()}"
        try:
            convert(
                ConvertConfig(
                    str(path), str(tmp), str(labels) if labels.is_file() else None, **REPLAY_CONVERT
                )
            )
            examples = read_conversations(tmp / "train.json")
        except (DataFormatError, ValueError) as e:
            raise DataError(f"--replay {replay}: {e}") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        settings = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in REPLAY_CONVERT.items())
        what = f"{path.resolve()} (BIO, converted as the shipped student's data: {settings})"
    rng = random.Random(f"{seed}:replay")
    picked = rng.sample(examples, min(count, len(examples)))
    return [_as_record(ex) for ex in picked], what


def _as_record(ex: Example) -> dict:
    from ..corpora.conversations import conversation_turns

    conv = ex.conversation
    return {
        "id": f"replay_{ex.id}",
        "conversations": conversation_turns(
            conv.text, list(zip(conv.questions, conv.answers, strict=True)), conv.dataset
        ),
    }


def _write_if_changed(path: Path, text: str) -> None:
    """Write unless the file already holds ``text`` (a resumed run keeps its tokenised cache)."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


# --- stacking ------------------------------------------------------------------------------------
def stack_adapters(parent: Path, child: Path) -> None:
    """Rewrite the adapter in ``child`` as the sum of ``parent``'s and its own, as one plain LoRA.

    ``W + s1 B1 A1 + s2 B2 A2 == W + [s1 B1, s2 B2] @ [A1; A2]``: rank r1 + r2, alpha = rank (scale 1).
    """
    import torch
    from safetensors.torch import save_file

    from ..weights.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, plain_factors

    got = [plain_factors(parent), plain_factors(child)]
    if None in got:
        raise ValueError(f"--adapter stack needs plain LoRA adapters ({parent} and {child})")
    (s1, r1, f1), (s2, r2, f2) = got
    rank = r1 + r2
    tensors = {}
    for name in sorted(f1.keys() | f2.keys()):
        some = f1.get(name) or f2[name]
        n_in, n_out = some["A"].shape[1], some["B"].shape[0]
        a1, b1 = (
            (f1[name]["A"], f1[name]["B"]) if name in f1 else (torch.zeros(r1, n_in), torch.zeros(n_out, r1))
        )
        a2, b2 = (
            (f2[name]["A"], f2[name]["B"]) if name in f2 else (torch.zeros(r2, n_in), torch.zeros(n_out, r2))
        )
        a = torch.cat([a1.float(), a2.float()], 0)
        b = torch.cat([b1.float() * s1, b2.float() * s2], 1)
        tensors[f"base_model.model.{name}.lora_A.weight"] = a.contiguous()
        tensors[f"base_model.model.{name}.lora_B.weight"] = b.contiguous()
    config = json.loads((child / ADAPTER_CONFIG).read_text())
    config["r"], config["lora_alpha"] = rank, rank
    config["target_modules"] = sorted({name.rsplit(".", 1)[-1] for name in f1.keys() | f2.keys()})
    tmp_w, tmp_c = child / (ADAPTER_WEIGHTS + ".tmp"), child / (ADAPTER_CONFIG + ".tmp")
    save_file(tensors, str(tmp_w), metadata={"format": "pt"})
    tmp_c.write_text(json.dumps(config, indent=2))
    tmp_w.replace(child / ADAPTER_WEIGHTS)
    tmp_c.replace(child / ADAPTER_CONFIG)


# --- thresholds ----------------------------------------------------------------------------------
def dev_set(sentences: list[Sentence], labels: list[str], path: Path):
    from ..corpora.conversations import eval_records
    from ..evaluate.dataset import EvalSet

    return EvalSet(
        "dev", path, sentences, list(labels), eval_records(sentences, labels, "dev"), {x: x for x in labels}
    )


def choose_thresholds(
    output: Path,
    dev: list[Sentence],
    labels: list[str],
    list_thresholds: tuple[float, ...],
    continue_thresholds: tuple[float, ...] = CONTINUE_THRESHOLDS,
) -> dict[str, Any]:
    """The list, continue and score thresholds with the best strict span F1 on the dev share.

    ``evaluate``'s own machinery: one ``run`` per (list, continue) threshold pair (answers stored with
    every mention's score), then every score threshold scored from the stored answers without the model.
    """
    from ..evaluate.runner import ModelSpec, read_predictions, run_benchmark, score_set

    ds = dev_set(dev, labels, output / ADAPT_DIR / "dev.jsonl")
    # answers of an earlier student in this folder (a resumed run trained on) must not be reused
    shutil.rmtree(output / ADAPT_DIR / "dev-runs", ignore_errors=True)
    trials = []
    for lt in list_thresholds:
        for ct in continue_thresholds:
            folder = output / ADAPT_DIR / "dev-runs" / (f"lt{lt}" if ct == 0.5 else f"lt{lt}-ct{ct}")
            options = {"list_threshold": lt, "continue_threshold": ct}
            run_benchmark([ds], ModelSpec(str(output.resolve()), options=options), folder, progress=False,
                          threshold=0.0)  # fmt: skip
            done = read_predictions(folder / ds.name / "predictions.jsonl")
            for t in SCORE_THRESHOLDS:
                res = score_set(ds, done, t)
                trials.append(
                    {
                        "list_threshold": lt,
                        "continue_threshold": ct,
                        "threshold": t,
                        **{f"strict_{k}": round(res["strict"][k], 4) for k in ("precision", "recall", "f1")},
                        "official_f1": round(res["official"]["f1"], 4),
                    }
                )
    # ties: the higher thresholds (fewer, surer mentions), then plain greedy's continue threshold
    best = max(
        trials,
        key=lambda t: (
            t["strict_f1"],
            t["threshold"],
            t["list_threshold"],
            -abs(t["continue_threshold"] - 0.5),
        ),
    )
    return {**best, "sentences": len(dev), "trials": trials}


# --- the run -------------------------------------------------------------------------------------
def adapt(cfg: AdaptConfig) -> AdaptResult:
    """Adapt ``cfg.student`` to the annotations in ``cfg.data``; see the module docstring."""
    from .train import CONFIG_FILE, TuneConfig, run

    cfg.check()
    out = Path(cfg.output)
    parent, base, parent_record = student_and_base(cfg.student)
    sentences, labels, label_map = read_user_data(cfg.data, cfg.labels, cfg.spans_key)
    if cfg.dev:
        # the training set's labels: a dev label outside them stops with the dev file's line
        known = label_map if label_map is not None else {x: x for x in labels}
        dev, _, _ = read_user_data([cfg.dev], None, cfg.spans_key, known)
        train = sentences
    else:
        train, dev = split_dev(sentences, cfg.dev_share, cfg.seed)
    if not cfg.resume and out.is_dir() and ((out / CONFIG_FILE).is_file() or any(out.glob("checkpoint-*"))):
        raise ValueError(
            f"--output {out} already holds a training run; pass --resume to continue it or choose a new folder"
        )
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output {out} is a file; give a folder")
    created = not out.exists()
    work = out / ADAPT_DIR
    try:
        work.mkdir(parents=True, exist_ok=True)
        replay, replay_from = replay_examples(
            cfg.replay, work, round(cfg.replay_ratio * len(train)), cfg.seed
        )
        if not replay:
            say(
                "no replay (--replay not given): training on your sentences only; the student may lose some of "
                "its zero-shot skill on other types (docs/adapt.md). Give --replay with Pile-NER-type.json "
                "or the student's own training conversations to keep it"
                if cfg.replay is None
                else "no replay (--replay none)"
            )
        convs = user_conversations(train, labels) + replay
        _write_if_changed(work / "train.json", json.dumps(convs, ensure_ascii=False) + "\n")
        _write_if_changed(
            work / "dev.jsonl",
            "".join(
                json.dumps({"text": s.text, "spans": [{"start": e.start, "end": e.end, "label": e.label} for e in s.entities]},
                           ensure_ascii=False) + "\n"
                for s in dev
            ),
        )  # fmt: skip
        say(
            f"{len(train)} training sentences x {len(labels)} labels {labels}, {len(dev)} dev sentences, "
            f"{len(replay)} replay conversations; adapter: {cfg.adapter}"
        )
        tcfg = TuneConfig(
            base_model=base,
            output=str(out),
            data=[str(work / "train.json")],
            method="lora",
            template=parent_record.get("template") or "auto",
            epochs=cfg.epochs,
            max_steps=cfg.max_steps,
            lr=cfg.lr,
            batch_size=cfg.batch_size,
            grad_accum=cfg.grad_accum,
            max_length=cfg.max_length or int(parent_record.get("max_length") or 512),
            seed=cfg.seed,
            lora_r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            save_steps=cfg.save_steps,
            logging_steps=cfg.logging_steps,
            resume=cfg.resume,
            bf16=cfg.bf16,
            init_adapter=str(parent),
            stack=cfg.adapter == "stack",
            **cfg.tune_extra,
        )
        t0 = time.time()
        result = run(tcfg)
        seconds = time.time() - t0
    except BaseException:
        if created and not any(out.glob("checkpoint-*")):  # nothing worth resuming: leave nothing behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    if cfg.adapter == "stack":
        stack_adapters(parent, out)
    record = {
        k: v
        for k, v in parent_record.items()
        if k
        in (
            "template",
            "eos",
            "max_length",
            "base",
            "cpu",
            "threshold",
            "list_threshold",
            "continue_threshold",
        )
    }
    if "cpu" in record:
        record["cpu"] = {
            **record["cpu"],
            "measured": f"inherited from {parent.name}: " + str(record["cpu"].get("measured", "")),
        }
    from .. import __version__

    record.update(
        method="lora",
        datasets=[],
        labels=labels,
        trained_with=f"universalner.tune --from {__version__}",
        adapted={
            "from": parent.name if parent.parent.name == "students" else str(parent),
            "data": [str(Path(f).resolve()) for f in cfg.data],
            "label_map": label_map,
            "adapter": cfg.adapter,
            "train_sentences": len(train),
            "dev_sentences": len(dev),
            "replay": replay_from,
            "replay_conversations": len(replay),
            "steps": result.global_step,
            "tune_seconds": round(seconds, 1),
            "settings": {k: v for k, v in asdict(cfg).items() if k not in ("tune_extra",)},
        },
    )
    write_template_record(out, **record)
    thresholds: dict[str, Any] = {}
    if dev:
        say(
            f"choosing the thresholds on {len(dev)} dev sentences (list thresholds {list(cfg.list_thresholds)}, "
            f"continue thresholds {list(cfg.continue_thresholds)})"
        )
        thresholds = choose_thresholds(out, dev, labels, cfg.list_thresholds, cfg.continue_thresholds)
        record.update(
            threshold=thresholds["threshold"], list_threshold=thresholds["list_threshold"], dev=thresholds
        )
        record.pop("continue_threshold", None)  # 0.5 (plain greedy) is what no key means
        if thresholds["continue_threshold"] != 0.5:
            record["continue_threshold"] = thresholds["continue_threshold"]
        write_template_record(out, **record)
        say(
            f"dev: list threshold {thresholds['list_threshold']}, continue threshold "
            f"{thresholds['continue_threshold']}, score threshold {thresholds['threshold']}: "
            f"strict F1 {100 * thresholds['strict_f1']:.1f} (precision {100 * thresholds['strict_precision']:.1f}, "
            f"recall {100 * thresholds['strict_recall']:.1f})"
        )
    else:
        say(
            f"fewer than {MIN_DEV} dev sentences: the thresholds of {parent.name} are kept "
            f"(threshold {record.get('threshold', 0.0)}, list threshold {record.get('list_threshold', 0.5)})"
        )
    return AdaptResult(
        out, len(train), len(dev), len(replay), labels, result.global_step, seconds, thresholds
    )
