"""The student merged into its GGUF base (``universalner.weights.merged_gguf``), the file llama.cpp runs.

The merge is checked without llama.cpp: transformers reads the merged float32 file, and its logits
must equal those of the student loaded the usual way (base dequantised, adapter merged by peft).
The quantised files are checked for what llama.cpp needs of them (types, metadata, cache reuse).
The llama.cpp engine's answers on the merged q8_0 student (the README sentence, agreement with the
float32 transformers student) are in test_engines_llamacpp.py; they need llama-cpp-python, so they skip
where it is not installed, CI included (benchmarks/run_llamacpp_tests.sh installs it and runs them).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from universalner.weights.merged_gguf import merged_gguf
from universalner.weights.shipped import DEFAULT_STUDENT, STUDENTS_DIR

pytestmark = pytest.mark.slow
FOLDER = STUDENTS_DIR / DEFAULT_STUDENT
TEXT = "Text: Barack Obama met Emmanuel Macron in Paris.\nWhat describes person in the text?"


def test_float32_merge_equals_the_student(tmp_path, test_gguf):
    import torch
    from transformers import AutoModelForCausalLM

    from universalner.weights.hf import load_model_and_tokenizer

    out = merged_gguf(FOLDER, "f32", tmp_path / "student-f32.gguf")
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=out.name)
    student, tok, _, _ = load_model_and_tokenizer(DEFAULT_STUDENT, device="cpu", dtype="float32")
    base = AutoModelForCausalLM.from_pretrained(str(test_gguf.parent), gguf_file=test_gguf.name)
    ids = tok(TEXT, return_tensors="pt").input_ids
    with torch.no_grad():
        want, got, plain = student(ids).logits, merged(ids).logits, base(ids).logits
    assert (want - plain).abs().max() > 1.0  # the adapter changes the model ...
    assert torch.allclose(got, want, atol=1e-4, rtol=0)  # ... and the merged file holds that change


def test_quantised_files_and_the_cache(tmp_path, test_gguf, monkeypatch):
    import gguf

    monkeypatch.setenv("UNIVERSALNER_CACHE", str(tmp_path / "cache"))
    first = merged_gguf(FOLDER, "q8_0")
    assert first.parent.parent == tmp_path / "cache" / "llamacpp"  # in the student's slot
    stamp = first.stat().st_mtime_ns
    assert merged_gguf(FOLDER, "q8_0") == first and first.stat().st_mtime_ns == stamp  # reused
    q4 = merged_gguf(FOLDER, "q4_0")
    assert q4 != first and not list(first.parent.glob("*.tmp*"))
    Q = gguf.GGMLQuantizationType
    for path, body in ((first, Q.Q8_0), (q4, Q.Q4_0)):
        reader = gguf.GGUFReader(str(path))
        types = {t.name: t.tensor_type for t in reader.tensors}
        assert types["blk.0.attn_q.weight"] == body and types["blk.29.ffn_down.weight"] == body
        assert types["token_embd.weight"] == Q.Q8_0  # the tied output head keeps 8 bits
        assert types["blk.0.attn_norm.weight"] == Q.F32
        assert "universalner-135m" in reader.fields["general.finetune"].contents()
        src = gguf.GGUFReader(str(test_gguf))
        assert (
            reader.fields["tokenizer.chat_template"].contents()
            == src.fields["tokenizer.chat_template"].contents()
        )
        assert len(reader.tensors) == len(src.tensors)


def test_command_line_and_its_errors(tmp_path, test_gguf):
    run = [sys.executable, "-m", "universalner.weights.merged_gguf"]
    out = subprocess.run([*run, DEFAULT_STUDENT, "--quant", "q4_0", "-o", str(tmp_path / "s.gguf")],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(tmp_path / "s.gguf") and (tmp_path / "s.gguf").stat().st_size > 50e6
    bad = subprocess.run(
        [*run, str(tmp_path), "-o", str(tmp_path / "x.gguf")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "not an adapter folder" in bad.stderr and "Traceback" not in bad.stderr
    folder = subprocess.run([*run, DEFAULT_STUDENT, "-o", str(tmp_path)], capture_output=True, text=True)
    assert folder.returncode == 2 and "is a folder" in folder.stderr
