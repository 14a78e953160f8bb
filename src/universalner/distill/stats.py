"""What the distilled data holds: counts, drops, tokens, cost, and how skewed the type distribution is.

The paper reports 45,889 passages, 240,725 entities and 13,020 types, with the top 1% of types
holding 74% of mentions; ``stats.json`` reports the same quantities for a run so they can be compared.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .build import BuildReport
from .passages import PassageStats
from .prices import PRICE_DATE, price_for
from .teacher import TeacherConfig, TeacherReport


def concentration(type_counts: Counter) -> dict[str, float]:
    """Share of all mentions held by the top 1% of types, the next 9%, and the remaining 90%."""
    counts = sorted(type_counts.values(), reverse=True)
    total = sum(counts)
    if not total:
        return {"top_1%": 0.0, "next_9%": 0.0, "remaining_90%": 0.0}
    n = len(counts)
    a = max(1, math.ceil(n * 0.01))
    b = max(a, math.ceil(n * 0.10))
    top, nxt = sum(counts[:a]), sum(counts[a:b])
    return {
        "top_1%": round(top / total, 4),
        "next_9%": round(nxt / total, 4),
        "remaining_90%": round((total - top - nxt) / total, 4),
    }


def make_stats(
    passage_stats: PassageStats | None, teacher: TeacherReport, build: BuildReport, cfg: TeacherConfig
) -> dict[str, Any]:
    price = price_for(cfg.model, cfg.price_in, cfg.price_out)
    answered = build.passages - build.unanswered
    per_1000 = teacher.cost_usd / answered * 1000 if teacher.cost_usd is not None and answered else None
    return {
        "passages": {
            **({k: v for k, v in asdict(passage_stats).items()} if passage_stats else {}),
            "asked": build.passages,
            "answered": answered,
            "unanswered": build.unanswered,
            "rejected_by_teacher": build.rejected,
            "unparseable": build.unparseable,
            "without_entities": build.without_entities,
            "in_train": build.conversations,
        },
        "entities": build.entities,
        "types": len(build.type_counts),
        "questions": build.questions,
        "negatives": build.negatives,
        "dropped": {"unparseable_answers": build.unparseable, **build.dropped},
        "tokens": {
            "prompt": teacher.prompt_tokens,
            "completion": teacher.completion_tokens,
            "total": teacher.prompt_tokens + teacher.completion_tokens,
            "per_passage": round((teacher.prompt_tokens + teacher.completion_tokens) / answered, 1)
            if answered
            else 0,
        },
        "cost": {
            "model": cfg.model,
            "usd_estimate": round(teacher.cost_usd, 6) if teacher.cost_usd is not None else None,
            "usd_per_1000_passages": round(per_1000, 4) if per_1000 is not None else None,
            "usd_per_million_tokens": list(price) if price else None,
            "price_date": PRICE_DATE if (cfg.price_in is None or cfg.price_out is None) else "given",
        },
        "type_concentration": concentration(build.type_counts),
        "top_types": build.type_counts.most_common(30),
    }


def plot_types(type_counts: Counter, path: str | os.PathLike, top: int = 25) -> Path | None:
    """Rank-frequency (log-log) and the most frequent types, as a PNG; None when there are no types."""
    if not type_counts:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranked = type_counts.most_common()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [1, 1.3]})
    ax1.loglog(range(1, len(ranked) + 1), [c for _, c in ranked], marker=".", linestyle="-", linewidth=1)
    ax1.set_xlabel("type rank")
    ax1.set_ylabel("mentions")
    ax1.set_title(f"{len(ranked)} types, {sum(type_counts.values())} mentions")
    ax1.grid(True, which="both", alpha=0.3)
    head = ranked[:top][::-1]
    ax2.barh([t if len(t) <= 40 else t[:37] + "..." for t, _ in head], [c for _, c in head])
    ax2.set_xlabel("mentions")
    ax2.set_title(f"top {len(head)} types")
    ax2.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
