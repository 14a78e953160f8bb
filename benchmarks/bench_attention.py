"""Grouped key/value heads read in place (``universalner.attention``) against transformers' SDPA, which
copies them per query head: the default student on the CPU, side by side in one run.

One process holds the student twice, one copy per attention; the two alternate over the same CrossNER
politics test sentences (their 8 types, K = 8, or ``--k 16`` with the 8 types of bench_cpu.py added),
``UniversalNER.predict`` end to end, batch 8, best of ``--repeats``. Prints sentences/s of each, the
ratio, and whether every entity (text, label, offsets) is the same and how far scores moved.

    python benchmarks/bench_attention.py [--sentences 48] [--k 8] [--threads 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

from bench_cpu import DATA, EXTRA_TYPES

POLITICS = ["politician", "person", "organisation", "political party", "event", "election", "country",
            "location"]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sentences", type=int, default=48)
    ap.add_argument("--k", type=int, default=8, choices=(8, 16))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    import torch

    from universalner import UniversalNER
    from universalner.corpora import read_conll

    torch.set_num_threads(a.threads)
    texts = [" ".join(s.tokens) for s in read_conll(DATA / "test.txt")[: a.sentences]]
    labels = POLITICS + (EXTRA_TYPES if a.k == 16 else [])
    grouped = UniversalNER.from_pretrained()
    copied = UniversalNER.from_pretrained()
    copied.engine.model.set_attn_implementation("sdpa")  # transformers' own: K/V heads copied per query head
    assert grouped.engine.model.config._attn_implementation == "universalner_sdpa", "not a CPU GQA model?"
    best = {"copied": float("inf"), "grouped": float("inf")}
    preds = {}
    for ner in (copied, grouped):  # warm-up
        ner.predict(texts[:8], labels, batch_size=8)
    for _ in range(a.repeats):
        for name, ner in (("copied", copied), ("grouped", grouped)):
            t0 = time.perf_counter()
            preds[name] = ner.predict(texts, labels, batch_size=8)
            best[name] = min(best[name], time.perf_counter() - t0)
    ents = {k: [[(e.text, e.label, e.start, e.end) for e in p.entities] for p in v] for k, v in preds.items()}
    moved = max(
        (abs(e.score - f.score) for p, q in zip(preds["copied"], preds["grouped"], strict=True)
         for e, f in zip(p.entities, q.entities, strict=False)),
        default=0.0,
    )  # fmt: skip
    out = {
        "k": a.k, "sentences": len(texts), "threads": a.threads,
        "copied_sent_s": round(len(texts) / best["copied"], 3), "grouped_sent_s": round(len(texts) / best["grouped"], 3),
        "speedup": round(best["copied"] / best["grouped"], 3),
        "same_entities": ents["copied"] == ents["grouped"], "max_score_change": round(moved, 7),
    }  # fmt: skip
    print(f"K={a.k}, {len(texts)} sentences, {a.threads} thread(s), best of {a.repeats}")
    print(f"  SDPA, K/V heads copied (transformers): {out['copied_sent_s']:.3f} sentences/s")
    print(f"  SDPA, K/V heads read in place (ours):  {out['grouped_sent_s']:.3f} sentences/s")
    print(f"  speed-up {out['speedup']:.2f}x; same entities: {out['same_entities']}; "
          f"largest score change {out['max_score_change']:.1e}")  # fmt: skip
    if a.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
