"""A resumed evaluation never mixes answers made by other weights, adapters or recorded settings.

No model is loaded: a stand-in answers, and counts how often it is loaded (a resume that reuses
stored answers loads nothing).
"""

from __future__ import annotations

import json

import pytest

from universalner.evaluate import load_eval_set
from universalner.evaluate.runner import ModelSpec, ResumeMismatch, run_benchmark
from universalner.model import Prediction


class _Stand(ModelSpec):
    loads = 0

    def load(self):
        type(self).loads += 1

        class Model:
            def predict(self, texts, labels, **kw):
                return [Prediction(t, [], {label: "[]" for label in labels}) for t in texts]

        return Model()


@pytest.fixture
def setup(shared_data, tmp_path):
    ds = load_eval_set(shared_data / "ncbi_disease" / "test.tsv", "ncbi").head(2)
    student = tmp_path / "student"
    student.mkdir()
    (student / "config.json").write_text('{"model_type": "llama"}')
    (student / "model.safetensors").write_bytes(b"weights v1")
    (student / "universalner.json").write_text(json.dumps({"list_threshold": 0.4, "template": "chat"}))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"lora v1")
    return ds, student, adapter, tmp_path / "run"


def _run(ds, student, adapter, out, **options):
    spec = _Stand(str(student), device="cpu", adapter=str(adapter), options=options)
    return run_benchmark([ds], spec, out, progress=False, threshold=0.0)


def test_a_resume_reuses_answers_only_from_the_same_weights_and_record(setup):
    ds, student, adapter, out = setup
    _Stand.loads = 0
    _run(ds, student, adapter, out)
    _run(ds, student, adapter, out)  # nothing changed: the stored answers are reused
    assert _Stand.loads == 1
    run = json.loads((out / "ncbi" / "run.json").read_text())
    assert run["answers"]["list_threshold"] == 0.4 and run["answers"]["dtype"] == "float32"

    changes = [
        ("answers.adapter_files", lambda: (adapter / "adapter_model.safetensors").write_bytes(b"lora v2")),
        ("answers.model_files", lambda: (student / "model.safetensors").write_bytes(b"weights v2")),
        (
            "answers.list_threshold",
            lambda: (student / "universalner.json").write_text(json.dumps({"list_threshold": 0.3})),
        ),
    ]
    for key, change in changes:
        change()
        with pytest.raises(ResumeMismatch, match=key.replace(".", r"\.")):
            _run(ds, student, adapter, out)
    assert _Stand.loads == 1  # refused before any model was loaded, stored answers untouched
    # an explicit option that changes answers is part of it too
    with pytest.raises(ResumeMismatch, match="list_threshold"):
        _run(ds, student, adapter, out, list_threshold=0.2)


def test_the_cpu_path_the_record_picks_is_part_of_the_fingerprint(setup):
    from universalner.evaluate.fingerprint import answer_fingerprint

    ds, student, adapter, out = setup
    spec = ModelSpec(str(student), device="cpu")
    before = answer_fingerprint(spec)
    rec = json.loads((student / "universalner.json").read_text())
    rec["cpu"] = {"quantization": "int8", "dtype": "float32", "measured": "a test"}
    (student / "universalner.json").write_text(json.dumps(rec))
    after = answer_fingerprint(spec)
    assert (before["quantization"], after["quantization"]) == (None, "int8")


def test_a_served_model_is_named_not_read():
    """engine='openai': the model is a name on a server, never a path to hash."""
    from universalner.evaluate.fingerprint import answer_fingerprint

    got = answer_fingerprint(ModelSpec("uniner-served", engine="openai", options={"list_threshold": 0.3}))
    assert got["list_threshold"] == 0.3 and "served" in got
