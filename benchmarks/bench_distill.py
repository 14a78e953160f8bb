"""Teacher throughput: ``--concurrency 32`` against ``--concurrency 1`` in one run, ratio printed.

200 passages from ../shared/data/passages, a loopback chat-completions teacher (tests/teacher_server.py,
in its own process) that takes 100 ms per answer. The goal is >= 20x; the ceiling is 200 / ceil(200/32)
= 28.6x, since the last of 7 waves is partly empty.

The two paths are the same ``run_teacher`` call with ``concurrency=32`` (32 requests in flight) and
``concurrency=1`` (one at a time). Both are warmed up first (imports, the client's connection pool),
then each runs ``--repeat`` times, in alternating order so that a change in the machine's load falls
on both; the speed-up is the ratio of their medians (each side's best run is printed too).

    python benchmarks/bench_distill.py [--passages 200] [--latency 0.1] [--concurrency 32] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from universalner.distill import TeacherConfig, run_teacher, sample_passages
from universalner.distill.passages import Passage

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "passages"


def passages(n: int) -> list[Passage]:
    files = sorted(DATA.glob("*.jsonl"))
    if files:
        return sample_passages(files, max_passages=n, seed=0)
    words = "Ada Lovelace wrote notes on the Analytical Engine in London in 1843 .".split()
    return [Passage(f"p{i}", " ".join(words[i % 5 :] + [str(i)]), 12, "synthetic") for i in range(n)]


def timed(ps: list[Passage], url: str, concurrency: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        cfg = TeacherConfig(model="gpt-3.5-turbo", base_url=url, api_key="bench", concurrency=concurrency)
        t0 = time.perf_counter()
        report = run_teacher(ps, Path(d) / "teacher.jsonl", cfg, progress=False)
        elapsed = time.perf_counter() - t0
    assert report.answered == len(ps), report
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--passages", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each side (the medians count)")
    args = ap.parse_args()
    ps = passages(args.passages)
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "teacher_server.py"), "--latency", str(args.latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().strip()
        timed(ps[:4], url, 1)  # warm-up of both sides: imports, connections
        timed(ps[: 2 * args.concurrency], url, args.concurrency)
        fasts: list[float] = []
        slows: list[float] = []
        for r in range(max(1, args.repeat)):
            order = [(fasts, args.concurrency), (slows, 1)]
            for runs, concurrency in order if r % 2 == 0 else order[::-1]:
                runs.append(timed(ps, url, concurrency))
    finally:
        server.terminate()
        server.wait()
    n = len(ps)
    fast, slow = statistics.median(fasts), statistics.median(slows)

    def line(concurrency: int, runs: list[float], med: float) -> str:
        each = ", ".join(f"{t:.2f}" for t in runs)
        return (
            f"concurrency {concurrency:>2}: {med:6.2f} s  {n / med:7.1f} passages/s"
            f"  (median of {each} s; best {min(runs):.2f})"
        )

    print(f"{n} passages, teacher latency {args.latency * 1000:.0f} ms (loopback, tests/teacher_server.py)")
    print(line(args.concurrency, fasts, fast))
    print(line(1, slows, slow))
    print(
        f"speed-up: {slow / fast:.1f}x of the medians, {min(slows) / min(fasts):.1f}x of the best runs "
        f"(goal >= 20x; ceiling {n / -(-n // args.concurrency):.1f}x)"
    )


if __name__ == "__main__":
    main()
