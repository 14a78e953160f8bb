"""universalner: open-type named entity recognition with small instruction-tuned LLMs.

``UniversalNER`` is imported lazily so that ``distill`` and ``evaluate`` start without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .entity import Entity

__version__ = "0.1.0"
__all__ = ["Entity", "UniversalNER", "__version__"]

if TYPE_CHECKING:
    from .model import UniversalNER


def __getattr__(name: str):
    if name == "UniversalNER":
        from .model import UniversalNER

        return UniversalNER
    raise AttributeError(f"module 'universalner' has no attribute {name!r}")
