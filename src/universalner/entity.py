"""The public result type."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Entity:
    """One mention: ``text == source[start:end]`` always holds for the passage it came from.

    ``score`` is the model's confidence in the mention, from the probabilities of its tokens
    (1.0 where an engine reports none).
    """

    text: str
    label: str
    start: int
    end: int
    score: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)
