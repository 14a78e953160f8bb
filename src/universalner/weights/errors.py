"""The error every weights room may raise: a model that cannot be loaded here, and what to do about it."""

from __future__ import annotations


class ModelNotFoundError(FileNotFoundError):
    """A model path or hub id that cannot be loaded here, with what to do about it."""
