"""What would distilling this corpus cost? Passages are split and sampled; no teacher is called.

python examples/distill_estimate.py [CORPUS.jsonl ...]     (default: ../shared/data/passages/*.jsonl)
"""

import sys
from pathlib import Path

from universalner.distill import DistillConfig, TeacherConfig, estimate, sample_passages

inputs = sys.argv[1:] or sorted(str(p) for p in Path("../shared/data/passages").glob("*.jsonl"))
if not inputs:
    sys.exit("pass .jsonl files with a 'text' field")

passages = sample_passages(inputs, passage_tokens=256, max_passages=1000, seed=0)
print(f"{len(passages)} passages, first one ({passages[0].tokens} tokens):\n  {passages[0].text[:160]!r}...")
for model in ("gpt-4o-mini", "gpt-3.5-turbo", "gpt-4o"):
    cfg = DistillConfig(inputs=inputs, output="unused", teacher=TeacherConfig(model=model))
    e = estimate(cfg, passages)
    per_1000 = e["usd"] / len(passages) * 1000
    print(
        f"{model:14} {e['prompt_tokens']:>9,} prompt tokens  ~${e['usd']:.3f} here, ~${per_1000:.3f} per 1,000 passages"
    )
