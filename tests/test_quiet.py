"""The README's first command prints its answer and the library's own progress, nothing else.

Real processes on the real test model: a cold run (empty cache: the GGUF file is converted) says so
in one line; a warm run prints nothing on stderr; ``--verbose`` brings the other libraries back.
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
