"""Targeted distillation: a teacher LLM annotates sampled passages; the answers become training data.

``python -m universalner.distill --input corpus.jsonl --output DIR`` or, from Python::

    from universalner.distill import DistillConfig, TeacherConfig, distill
    distill(DistillConfig(inputs=["corpus.jsonl"], output="DIR", teacher=TeacherConfig(model="gpt-4o-mini")))

Nothing here imports torch; ``openai``, ``datasets`` and ``matplotlib`` load only when used.
"""

from __future__ import annotations

from .build import BuildReport, NegativeSampler, conversations, filter_pairs, is_english, parse_tuples
from .lock import OutputInUse, output_lock
from .passages import CorpusError, Passage, PassageStats, read_passages, sample_passages, split_document
from .prices import PRICE_DATE, PRICES, estimate_cost
from .run import DistillConfig, DistillResult, distill, estimate
from .stats import concentration, plot_types
from .teacher import Journal, TeacherConfig, TeacherError, TeacherReport, run_teacher

__all__ = [
    "PRICES",
    "PRICE_DATE",
    "BuildReport",
    "CorpusError",
    "DistillConfig",
    "DistillResult",
    "Journal",
    "NegativeSampler",
    "OutputInUse",
    "Passage",
    "PassageStats",
    "TeacherConfig",
    "TeacherError",
    "TeacherReport",
    "concentration",
    "conversations",
    "distill",
    "estimate",
    "estimate_cost",
    "filter_pairs",
    "is_english",
    "output_lock",
    "parse_tuples",
    "plot_types",
    "read_passages",
    "run_teacher",
    "sample_passages",
    "split_document",
]
