"""Section 3 of the student issue on one GPU: method variants at equal tokens, each scored on dev.

    python recipes/universalner_135m_v3_gpu.py --gguf BASE.gguf --mix A=mixA --mix B=mixB \
        --out runs/v3 --budget 540 [--pack OUT]

Made for a lent GPU with a fixed time budget (here one H200 for minutes): it measures the training
rate first (a few steps of the real model and loss on a synthetic batch), sizes every variant to the
same number of optimizer steps of ``--batch-size`` conversations (equal tokens, within the mixes'
mean lengths), then trains the variants in order of priority, each with ``python -m
universalner.tune``, and scores each on the dev sets with ``python -m universalner.evaluate run`` (the
first ``--dev-limit`` sentences of each, list threshold 0.3, continue threshold 0.5, as the v2
recipe's curve). A full fine-tune is scored as it is and as its rank-``--rank`` LoRA extraction
(``universalner.tune.extract``), which is what would ship. A variant that would not finish before the
budget is skipped, never cut short. ``--pack`` writes the results and the best adapters (float16,
split into files of at most 15 MiB) to bring back. Every number it prints is in ``results.json``.

What one H200 run of it measured (2026-12-04, docs/students.md): the probe ran 52k tokens a second
(the 135M model is too small to fill the chip: 0.17 s for 32 x 272 tokens); ``full-A`` trained 326
steps (2.7 M tokens) in 137 s with start-up and tokenising; scoring dev took 142 s for the full
weights and 113 s for the extraction (decoding is latency-bound, about as slow as this project's
CPU), so the budget left none for the other variants. Score on a CPU afterwards if time is short.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

T0 = time.time()
DEVICE = "cpu"  # set by main: "cuda" where torch sees a GPU
VARIANTS = [  # name, mix, tune arguments; in order of priority
    ("full-A", "A", ["--method", "full", "--lr", "1e-4"]),
    ("lora16-A", "A", ["--method", "lora", "--lora-r", "16", "--lora-alpha", "32", "--lr", "3e-4"]),
    ("lora64-A", "A", ["--method", "lora", "--lora-r", "64", "--lora-alpha", "128", "--lr", "3e-4"]),
    ("full-B", "B", ["--method", "full", "--lr", "1e-4"]),
]


def say(msg: str) -> None:
    print(f"[{time.time() - T0:6.1f}s] {msg}", flush=True)


def sh(args: list[str], timeout: float) -> bool:
    say("+ python " + " ".join(args))
    try:
        subprocess.run([sys.executable, *args], check=True, timeout=max(timeout, 1))
        return True
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        say(f"failed: {e}")
        return False


def probe(base: Path, batch: int, length: int, steps: int = 8) -> dict:
    """Tokens a second of full fine-tuning (fp32 weights, bf16 autocast, AdamW, answer-only loss)."""
    import torch
    from transformers import AutoModelForCausalLM

    from universalner.tune.loss import answer_loss

    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32).to(DEVICE)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    ids = torch.randint(0, 49000, (batch, length), device=DEVICE)
    labels = ids.clone()
    labels[:, : int(length * 0.85)] = -100
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    sync = torch.cuda.synchronize if DEVICE == "cuda" else (lambda: None)
    times = []
    for i in range(steps + 3):
        sync()
        t = time.perf_counter()
        loss = answer_loss(model, inputs, autocast_bf16=True)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        if i >= 3:
            times.append(time.perf_counter() - t)
    del model, opt
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
    per_step = sorted(times)[len(times) // 2]
    return {"seconds_per_step": per_step, "tokens_per_second": batch * length / per_step}


def dev_score(model: Path, sets: list[str], run: Path, limit: int, timeout: float) -> dict | None:
    ok = sh(["-m", "universalner.evaluate", "run", "--model", str(model), "--data", *sets, "--output", str(run),
             "--threshold", "0", "--list-threshold", "0.3", "--continue-threshold", "0.5", "--limit", str(limit),
             "--device", DEVICE, "--no-progress"], timeout)  # fmt: skip
    if not ok:
        return None
    metrics = json.loads((run / "metrics.json").read_text())["sets"]
    per = {k: v["official"]["f1"] for k, v in metrics.items()}
    return {"f1": sum(per.values()) / len(per), "per_set": per}


def mean_tokens(tune_dir: Path) -> float:
    import numpy as np

    with np.load(tune_dir / "tokenized.npz") as z:
        return float(z["lengths"].mean())


def pack(out: Path, results: dict, dest: Path, limit_mib: float = 48.0) -> None:
    """results.json, the log, the dev answers, then adapters best first (float16) while they fit."""
    from safetensors.torch import load_file, save_file

    dest.mkdir(parents=True, exist_ok=True)
    (dest / "results.json").write_text(json.dumps(results, indent=1))
    staging = out / "pack"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    order = [v[0] for v in VARIANTS]  # without a dev score, the order of priority
    scored = [(v.get("ship_f1") or -1, -order.index(name), name) for name, v in results["variants"].items()]
    budget = limit_mib * 2**20
    for _, _, name in sorted(scored, reverse=True):
        v = results["variants"][name]
        adapter = Path(v["ship_dir"]) if v.get("ship_dir") else None
        if adapter is None or not (adapter / "adapter_model.safetensors").is_file():
            continue
        target = staging / name
        target.mkdir()
        tensors = {
            k: t.half().contiguous() for k, t in load_file(str(adapter / "adapter_model.safetensors")).items()
        }
        save_file(tensors, str(target / "adapter_model.safetensors"), metadata={"format": "pt"})
        size = (target / "adapter_model.safetensors").stat().st_size
        if size > budget:
            shutil.rmtree(target)
            say(f"pack: {name} ({size / 2**20:.1f} MiB) does not fit")
            continue
        budget -= size
        for f in ("adapter_config.json", "universalner.json"):  # the tokenizer is the base's
            if (adapter / f).is_file():
                shutil.copy2(adapter / f, target / f)
        tune_dir = out / name
        for f in ("loss_log.jsonl", "tune_config.json", "loss.png"):
            if (tune_dir / f).is_file():
                shutil.copy2(tune_dir / f, target / f)
        say(f"pack: {name} ({size / 2**20:.1f} MiB)")
    dev = out / "dev"
    with tarfile.open(out / "pack.tar", "w") as tar:
        tar.add(staging, arcname="adapters")
        if dev.is_dir():
            tar.add(dev, arcname="dev", filter=lambda ti: None if ti.name.endswith(".lock") else ti)
    data = (out / "pack.tar").read_bytes()
    chunk = 15 * 2**20
    for i in range(0, len(data), chunk):
        (dest / f"pack.tar.{i // chunk:02d}").write_bytes(data[i : i + chunk])
    say(f"pack: {len(data) / 2**20:.1f} MiB in {(len(data) + chunk - 1) // chunk} files")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--mix", action="append", required=True, help="NAME=folder of distill.mix output")
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=float, default=540, help="seconds from start to the packed results")
    ap.add_argument("--pack", help="folder to write results and adapters to")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--train-seconds", type=float, default=80, help="aimed training time per variant")
    ap.add_argument("--dev-limit", type=int, default=30)
    ap.add_argument("--rank", type=int, default=64, help="LoRA rank of a full fine-tune's extraction")
    ap.add_argument("--variants", default=",".join(v[0] for v in VARIANTS))
    ap.add_argument("--steps", type=int, default=0, help="fixed optimizer steps (default: from the probe)")
    a = ap.parse_args()
    import torch

    global DEVICE
    DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    mixes = dict(m.split("=", 1) for m in a.mix)
    deadline = T0 + a.budget
    results: dict = {"variants": {}, "budget": a.budget}
    try:
        from universalner.weights.gguf import gguf_to_folder

        base = gguf_to_folder(a.gguf)
        say(f"base folder {base}")
        sets = [f"{p.stem}={p}" for p in sorted((Path(mixes["A"]) / "dev").glob("*.json"))]
        if a.steps:
            steps = a.steps
        else:
            rate = probe(base, a.batch_size, 272)
            results["probe"] = rate
            say(f"probe: {rate}")
            steps = max(10, int(a.train_seconds * rate["tokens_per_second"] / (a.batch_size * 272)))
        results["steps"] = steps
        say(f"{steps} steps of {a.batch_size} conversations per variant")
        eval_cost, startup = 140.0, 45.0  # measured on the H200: dev scoring is decode-bound
        for name, mix, targs in VARIANTS:
            if name not in a.variants.split(","):
                continue
            left = deadline - time.time()
            rate = results.get("measured_steps_per_second") or (
                1 / results["probe"]["seconds_per_step"] if "probe" in results else 5.0
            )
            full = "full" in targs
            need = startup + steps / rate * (1.4 if full else 1.2) + eval_cost * (2 if full else 1) + 20
            if need > left:
                say(f"skip {name}: needs about {need:.0f}s, {left:.0f}s left")
                results["variants"][name] = {"skipped": f"needs about {need:.0f}s, {left:.0f}s left"}
                continue
            tune_dir = out / name
            cached = next((out / n / "tokenized.npz" for n, m, _ in VARIANTS if m == mix and (out / n / "tokenized.npz").is_file()), None)  # fmt: skip
            if cached is not None and not (tune_dir / "tokenized.npz").is_file():
                tune_dir.mkdir(parents=True, exist_ok=True)
                shutil.copy2(cached, tune_dir / "tokenized.npz")
            t = time.time()
            ok = sh(["-m", "universalner.tune", "--base-model", a.gguf, "--data", str(Path(mixes[mix]) / "train.json"),
                     "--output", str(tune_dir), "--max-steps", str(steps), "--batch-size", str(a.batch_size),
                     "--grad-accum", "1", "--max-length", "512", "--save-steps", str(10 * steps),
                     "--logging-steps", "10", "--seed", "0", *targs], left - eval_cost)  # fmt: skip
            train_s = time.time() - t
            v: dict = {"mix": mix, "args": targs, "steps": steps, "train_seconds": train_s, "ok": ok}
            results["variants"][name] = v
            if not ok:
                continue
            v["tokens"] = round(steps * a.batch_size * mean_tokens(tune_dir))
            log = [json.loads(x) for x in (tune_dir / "loss_log.jsonl").read_text().splitlines() if x.strip()]
            losses = [e["loss"] for e in log if "loss" in e]
            v["final_loss"] = losses[-1] if losses else None
            results["measured_steps_per_second"] = steps / max(train_s - startup, 1)
            if full:
                t = time.time()
                score = dev_score(
                    tune_dir,
                    sets,
                    out / "dev" / f"{name}-full",
                    a.dev_limit,
                    min(deadline - time.time(), 240),
                )
                eval_cost = max(eval_cost * 0.5, time.time() - t)
                v["dev_full"] = score
                ext = out / f"{name}-r{a.rank}"
                from universalner.tune.extract import extract_lora

                v["extraction"] = extract_lora(base, tune_dir, ext, a.rank, DEVICE)
                say(f"{name} extraction: {v['extraction']}")
                ship = ext
            else:
                ship = tune_dir
            t = time.time()
            score = dev_score(ship, sets, out / "dev" / name, a.dev_limit, min(deadline - time.time(), 240))
            eval_cost = max(eval_cost * 0.5, time.time() - t)
            v["dev"], v["ship_dir"] = score, str(ship)
            v["ship_f1"] = score["f1"] if score else None
            say(f"{name}: {json.dumps(v)}")
            (out / "results.json").write_text(json.dumps(results, indent=1))
    finally:
        results["seconds"] = time.time() - T0
        (out / "results.json").write_text(json.dumps(results, indent=1))
        if a.pack:
            pack(out, results, Path(a.pack))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
