"""evaluate run: the real test model on a few real sentences, killed with -9 and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from universalner.evaluate import load_eval_set
from universalner.evaluate.__main__ import main
from universalner.evaluate.runner import predict_set, read_predictions

pytestmark = pytest.mark.slow


def test_run_kill_resume_and_score(test_model_dir, shared_data, tmp_path, capsys):
    data = shared_data / "ncbi_disease" / "test.tsv"
    out = tmp_path / "run"
    args = [
        "run",
        "--model",
        str(test_model_dir),
        "--data",
        f"ncbi={data}",
        "--output",
        str(out),
        "--limit",
        "2",
        "--batch-size",
        "1",
        "--max-new-tokens",
        "4",
        "--device",
        "cpu",
        "--unconstrained",  # free decoding, as the reference (and quicker on this CPU)
        "--no-progress",
    ]
    preds = out / "ncbi" / "predictions.jsonl"

    # kill -9 as soon as the first sentence is on disk
    proc = subprocess.Popen(
        [sys.executable, "-m", "universalner.evaluate", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if preds.exists() and preds.read_bytes().count(b"\n") >= 1:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    first = preds.read_bytes().split(b"\n")[0]
    with open(preds, "ab") as f:  # what a kill in the middle of a write leaves
        f.write(b'{"sentence": 1, "te')

    assert main(args) == 0
    report = capsys.readouterr().out
    lines = preds.read_bytes().splitlines()
    assert lines[0] == first  # not recomputed (its timing would differ)
    assert sorted(json.loads(x)["sentence"] for x in lines) == [0, 1]
    ds = load_eval_set(data, "ncbi").head(2)
    done = read_predictions(preds)
    for i, s in enumerate(ds.sentences):
        assert done[i]["text"] == s.text and set(done[i]["raw"]) == {"disease"}
        assert all(s.text[e["start"] : e["end"]] == e["text"] for e in done[i]["entities"])

    metrics = json.loads((out / "metrics.json").read_text())["sets"]["ncbi"]
    assert metrics["n_sentences"] == 2 and metrics["n_records"] == 2 and metrics["labels"] == ["disease"]
    assert metrics["strict"]["gold"] == sum(len(s.entities) for s in ds.sentences)
    assert metrics["seconds"] > 0
    assert "| disease |" in report and "| ncbi | 2 |" in report

    # `score` on the files run wrote gives the same official numbers
    assert (
        main(
            [
                "score",
                "--gold",
                str(out / "ncbi" / "gold.json"),
                "--predictions",
                str(out / "ncbi" / "outputs.jsonl"),
            ]
        )
        == 0
    )
    scored = json.loads(capsys.readouterr().out.splitlines()[-1])
    for k in ("precision", "recall", "f1", "correct", "predicted", "gold"):
        assert scored[k] == metrics["official"][k]

    # everything on disk: no model is loaded again
    predict_set(ds, out / "ncbi", get_model=lambda: pytest.fail("the model was loaded again"))
    # other settings in the same folder: a clear refusal, not a silent mix
    assert main([*args[:-1], "--template", "uniner"]) == 2
    err = capsys.readouterr().err
    assert "holds predictions made with other settings or weights" in err and "model.template" in err
