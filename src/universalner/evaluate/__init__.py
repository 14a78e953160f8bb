"""The benchmark: data loaders, the official UniNER metric, strict span F1, reports.

Importing this package never imports torch; only ``run`` loads a model.
"""

from ..corpora import DataFormatError, Record, Sentence, decode_tags, read_conll, read_reference_json
from ..corpora.conversations import (
    eval_records,
    load_supervised,
    records_to_reference,
    sentences_to_conversations,
)
from ..corpora.labels import BUILTIN, asked_labels, label_map_for, read_label_maps
from .dataset import EvalSet, load_eval_set
from .metrics import PRF, Scores, normalize_answer, official_parse, official_scores, strict_scores

__all__ = [
    "BUILTIN",
    "PRF",
    "DataFormatError",
    "EvalSet",
    "Record",
    "Scores",
    "Sentence",
    "asked_labels",
    "decode_tags",
    "eval_records",
    "label_map_for",
    "load_eval_set",
    "load_supervised",
    "normalize_answer",
    "official_parse",
    "official_scores",
    "read_conll",
    "read_label_maps",
    "read_reference_json",
    "records_to_reference",
    "sentences_to_conversations",
    "strict_scores",
]
