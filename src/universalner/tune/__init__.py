"""Conversation-style instruction tuning of a student: ``python -m universalner.tune``.

``data`` reads conversation JSON and supervised NER sets, ``collate`` turns conversations into
loss-masked token ids, ``train`` runs LoRA / QLoRA / full fine-tuning with checkpoints, and
``progress`` keeps the loss log and the loss curve, ``checkpoints`` finds where to resume and
``cache`` keeps the tokenised data; ``adapt`` (``--from``) teaches a LoRA student a user's own
annotated types.
"""

from .collate import Collator, Encoded, Encoder
from .data import DataError, Example, load_examples, read_conversations

__all__ = [
    "Collator",
    "DataError",
    "Encoded",
    "Encoder",
    "Example",
    "TuneConfig",
    "TuneResult",
    "load_examples",
    "read_conversations",
    "run",
]


def __getattr__(name: str):  # the training side imports torch/transformers: load it on first use
    if name in ("TuneConfig", "TuneResult", "run"):
        from . import train

        return getattr(train, name)
    raise AttributeError(name)
