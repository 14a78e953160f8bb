"""Time to the first answer of the README's first command, cold and warm.

    python benchmarks/bench_first_answer.py                 # the README's command, 5 warm runs
    python benchmarks/bench_first_answer.py --repeats 10 --json
    python benchmarks/bench_first_answer.py -- --model "$(python -m universalner.weights.shipped)" --labels person "Some text."

Each run is a fresh ``python -m universalner ...`` process, timed from its start to the moment its
first JSON line arrives on stdout (imports, model loading, the answer: what a user waits for).

* cold: ``UNIVERSALNER_CACHE`` is an empty folder, so the student's GGUF base is converted first (once);
* warm: the same cache again, the conversion already done; the median of ``--repeats`` runs.

The operating system's file cache is not dropped between runs (that needs root): "cold" is the
library's cold start, not a cold disk. Measure on an otherwise idle machine; the load average at
the start is printed so that a busy machine shows in the result.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

TEXT = "Barack Obama met Emmanuel Macron in Paris."


def readme_args() -> list[str]:
    """The README's first command's arguments: the default student (no --model), two types, one sentence."""
    return ["--labels", "person,location", TEXT]


def first_answer(args: list[str], cache: str, timeout: float) -> tuple[float, str, str]:
    """(seconds to the first stdout line, that line, stderr) of one run of the command line."""
    env = {**os.environ, "UNIVERSALNER_CACHE": cache}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "universalner", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - t0
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    if proc.returncode != 0 or not line.strip():
        sys.exit(f"the command failed (exit {proc.returncode}):\n{err.strip()}")
    json.loads(line)  # one JSON object, or this is not the answer
    return elapsed, line.strip(), err


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="warm runs (default: 5; the median is reported)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per run before giving up")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ap.add_argument("cli", nargs=argparse.REMAINDER, help="after --: the command line's arguments")
    opts = ap.parse_args(argv)
    args = [a for a in opts.cli if a != "--"] or readme_args()
    if opts.repeats < 1:
        ap.error("--repeats must be at least 1")

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory(prefix="universalner-bench-") as cache:
        cold, answer, cold_err = first_answer(args, cache, opts.timeout)
        warm = [first_answer(args, cache, opts.timeout)[0] for _ in range(opts.repeats)]
    result = {
        "command": "python -m universalner " + shlex.join(args),
        "cold_s": round(cold, 2),
        "warm_s_median": round(statistics.median(warm), 2),
        "warm_s": [round(w, 2) for w in warm],
        "answer": json.loads(answer),
        "stderr_lines_cold": [x for x in cold_err.splitlines() if x.strip()],
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average_at_start": round(load, 2) if load is not None else None,
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
    }
    if opts.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    print(result["command"])
    print(f"cold (empty cache, GGUF converted): {result['cold_s']:.2f} s")
    print(f"warm (cached), median of {len(warm)}:   {result['warm_s_median']:.2f} s   {result['warm_s']}")
    print(f"{result['cpus']} CPUs, load average {result['load_average_at_start']} at the start")
    print("stderr of the cold run:", *(result["stderr_lines_cold"] or ["(nothing)"]), sep="\n  ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
