"""The default student 0.2: ``universalner-135m`` trained on every allowed source, with one command.

    python recipes/universalner_135m_v2.py [--shared ../shared] [--out runs/recipe-135m-v2] \
        [--stage1 STUDENT] [--export src/universalner/students/universalner-135m]

Every step is one of the library's own commands, every step resumes (rerun the same command after any
stop), and every number the student's record, card and docs state is written here, never by hand.

0. **Stage 1**, the student it starts from: ``--stage1`` (the 0.x ``universalner-135m`` adapter, or
   any LoRA student on the same base), else rebuilt by ``recipes/universalner_135m.py``.
1. ``distill.mix`` (its defaults): Pile-NER chunks with 6 negatives, 600 one-type Pile-NER examples,
   600 sentences of each of the nine supervised corpora asked in natural language, 10% of questions by
   definition and 10% by a name variant; every sentence of a benchmark or evaluation set kept out and
   checked; ``dev/*.json``: each dev sentence asked its own types and absent ones.
2. Stage 1 merged into its base as a float32 folder (``base/``): stage 2's LoRA trains on top of it
   (``tune --from --adapter stack`` does the same for users' data).
3. ``tune``: LoRA r 16 / alpha 32 on all linear layers, lr 3e-4 cosine, warmup 4%, 16 conversations a
   step, ``--steps`` steps (600: 9,600 conversations, about 2.5 M tokens, 71% of one pass over the
   mixture), seed 0, a checkpoint every 10 steps.
4. ``evaluate run`` on the first ``--dev-limit`` (30) sentences of every dev set for every
   ``--every``-th (300) checkpoint and the last at list threshold 0.3, continue threshold 0.5 and no score
   threshold: the learning curve (mean official F1 over the dev sets), ``curve.png``. The best
   checkpoint has the highest mean F1; a tie (equal to 4 decimals) goes to the later checkpoint.
5. For it, dev runs at each (list threshold, continue threshold) of the grid (0.3, 0.4 x 0.3, 0.5; the
   curve's own point is reused, not rerun), and ``evaluate sweep`` for the score threshold; the highest
   mean F1 wins, ties to the higher list threshold, then the higher continue threshold (closer to
   plain greedy).
6. The stage-2 adapter folded with stage 1's into one plain LoRA (rank 32, ``tune.adapt.stack_adapters``)
   and exported with ``tune.export`` (float16, thresholds, dev scores, curve, data sources' sha256).
7. With ``--export``: ``benchmarks/bench_cpu.py --split dev --record`` chooses the CPU dtype by the rule
   of docs/performance.md.
8. ``python -m universalner.tune.card`` writes the model card from the record (data sources with their
   sha256 and licences, dev scores, thresholds, learning curve, CPU path); ``curve.png`` goes beside it.

Checked end to end at toy size (``--steps 2 --every 1 --dev-limit 2 --list-thresholds 0.3
--continue-thresholds 0.4 --tune-args "--save-steps 1"``): the folded rank-32 adapter is 18.7 MiB in
float16 and loads on the shipped base like any student. The merged base it trains on is byte-identical
to the one the running stage-2 training uses (sha256 of ``model.safetensors``).

Step 3 is the long one: about 9-10 s a step with both cores of the AVX512-BF16/AMX CPU of this project
(bfloat16 autocast), so 600 steps take about 1.7 hours (about 40 s a step in float32 on one core of an
AVX2-only CPU: 7 hours); run it in the background and rerun the same command to resume.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TUNE = [
    "--method", "lora", "--lora-r", "16", "--lora-alpha", "32", "--lr", "3e-4", "--batch-size", "4",
    "--grad-accum", "4", "--max-length", "512", "--save-steps", "10", "--save-total-limit", "200",
    "--logging-steps", "1", "--seed", "0",
]  # fmt: skip
CURVE_LIST_THRESHOLD, CURVE_CONTINUE_THRESHOLD = 0.3, 0.5


def sh(*args: str, env: dict | None = None) -> None:
    print("+ python", " ".join(args), flush=True)
    subprocess.run([sys.executable, *args], check=True, env={**os.environ, **(env or {})})


def merged_base(stage1: str, out: Path) -> Path:
    """Stage 1 merged into its base, float32, as a transformers folder (written once, atomically)."""
    if (out / "model.safetensors").is_file():
        return out
    from universalner.quiet import loading_quietly
    from universalner.weights.hf import load_model_and_tokenizer

    with loading_quietly(False):
        model, tok, _, _ = load_model_and_tokenizer(stage1, device="cpu", dtype="float32")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.replace(out)
    return out


def dev_sets(mix: Path) -> list[str]:
    return [f"{p.stem}={p}" for p in sorted((mix / "dev").glob("*.json"))]


def dev_run(model: Path, sets: list[str], run: Path, lt: float, ct: float, limit: int) -> dict:
    """Official F1 of ``model`` on every dev set at these thresholds, averaged over the sets (each set
    counts once, whatever its size), at score threshold 0 and at the score threshold whose mean is best
    (``evaluate sweep`` set by set over the stored answers; ties to the lower threshold)."""
    lim = ["--limit", str(limit)] if limit else []
    sh("-m", "universalner.evaluate", "run", "--model", str(model), "--data", *sets, "--output", str(run),
       "--threshold", "0", "--list-threshold", str(lt), "--continue-threshold", str(ct), "--no-progress", *lim)  # fmt: skip
    metrics = json.loads((run / "metrics.json").read_text())["sets"]
    by_threshold: dict[float, list[float]] = {}
    for s in sets:
        sh("-m", "universalner.evaluate", "sweep", "--output", str(run), "--data", s, *lim)
        for row in json.loads((run / "sweep.json").read_text())["rows"]:
            by_threshold.setdefault(row["threshold"], []).append(row["f1"])
    means = {t: sum(v) / len(v) for t, v in by_threshold.items()}
    best_t = max(means, key=lambda t: (round(means[t], 6), -t))
    mean = lambda key: sum(v["official"][key] for v in metrics.values()) / len(metrics)  # noqa: E731
    return {
        "f1": mean("f1"), "precision": mean("precision"), "recall": mean("recall"),
        "per_set": {k: v["official"]["f1"] for k, v in metrics.items()},
        "best_threshold": best_t, "best_f1": means[best_t],
    }  # fmt: skip


def curve(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    xs = [p["tokens"] / 1e6 for p in points]
    for key, style in (("f1", "o-"), ("precision", ".--"), ("recall", ".--")):
        ax.plot(xs, [100 * p[key] for p in points], style, label=key)
    ax.set_xlabel("stage-2 training tokens (millions)")
    ax.set_ylabel("dev official metric, mean of sets (%)")
    ax.set_title(f"universalner-135m v2 on its dev sets (list threshold {CURVE_LIST_THRESHOLD})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def mean_tokens(tune_dir: Path) -> float:
    """Mean tokens per training conversation, from tune's tokenized cache (steps draw evenly from it)."""
    import numpy as np

    with np.load(tune_dir / "tokenized.npz") as z:
        return float(z["lengths"].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "recipe-135m-v2"))
    ap.add_argument("--stage1", help="the student stage 2 starts from (default: rebuilt by the first recipe)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument(
        "--every", type=int, default=300, help="evaluate every N steps' checkpoint and the last on dev"
    )
    ap.add_argument("--dev-limit", type=int, default=30, help="first N sentences of each dev set (0: all)")
    ap.add_argument("--list-thresholds", type=lambda v: [float(x) for x in v.split(",")], default=[0.3, 0.4])
    ap.add_argument(
        "--continue-thresholds", type=lambda v: [float(x) for x in v.split(",")], default=[0.3, 0.5]
    )
    ap.add_argument("--threads", default="1", help="OMP_NUM_THREADS for training")
    ap.add_argument(
        "--export", help="write the student folder here (src/universalner/students/universalner-135m)"
    )
    ap.add_argument("--note", default="", help="what the record and card should say about how this run went")
    ap.add_argument("--mix-args", default="", help="extra arguments for distill.mix (e.g. '--per-corpus 50')")
    ap.add_argument("--tune-args", default="", help="extra arguments for tune (e.g. '--max-length 256')")
    a = ap.parse_args()
    out, shared = Path(a.out), Path(a.shared)
    out.mkdir(parents=True, exist_ok=True)

    # 0. stage 1
    stage1 = a.stage1
    if stage1 is None:
        stage1 = str(out / "stage1")
        if not (out / "stage1" / "adapter_config.json").is_file():
            subprocess.run([sys.executable, str(ROOT / "recipes" / "universalner_135m.py"), "--shared", str(shared),
                            "--out", str(out / "recipe-135m"), "--export", stage1], check=True)  # fmt: skip
    # 1. the data
    mix = out / "mix"
    if not (mix / "stats.json").is_file():
        sh(
            "-m",
            "universalner.distill.mix",
            "--shared",
            str(shared),
            "--output",
            str(mix),
            *a.mix_args.split(),
        )
    # 2-3. stage 2
    base = merged_base(stage1, out / "base")
    tune_dir = out / "tune"
    sh("-m", "universalner.tune", "--base-model", str(base), "--data", str(mix / "train.json"), "--output",
       str(tune_dir), "--max-steps", str(a.steps), *TUNE, *a.tune_args.split(),
       *(["--resume"] if (tune_dir / "tune_config.json").is_file() else []),
       env={"OMP_NUM_THREADS": a.threads})  # fmt: skip
    # 4. the learning curve
    sets = dev_sets(mix)
    per_step = 16 * mean_tokens(tune_dir)  # batch 4 x accumulation 4 conversations a step
    checkpoints = sorted(tune_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    chosen_among = [c for c in checkpoints[:-1] if int(c.name.split("-")[1]) % a.every == 0] + checkpoints[
        -1:
    ]
    points = []
    for ck in chosen_among:
        step = int(ck.name.split("-")[1])
        run = out / "dev" / f"curve-{ck.name}"
        got = dev_run(ck, sets, run, CURVE_LIST_THRESHOLD, CURVE_CONTINUE_THRESHOLD, a.dev_limit)
        points.append({"checkpoint": ck.name, "step": step, "tokens": round(step * per_step),
                       "conversations": 16 * step, **got})  # fmt: skip
    (out / "curve.json").write_text(json.dumps(points, indent=1) + "\n")
    curve(points, out / "curve.png")
    best = max(points, key=lambda p: (round(p["f1"], 4), p["step"]))
    print(f"best checkpoint on dev: {best['checkpoint']} (mean F1 {100 * best['f1']:.1f})")
    # 5. thresholds
    trials = []
    for lt in a.list_thresholds:
        for ct in a.continue_thresholds:
            run = out / "dev" / f"{best['checkpoint']}-lt{lt}-ct{ct}"
            if (lt, ct) == (CURVE_LIST_THRESHOLD, CURVE_CONTINUE_THRESHOLD):
                run = out / "dev" / f"curve-{best['checkpoint']}"  # the curve's run, done: not rerun
            got = dev_run(tune_dir / best["checkpoint"], sets, run, lt, ct, a.dev_limit)
            trials.append({"list_threshold": lt, "continue_threshold": ct, **got})
    chosen = max(trials, key=lambda t: (round(t["best_f1"], 4), t["list_threshold"], t["continue_threshold"]))
    print(f"on dev: list threshold {chosen['list_threshold']}, continue threshold {chosen['continue_threshold']}, "
          f"score threshold {chosen['best_threshold']} (mean F1 {100 * chosen['best_f1']:.1f})")  # fmt: skip
    (out / "chosen.json").write_text(
        json.dumps({"checkpoint": best, "trials": trials, "chosen": chosen}, indent=1)
    )
    # 6. fold and export
    from universalner.weights.resolve import resolve_model

    folded = out / "folded"
    if not (folded / "adapter_config.json").is_file():
        tmp = out / "folded.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(tune_dir / best["checkpoint"], tmp)
        from universalner.tune.adapt import stack_adapters

        stack_adapters(Path(resolve_model(stage1)), tmp)
        tmp.replace(folded)
    if not a.export:
        return
    gguf = subprocess.run(
        [sys.executable, "-m", "universalner.weights.shipped"], capture_output=True, text=True
    )
    from universalner.checksums import sha256_file

    stats = json.loads((mix / "stats.json").read_text())
    extra = {
        "dev": {"checkpoint": best["checkpoint"], "limit": a.dev_limit, "sets": sorted(chosen["per_set"]),
                "f1": chosen["best_f1"], "per_set": chosen["per_set"]},
        "curve": [{k: p[k] for k in ("step", "tokens", "f1", "precision", "recall")} for p in points],
        "stage1": str(stage1),
        "stage1_sha256": sha256_file(Path(resolve_model(stage1)) / "adapter_model.safetensors"),
        "curve_image": "curve.png",
        **({"training_note": a.note} if a.note else {}),
        "recipe": "python recipes/universalner_135m_v2.py --shared ../shared --threads 2 --export "
        "src/universalner/students/universalner-135m",
        "data": {"sources": stats["sources"], "train": stats["train_total"], "train_parts": stats["train"]},
    }  # fmt: skip
    sh("-m", "universalner.tune.export", "--checkpoint", str(folded), "--output", a.export, "--base-gguf",
       gguf.stdout.strip(), "--threshold", str(chosen["best_threshold"]), "--list-threshold",
       str(chosen["list_threshold"]), "--continue-threshold", str(chosen["continue_threshold"]),
       "--extra", json.dumps(extra))  # fmt: skip
    # 7. the CPU path, by the rule of docs/performance.md, on dev
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_cpu.py"), "--split", "dev", "--ks", "8",
                    "--paths", "fp32,bf16,int8", "--record", a.export], check=True)  # fmt: skip
    # 8. the model card, from the record alone (licences included), and the learning curve beside it
    shutil.copy2(out / "curve.png", Path(a.export) / "curve.png")
    sh("-m", "universalner.tune.card", a.export, "--name", "universalner-135m")


if __name__ == "__main__":
    main()
