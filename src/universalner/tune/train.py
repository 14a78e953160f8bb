"""Conversation-style instruction tuning: LoRA, QLoRA or full fine-tuning with the HF Trainer.

One run: read and check the data (before the model is loaded, so bad data fails in seconds),
encode it with the template the student will be asked with, train with checkpoints, then save
the adapter (lora/qlora) or the model (full), the tokenizer, the template record that tells
inference which layout to use, the loss log and a loss-curve PNG.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..prompts import LAYOUTS, get_template
from ..weights.hub import check_hub_reachable, offline_hint
from ..weights.record import read_template_record, write_template_record
from ..weights.resolve import resolve
from .collate import Collator, Encoder
from .data import DataError, Example, load_examples

METHODS = ("lora", "qlora", "full")
DEFAULT_LR = {"full": 2e-5, "lora": 2e-4, "qlora": 2e-4}
CONFIG_FILE = "tune_config.json"
# a resumed run must agree with its checkpoints on these; epochs, max_steps, save/log steps may change
_FIXED_ON_RESUME = (
    "base_model", "data", "supervised", "labels_map", "method", "template", "max_length", "seed",
    "batch_size", "grad_accum", "lr", "lora_r", "lora_alpha", "lora_dropout", "group_by_length",
    "init_adapter", "stack",
)  # fmt: skip
BF16_CHOICES = ("auto", "on", "off")


@dataclass
class TuneConfig:
    """Everything a run depends on; defaults follow the paper (and common LoRA practice)."""

    base_model: str
    output: str
    data: list[str] = field(default_factory=list)
    supervised: list[tuple[str, str]] = field(default_factory=list)
    labels_map: str | None = None
    method: str = "lora"
    template: str = "auto"
    epochs: float = 3.0
    max_steps: int = -1
    lr: float | None = None  # None: 2e-5 for full (the paper), 2e-4 for LoRA/QLoRA
    batch_size: int = 4
    grad_accum: int = 4
    max_length: int = 1024
    seed: int = 0
    warmup_ratio: float = 0.04
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0  # dropout cost 12% of a CPU step and bought nothing measurable here
    save_steps: int = 200
    save_total_limit: int = 2
    logging_steps: int = 10
    gradient_checkpointing: bool = False
    resume: bool = False
    bf16: str = "auto"  # auto: on GPUs that support it and on CPUs with AVX512-BF16/AMX (lora, full)
    group_by_length: bool = True  # batches of similar lengths: less padding
    # a LoRA student to start from (``tune --from``, see ``adapt.py``): its adapter goes on training,
    # or (``stack``) is merged into the base and a new adapter is trained on top of it
    init_adapter: str | None = None
    stack: bool = False

    def check(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"--method must be one of {METHODS}, not {self.method!r}")
        if self.template not in ("auto", *LAYOUTS):
            raise ValueError(f"--template must be 'auto' or one of {LAYOUTS}, not {self.template!r}")
        if not self.data and not self.supervised:
            raise ValueError("nothing to train on: give --data FILE and/or --supervised NAME=PATH")
        for name in ("batch_size", "grad_accum", "max_length", "save_steps", "logging_steps", "lora_r"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps == 0:
            raise ValueError("--max-steps must be positive (or left out to train --epochs)")
        if self.epochs <= 0 and (self.max_steps is None or self.max_steps < 0):
            raise ValueError("--epochs must be positive")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"--warmup-ratio must be in [0, 1), not {self.warmup_ratio}")
        if self.bf16 not in BF16_CHOICES:
            raise ValueError(f"--bf16 must be one of {BF16_CHOICES}, not {self.bf16!r}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"--lr must be positive, not {self.lr}")
        if self.init_adapter is not None and self.method != "lora":
            raise ValueError(f"starting from a LoRA student needs --method lora, not {self.method!r}")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.method]

    def fixed(self) -> dict[str, Any]:
        """The settings a resume must repeat, with paths made absolute (``./x`` and ``x`` agree)."""
        d = json.loads(json.dumps(asdict(self)))  # tuples -> lists, as read back from disk
        d["lr"] = self.learning_rate
        d["base_model"] = base_reference(self.base_model)
        d["data"] = [_absolute(p) for p in self.data]
        d["supervised"] = [[name, _absolute(p)] for name, p in self.supervised]
        d["labels_map"] = _absolute(self.labels_map) if self.labels_map else None
        d["init_adapter"] = base_reference(self.init_adapter) if self.init_adapter else None
        return {k: d[k] for k in _FIXED_ON_RESUME}


def _absolute(path: str) -> str:
    return str(Path(os.path.expanduser(str(path))).resolve())


@dataclass
class TuneResult:
    """Where the student is and what the run did."""

    output: Path
    global_step: int
    resumed_from: int | None
    train_loss: float | None
    examples: int
    truncated: int
    dropped: int
    loss_png: Path | None


def say(msg: str) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"tune: {msg}", file=sys.stderr, flush=True)


def base_reference(base_model: str) -> str:
    """How the output names its base: an absolute path for local files (GGUF included), else the id."""
    p = Path(os.path.expanduser(base_model))
    return str(p.resolve()) if p.exists() else base_model


def choose_layout(requested: str, tokenizer: Any, location: Any) -> str:
    """``auto``: the layout recorded with the base (a tuned student), else chat if it has a template."""
    if requested != "auto":
        return requested
    if isinstance(location, Path):
        recorded = read_template_record(location).get("template")
        if recorded in LAYOUTS:
            return recorded
    return "chat" if getattr(tokenizer, "chat_template", None) else "uniner"


# --- the output folder ---------------------------------------------------------------------------
def prepare_output(cfg: TuneConfig, remove_partial: bool = True) -> tuple[int, Path] | None:
    """Check the output folder against ``--resume``; the checkpoint to resume from, if any."""
    from .checkpoints import last_checkpoint

    out = Path(cfg.output)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output {out} is a file; give a folder")
    saved = out / CONFIG_FILE
    if not cfg.resume:
        if saved.is_file() or (out.is_dir() and any(out.glob("checkpoint-*"))):
            raise ValueError(
                f"--output {out} already holds a training run; pass --resume to continue it "
                "or choose a new folder"
            )
        return None
    if saved.is_file():
        try:
            before = json.loads(saved.read_text())
        except ValueError:
            before = {}
        now = cfg.fixed()
        changed = [k for k in _FIXED_ON_RESUME if k in before and before[k] != now[k]]
        if changed:
            diff = ", ".join(f"{k}: {before[k]!r} -> {now[k]!r}" for k in changed)
            raise ValueError(
                f"--resume in {out}: the settings differ from the run being resumed ({diff}); "
                "use the same settings, or a new --output"
            )
    return last_checkpoint(out, remove_partial=remove_partial)


def finished_at(cfg: TuneConfig, ckpt: Path) -> int | None:
    """The step a resumed run already ended at, or None if it has steps left.

    The Trainer checks for the end only after a step, so resuming a finished run would train one
    step more; a run is finished when its checkpoint reached ``--max-steps``, or, training by
    epochs, the planned steps of the same number of epochs.
    """
    state = json.loads((ckpt / "trainer_state.json").read_text())
    step = int(state.get("global_step", 0))
    if cfg.max_steps and cfg.max_steps > 0:
        return step if step >= cfg.max_steps else None
    planned = state.get("max_steps")
    same_plan = float(state.get("num_train_epochs", -1)) == float(cfg.epochs)
    return step if planned and step >= int(planned) and same_plan else None


_TRAINING_STATE = ("optimizer.pt", "scheduler.pt", "scaler.pt", "trainer_state.json", "training_args.bin")


def export_checkpoint(ckpt: Path, out: Path) -> None:
    """Make the output folder's weights those of ``ckpt`` (what ``save_model`` would have written)."""
    for f in ckpt.iterdir():
        if f.is_file() and f.name not in _TRAINING_STATE and not f.name.startswith("rng_state"):
            shutil.copy2(f, out / f.name)


# --- data ----------------------------------------------------------------------------------------
def encode_examples(examples: list[Example], encoder: Encoder) -> tuple[list[dict], dict[str, int]]:
    """Training features (numpy int32 ids and labels) and counts of truncated and dropped ones."""
    import numpy as np
    from tqdm.auto import tqdm

    feats, truncated, dropped = [], 0, 0
    quiet = int(os.environ.get("RANK", "0")) != 0
    for ex in tqdm(examples, desc="tokenizing", unit="conv", disable=quiet, mininterval=1.0):
        enc = encoder.encode(ex.conversation)
        if enc is None:
            dropped += 1
            continue
        truncated += enc.pairs < len(ex.conversation.questions)
        feats.append(
            {"input_ids": np.asarray(enc.input_ids, np.int32), "labels": np.asarray(enc.labels, np.int32)}
        )
    return feats, {"conversations": len(examples), "truncated": truncated, "dropped": dropped}


def training_features(
    cfg: TuneConfig, examples: list[Example], tok: Any, layout: str, args: Any
) -> tuple[list[dict], dict[str, int]]:
    """The tokenised training set: from the output folder's cache, else encoded (and cached).

    The main process encodes and writes the cache while the others wait, then read it.
    """
    from . import cache

    out = Path(cfg.output)
    key = cache.fingerprint(cfg, layout, tok)
    path = out / cache.CACHE_FILE
    with args.main_process_first(desc="tokenizing"):
        got = cache.load(path, key)
        if got is not None:
            say(f"tokenized data read from {path}")
            return got
        feats, stats = encode_examples(examples, Encoder(tok, get_template(layout, tok), cfg.max_length))
        if feats and args.process_index == 0:
            out.mkdir(parents=True, exist_ok=True)
            cache.save(path, key, feats, stats)
    return feats, stats


# --- the model -----------------------------------------------------------------------------------
def load_for_training(cfg: TuneConfig, location: Any):
    """(model ready to train, tokenizer). QLoRA loads the base in 4-bit nf4 (bitsandbytes)."""
    import torch

    from ..weights.hf import load_model_and_tokenizer

    cuda = torch.cuda.is_available()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cfg.method == "qlora":
        device = f"cuda:{local}" if cuda else "cpu"
        model, tok, _, _ = load_model_and_tokenizer(location, quantization="4bit", device=device)
    else:
        # loaded on the CPU; the Trainer (or accelerate/FSDP) places it. LoRA keeps a bf16 base on GPUs,
        # full fine-tuning keeps fp32 master weights and trains in bf16 autocast.
        dtype = "bfloat16" if cuda and cfg.method == "lora" else "float32"
        model, tok, _, _ = load_model_and_tokenizer(location, device="cpu", dtype=dtype)
    model.config.use_cache = False
    if cfg.method == "full":
        return model, tok
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    if cfg.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    elif cfg.gradient_checkpointing:
        model.enable_input_require_grads()
    lora = LoraConfig(
        task_type="CAUSAL_LM",
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules="all-linear",  # attention and MLP projections; never the output head
    )
    if cfg.init_adapter is not None:
        from ..weights.resolve import resolve_model

        parent = resolve_model(cfg.init_adapter)
        if not cfg.stack:  # the student's own adapter trains on (its rank and modules, not --lora-r)
            model = PeftModel.from_pretrained(model, str(parent), is_trainable=True)
            model.peft_config["default"].base_model_name_or_path = base_reference(cfg.base_model)
            return model, tok
        from ..weights.lora import merge_lora

        if not merge_lora(model, parent):  # not a plain LoRA: peft folds it in
            model = PeftModel.from_pretrained(model, str(parent)).merge_and_unload()
    model = get_peft_model(model, lora)
    # the adapter names the base the way the user gave it (a .gguf path is converted again on load)
    model.peft_config["default"].base_model_name_or_path = base_reference(cfg.base_model)
    return model, tok


def use_bf16(cfg: TuneConfig) -> bool:
    """bf16 autocast: asked for, or (auto) where the hardware runs it natively.

    On a CPU it needs AVX512-BF16 or AMX (emulated bf16 is slower than fp32); QLoRA on a CPU keeps
    bitsandbytes' own compute dtype.
    """
    import torch

    from ..weights.hardware import cpu_has_bf16

    if cfg.bf16 != "auto":
        return cfg.bf16 == "on"
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cfg.method != "qlora" and cpu_has_bf16()


def training_arguments(cfg: TuneConfig):
    import torch
    from transformers import TrainingArguments

    cuda = torch.cuda.is_available()
    fields = TrainingArguments.__dataclass_fields__
    extra: dict[str, Any] = {}
    if cfg.group_by_length:  # renamed train_sampling_strategy in transformers 5
        if "train_sampling_strategy" in fields:
            extra["train_sampling_strategy"] = "group_by_length"
        else:
            extra["group_by_length"] = True
    # transformers 5 folds warmup_ratio into warmup_steps (a float below 1 is a fraction of all steps)
    extra["warmup_ratio" if "warmup_ratio" in fields else "warmup_steps"] = cfg.warmup_ratio
    if cfg.gradient_checkpointing:  # renamed activation_checkpointing in transformers 5
        name = (
            "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
        )
        extra[name] = True
        extra[f"{name}_kwargs"] = {"use_reentrant": False}
    return TrainingArguments(
        output_dir=cfg.output,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps if cfg.max_steps and cfg.max_steps > 0 else -1,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="cosine",
        weight_decay=0.0,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to="none",
        use_cpu=not cuda,
        bf16=use_bf16(cfg),
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=False,
        **extra,
    )


def _record(cfg: TuneConfig, layout: str, tok: Any) -> dict[str, Any]:
    from .. import __version__

    return {
        "template": layout,
        "eos": tok.eos_token,
        "method": cfg.method,
        "base_model": base_reference(cfg.base_model),
        "max_length": cfg.max_length,
        "datasets": [name for name, _ in cfg.supervised],
        "trained_with": f"universalner.tune {__version__}",
    }


def answer_loss_trainer(base: type) -> type:
    """A Trainer whose loss applies the output head to answer positions only (see ``loss.py``).

    Wrapped models (DDP, FSDP) and evaluation calls keep the stock path: their forward hooks
    must see the call.
    """
    from .loss import answer_loss, has_decoder_and_head

    class AnswerLossTrainer(base):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            plain = model is self.accelerator.unwrap_model(model) and has_decoder_and_head(model)
            if return_outputs or not plain or "labels" not in inputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            return answer_loss(model, inputs, num_items_in_batch, autocast_bf16=self.args.bf16)

    return AnswerLossTrainer


# --- the run -------------------------------------------------------------------------------------
def run(cfg: TuneConfig) -> TuneResult:
    """Train a student as configured; see the module docstring."""
    cfg.check()
    out = Path(cfg.output)
    base = resolve(cfg.base_model)
    if base.kind == "adapter":
        raise ValueError(
            f"--base-model {cfg.base_model} is a LoRA adapter; give the model it was trained on "
            "(its adapter_config.json names it), or merge the adapter into it first"
        )
    location = base.transformers_path()  # a .gguf base is converted once, under the cache
    if isinstance(location, str):  # a hub id: no network fails in seconds, not minutes of retries
        check_hub_reachable(location)
    prepare_output(cfg, remove_partial=False)  # a wrong --resume fails at once
    # the data next, before torch is imported: a bad file fails in seconds, in every process
    examples = load_examples(cfg.data, cfg.supervised, cfg.seed, cfg.labels_map)
    if not examples:
        raise DataError("the training data holds no conversation with a question")

    import warnings

    from transformers import AutoTokenizer, Trainer

    from .progress import LOSS_LOG, LOSS_PNG, LossLog, RecordCheckpoints, append_log, plot_loss, trim_log

    # peft looks for a config.json next to the base to see if the vocabulary changed; a .gguf base has none
    warnings.filterwarnings("ignore", message="Could not find a config file in .*gguf")
    args = training_arguments(cfg)  # sets up the process group under `accelerate launch`
    main = args.process_index == 0
    # every process checks the folder before the main one writes to it (or removes a half checkpoint)
    resume_from = prepare_output(cfg, remove_partial=False)
    args.distributed_state.wait_for_everyone()
    if main:
        prepare_output(cfg, remove_partial=True)

    done = finished_at(cfg, resume_from[1]) if resume_from is not None else None
    if done is not None:  # e.g. the crash came after the last checkpoint: only the saving is left
        png = None
        if main:
            export_checkpoint(resume_from[1], out)
            png = plot_loss(out / LOSS_LOG, out / LOSS_PNG)
        say(
            f"the run in {out} already finished at step {done}; its output is taken from {resume_from[1].name}"
        )
        return TuneResult(out, done, done, None, 0, 0, 0, png)

    try:
        tok = AutoTokenizer.from_pretrained(str(location))
    except OSError as e:  # reachable but not fetchable (no such repo, gated), or HF_HUB_OFFLINE, uncached
        if isinstance(location, str):
            raise offline_hint(location, e) from e
        raise
    layout = choose_layout(cfg.template, tok, location)
    t0 = time.time()
    feats, stats = training_features(cfg, examples, tok, layout, args)
    if not feats:
        raise DataError(
            f"no conversation fits in --max-length {cfg.max_length} tokens with even one question; "
            "raise --max-length"
        )
    n_tokens = sum(len(f["input_ids"]) for f in feats)
    n_target = sum(int((f["labels"] != -100).sum()) for f in feats)
    say(
        f"{len(feats)} conversations ({stats['truncated']} truncated to whole question/answer pairs, "
        f"{stats['dropped']} too long even for one pair), {n_tokens} tokens, {n_target} with loss; "
        f"layout {layout!r}; {time.time() - t0:.1f}s"
    )

    # seeded before the model is made: the LoRA matrices are initialised at random (the Trainer seeds
    # only later, so unseeded the same run started from a different adapter each time)
    from transformers import set_seed

    set_seed(cfg.seed)
    model, tok = load_for_training(cfg, location)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if hasattr(model, "print_trainable_parameters") and int(os.environ.get("RANK", "0")) == 0:
        model.print_trainable_parameters()

    out.mkdir(parents=True, exist_ok=True)
    log = out / LOSS_LOG
    record = _record(cfg, layout, tok)
    if main:
        (out / CONFIG_FILE).write_text(json.dumps(asdict(cfg) | cfg.fixed(), indent=2, default=str))
        if resume_from is not None:
            trim_log(log, resume_from[0])
            append_log(log, {"event": "resume", "step": resume_from[0], "checkpoint": resume_from[1].name})
        else:
            log.unlink(missing_ok=True)
            append_log(log, {"event": "start", "step": 0, "examples": len(feats)})
    if resume_from is not None:
        say(f"resuming from {resume_from[1]} (step {resume_from[0]})")
    elif cfg.resume:
        say(f"--resume: no complete checkpoint in {out} yet, starting from the beginning")

    trainer = answer_loss_trainer(Trainer)(
        model=model,
        args=args,
        train_dataset=feats,
        data_collator=Collator(tok.pad_token_id),
        processing_class=tok,
        callbacks=[LossLog(log), RecordCheckpoints(lambda d: write_template_record(d, **record))],
    )
    result = trainer.train(resume_from_checkpoint=str(resume_from[1]) if resume_from else None)

    trainer.save_model(str(out))  # the adapter for lora/qlora, the whole model for full
    png = None
    if trainer.is_world_process_zero():
        tok.save_pretrained(str(out))
        write_template_record(out, **record)
        png = plot_loss(log, out / LOSS_PNG)
        say(f"saved the {'adapter' if cfg.method != 'full' else 'model'} to {out}")
    return TuneResult(
        output=out,
        global_step=trainer.state.global_step,
        resumed_from=resume_from[0] if resume_from else None,
        train_loss=getattr(result, "training_loss", None),
        examples=len(feats),
        truncated=stats["truncated"],
        dropped=stats["dropped"],
        loss_png=png,
    )
