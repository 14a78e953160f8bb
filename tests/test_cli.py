"""python -m universalner end to end, in a subprocess, on the real test model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def cli(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "universalner", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_text_and_file_with_resume(test_model_dir, tmp_path):
    r = cli(
        "--model",
        test_model_dir,
        "--labels",
        "person,location",
        "--max-new-tokens",
        "8",
        "Obama visited Paris.",
    )
    assert r.returncode == 0, r.stderr
    (line,) = r.stdout.strip().splitlines()
    obj = json.loads(line)
    assert obj["text"] == "Obama visited Paris."
    assert isinstance(obj["entities"], list)

    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps({"text": f"Sentence {i} about Rome."}) for i in range(3)) + "\n")
    out = tmp_path / "out.jsonl"
    out.write_text(
        json.dumps({"text": "Sentence 0 about Rome.", "entities": []}) + "\n"
    )  # an earlier run's work
    r = cli(
        "--model",
        test_model_dir,
        "--labels",
        "city",
        "--max-new-tokens",
        "4",
        "--input",
        src,
        "--output",
        out,
    )
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [row["text"] for row in rows] == [f"Sentence {i} about Rome." for i in range(3)]
    assert "passages" in r.stderr  # the progress bar


def test_cli_bad_input_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{not json\n')
    r = cli("--model", tmp_path, "--labels", "person", "--input", bad)
    assert r.returncode == 2 and f"{bad}:2" in r.stderr and "Traceback" not in r.stderr
    r = cli("--model", tmp_path, "--labels", " , ", "x")
    assert r.returncode == 2 and "--labels" in r.stderr
    r = cli("--model", tmp_path / "missing.gguf", "--labels", "person", "x")
    assert r.returncode == 2 and "not found" in r.stderr and "Traceback" not in r.stderr


def test_console_script_forwards_the_jobs():
    """``universalner JOB ...`` runs the job's own CLI: its help is the job's, word for word (the main
    parser's help only names the jobs), and arguments reach the job."""
    script = Path(sys.executable).with_name("universalner")  # the console script pip installed
    assert script.is_file(), script
    own_options = {
        "distill": "--teacher-model",
        "tune": "--base-model",
        "evaluate": "{run,sweep,score,convert}",
    }
    for job, option in own_options.items():
        own = subprocess.run(
            [sys.executable, "-m", f"universalner.{job}", "--help"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert own.returncode == 0, own.stderr
        assert own.stdout.startswith(f"usage: python -m universalner.{job} ") and option in own.stdout
        for cmd in ([sys.executable, "-m", "universalner", job, "--help"], [str(script), job, "--help"]):
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
            assert r.stdout == own.stdout, cmd
    # an argument error is the job's own (argparse exits 2 naming the job's program and option)
    r = subprocess.run([str(script), "tune", "--output", "x"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "python -m universalner.tune: error:" in r.stderr and "--base-model" in r.stderr


def test_cli_dtype_reaches_the_model(test_model_dir):
    """--dtype bfloat16 loads bf16 weights: the default student's scores from the CLI are those of the same
    student loaded in bf16 in Python, not float32's (which differ in their last digits at least)."""
    from universalner import UniversalNER

    text, labels = "Barack Obama met Emmanuel Macron in Paris.", ["person", "location"]
    r = cli("--dtype", "bfloat16", "--labels", ",".join(labels), text)
    assert r.returncode == 0, r.stderr
    got = [(e["text"], e["label"], e["score"]) for e in json.loads(r.stdout)["entities"]]
    want = {}
    for dtype in ("bfloat16", "float32"):
        ner = UniversalNER.from_pretrained(dtype=dtype)
        want[dtype] = [(e.text, e.label, e.score) for e in ner.extract(text, labels)]
    assert got == want["bfloat16"] and got
    assert [s for *_, s in got] != [s for *_, s in want["float32"]]
    r = cli("--model", test_model_dir, "--dtype", "int4", "--labels", "person", text)
    assert r.returncode == 2 and "--dtype" in r.stderr
