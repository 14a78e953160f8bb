"""evaluate with thresholds: per-sentence types of a dev file, answers filtered by score, the sweep."""

from __future__ import annotations

import json

import pytest

from universalner.distill.convert import ConvertConfig, convert
from universalner.evaluate.__main__ import main as evaluate
from universalner.evaluate.dataset import load_eval_set
from universalner.evaluate.runner import thresholded_answer


def test_thresholded_answer():
    rec = {
        "raw": {"person": '["Ann", "Bob", "Zed"]'},
        "entities": [
            {"text": "Bob", "label": "person", "start": 9, "end": 12, "score": 0.9},
            {"text": "Ann", "label": "person", "start": 0, "end": 3, "score": 0.2},
            {"text": "Ann", "label": "person", "start": 20, "end": 23, "score": 0.2},
            {"text": "Paris", "label": "location", "start": 30, "end": 35, "score": 0.95},
        ],
    }
    assert thresholded_answer(rec, "person", 0.0) == '["Ann", "Bob", "Zed"]'  # raw, as the reference
    assert thresholded_answer(rec, "person", 0.1) == '["Ann", "Bob"]'  # placed mentions, in text order
    assert thresholded_answer(rec, "person", 0.5) == '["Bob"]'
    assert thresholded_answer(rec, "person", 0.99) == "[]"


@pytest.fixture(scope="module")
def dev_file(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("dev")
    pil = shared_data / "pilener"
    convert(ConvertConfig(str(pil / "pilener_391types.bio"), str(out), str(pil / "label.txt"), max_words=64,
                          dev_negatives=3))  # fmt: skip
    return out / "dev.json"


def test_each_sentence_is_asked_its_own_types(dev_file):
    ds = load_eval_set(dev_file, "pilener_dev").head(3)
    assert ds.asked is not None and len(ds.asked) == 3
    for i in range(3):
        assert ds.labels_of(i) == list(dict.fromkeys(r.label for r in ds.records if r.sentence == i))
    assert ds.labels_of(0) != ds.labels_of(1)


@pytest.mark.slow
def test_run_and_sweep(dev_file, test_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--data", f"pilener_dev={dev_file}", "--limit", "2"]
    rc = evaluate(["run", "--model", str(test_model_dir), *args, "--output", str(out), "--no-progress",
                   "--max-new-tokens", "16", "--list-threshold", "0.05"])  # fmt: skip
    assert rc == 0
    ds = load_eval_set(dev_file, "pilener_dev").head(2)
    preds = [json.loads(x) for x in (out / "pilener_dev" / "predictions.jsonl").read_text().splitlines()]
    for p in preds:  # the model was asked exactly the sentence's own types, nothing more
        assert list(p["raw"]) == ds.labels_of(p["sentence"])
    assert any(p["entities"] for p in preds)  # a low list threshold opens lists on the untuned model
    assert (
        json.loads((out / "pilener_dev" / "run.json").read_text())["model"]["options"]["list_threshold"]
        == 0.05
    )
    capsys.readouterr()
    assert evaluate(["sweep", "--output", str(out), *args, "--thresholds", "0,0.5,1"]) == 0
    sweep = json.loads((out / "sweep.json").read_text())
    assert [r["threshold"] for r in sweep["rows"]] == [0, 0.5, 1]
    assert sweep["best"]["f1"] == max(r["f1"] for r in sweep["rows"])
    assert sweep["rows"][-1]["precision"] == 0.0  # nothing scores above 1
    # a sweep over a run that is not finished says so
    assert evaluate(["sweep", "--output", str(out), "--data", f"pilener_dev={dev_file}", "--limit", "5"]) == 2
    assert "no stored answer" in capsys.readouterr().err
