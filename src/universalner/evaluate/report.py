"""Per-type Markdown tables and ``metrics.json`` for a benchmark run."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from .metrics import Scores


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def type_table(official: Scores, strict: Scores, labels: list[str]) -> str:
    """One row per asked type: gold spans, official P/R/F1 (strings) and strict P/R/F1 (spans)."""
    lines = [
        "| type | gold | official P | official R | official F1 | strict P | strict R | strict F1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [(label, official.per_type.get(label), strict.per_type.get(label)) for label in labels]
    rows.append(("**micro**", official.micro, strict.micro))
    for label, o, s in rows:
        cells = [label, str(s.gold if s else 0)]
        for sc in (o, s):
            cells += [_pct(sc.precision), _pct(sc.recall), _pct(sc.f1)] if sc else ["-"] * 3
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_table(results: Mapping[str, Mapping]) -> str:
    """One row per data set and their average F1 (the paper reports the unweighted average)."""
    lines = [
        "| data set | sentences | official F1 | strict F1 | seconds | sentences/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['n_sentences']} | {_pct(r['official']['f1'])} | {_pct(r['strict']['f1'])} "
            f"| {r['seconds']:.1f} | {r['sentences_per_second']:.2f} |"
        )
    if len(results) > 1:
        n = len(results)
        off = sum(r["official"]["f1"] for r in results.values()) / n
        st = sum(r["strict"]["f1"] for r in results.values()) / n
        lines.append(f"| **average** | | {_pct(off)} | {_pct(st)} | | |")
    return "\n".join(lines)


def write_json(path: Path, data) -> None:
    """Write atomically, so a crash never leaves half a file behind."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
