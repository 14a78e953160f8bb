"""The README's first command prints its answer and the library's own progress, nothing else.

Real processes on the real test model: a cold run (empty cache: the GGUF file is converted) says so
in one line; a warm run prints nothing on stderr; ``--verbose`` brings the other libraries back. The
``evaluate`` and ``tune`` command lines are as quiet.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

TEXT = "Barack Obama met Emmanuel Macron in Paris."


def run(gguf, cache, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TRANSFORMERS_VERBOSITY", "PYTHONWARNINGS")}
    env["UNIVERSALNER_CACHE"] = str(cache)
    cmd = [sys.executable, "-m", "universalner", "--model", str(gguf), "--labels", "person,location", *extra]
    return subprocess.run([*cmd, TEXT], capture_output=True, text=True, env=env, timeout=900)


def test_first_run_says_one_line_and_later_runs_nothing(test_gguf, tmp_path):
    cold = run(test_gguf, tmp_path)
    assert cold.returncode == 0, cold.stderr
    (line,) = cold.stdout.splitlines()
    assert json.loads(line)["text"] == TEXT
    (said,) = cold.stderr.splitlines()  # no bars, no FutureWarning: one line
    assert said.startswith(f"universalner: converting {test_gguf.name} into a transformers folder, once")
    assert str(tmp_path / "gguf") in said

    warm = run(test_gguf, tmp_path)
    assert warm.returncode == 0 and warm.stderr == "", warm.stderr
    assert warm.stdout == cold.stdout

    loud = run(test_gguf, tmp_path, "--verbose")
    assert loud.returncode == 0 and loud.stdout == cold.stdout
    assert "Loading weights" in loud.stderr  # transformers' own bar is back


def test_four_bit_run_has_no_bitsandbytes_note(test_model_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRANSFORMERS_VERBOSITY"}
    cmd = [sys.executable, "-m", "universalner", "--model", str(test_model_dir), "--labels", "person"]
    cmd += ["--quantization", "4bit", "--max-new-tokens", "8", TEXT]
    got = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert got.returncode == 0, got.stderr
    assert got.stderr == "", got.stderr  # e.g. "Failed to load CPU gemm_4bit_forward from kernels-community"
    assert json.loads(got.stdout)["text"] == TEXT


GOLD = "Obama\tB-person\nvisited\tO\nParis\tB-location\n.\tO\n"
NOISE = ("Loading weights", "Warning", "Failed to load", "kernels-community")  # other libraries' logs


def job(module: str, *argv) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TRANSFORMERS_VERBOSITY", "PYTHONWARNINGS")}
    cmd = [sys.executable, "-m", module, *map(str, argv)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


def test_evaluate_run_is_quiet_and_verbose_brings_the_rest_back(test_model_dir, tmp_path):
    gold = tmp_path / "gold.txt"
    gold.write_text(GOLD)
    args = ["--model", test_model_dir, "--data", f"x={gold}", "--no-progress", "--max-new-tokens", "16"]
    quiet = job("universalner.evaluate", "run", *args, "--output", tmp_path / "a")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "", quiet.stderr
    loud = job("universalner.evaluate", "run", *args, "--output", tmp_path / "b", "--verbose")
    assert loud.returncode == 0, loud.stderr
    assert "Loading weights" in loud.stderr
    answers = [(tmp_path / k / "x" / "outputs.jsonl").read_text() for k in "ab"]
    assert answers[0] == answers[1]


def test_tune_is_quiet_and_verbose_brings_the_rest_back(test_model_dir, tmp_path, conversations):
    args = ["--base-model", test_model_dir, "--data", conversations, "--max-steps", "1", "--batch-size", "1"]
    args += ["--grad-accum", "1", "--max-length", "128"]
    quiet = job("universalner.tune", *args, "--output", tmp_path / "a")
    assert quiet.returncode == 0, quiet.stderr
    assert "tune: saved the adapter" in quiet.stderr  # its own progress stays
    assert not [n for n in NOISE if n in quiet.stderr], quiet.stderr
    loud = job("universalner.tune", *args, "--output", tmp_path / "b", "--verbose")
    assert loud.returncode == 0, loud.stderr
    assert "Loading weights" in loud.stderr


def test_library_loads_quietly_and_verbose_brings_the_bar_back(test_model_dir):
    """``UniversalNER.from_pretrained`` in a script: no "Loading weights" bar, transformers' settings kept."""
    script = f"""
import sys
from transformers.utils import logging as hf_logging
from universalner import UniversalNER
before = hf_logging.get_verbosity()
UniversalNER.from_pretrained({str(test_model_dir)!r}, device="cpu")
print("after quiet", before == hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled(), flush=True)
sys.stderr.write("=====\\n"); sys.stderr.flush()
UniversalNER.from_pretrained({str(test_model_dir)!r}, device="cpu", verbose=True)
"""
    env = {k: v for k, v in os.environ.items() if k not in ("TRANSFORMERS_VERBOSITY", "PYTHONWARNINGS")}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=900
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "after quiet True True"
    quiet, loud = done.stderr.split("=====\n")
    assert "Loading weights" not in quiet and quiet.strip() == "", quiet
    assert "Loading weights" in loud
