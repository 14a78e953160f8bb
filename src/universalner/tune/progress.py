"""What a training run leaves on disk besides weights: the loss log and the loss curve.

The loss log is JSON lines (``loss_log.jsonl``), one object per logging step (with the seconds
since this process began training, so step times can be read off), plus ``event``
lines for a start, a resume and the end, so a crashed and resumed run reads as one history.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

LOSS_LOG = "loss_log.jsonl"
LOSS_PNG = "loss.png"


def append_log(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_log(path: Path) -> list[dict[str, Any]]:
    """The log's records; a line cut off by a crash is skipped."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def trim_log(path: Path, step: int) -> None:
    """Forget what was logged after ``step`` (the checkpoint a run resumes from)."""
    keep = [r for r in read_log(path) if r.get("step", 0) <= step]
    path.write_text("".join(json.dumps(r) + "\n" for r in keep), encoding="utf-8")


class LossLog(TrainerCallback):
    """Appends each logged loss (and the final summary) to the JSON lines file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.t0 = time.time()

    def on_train_begin(self, args, state, control, **kwargs):
        self.t0 = time.time()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        rec: dict[str, Any] = {
            "step": state.global_step,
            "epoch": round(state.epoch or 0.0, 4),
            "elapsed_s": round(time.time() - self.t0, 2),  # since this process began training
        }
        if "loss" in logs:
            for key in ("loss", "learning_rate", "grad_norm"):
                if key in logs:
                    rec[key] = float(logs[key])
        elif "train_loss" in logs:
            rec["event"] = "end"
            rec.update({k: float(v) for k, v in logs.items() if isinstance(v, (int, float))})
        else:
            return
        append_log(self.path, rec)


class RecordCheckpoints(TrainerCallback):
    """Calls ``write(folder)`` on each checkpoint as it is saved (the template record goes in,
    so a checkpoint loads as a student too)."""

    def __init__(self, write):
        self.write = write

    def on_save(self, args, state, control, **kwargs):
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and ckpt.is_dir():
            self.write(ckpt)


def plot_loss(log: Path, png: Path) -> Path | None:
    """Training loss against step as a PNG (matplotlib, no display needed); None if nothing logged."""
    points = [(r["step"], r["loss"]) for r in read_log(log) if "loss" in r and "event" not in r]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o" if len(points) < 30 else None)
    for r in read_log(log):
        if r.get("event") == "resume":
            ax.axvline(r["step"], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (answer tokens)")
    ax.set_title("universalner.tune")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return png
