"""The CPU paths of the transformers engine: int8 layers, bf16, and the default each student records.

Speed is measured by benchmarks/bench_cpu.py, not here; these tests check what the paths compute.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from universalner.weights.int8 import _int8_linear_class, quantize_linears


def _linear(n_in=64, n_out=48, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(n_in, n_out, bias=bias)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(n_out, n_in, generator=g) * 0.1)
        if bias:
            lin.bias.copy_(torch.randn(n_out, generator=g))
    return lin


def test_int8_linear_is_close_to_float32_and_each_row_is_its_own():
    lin = _linear()
    q = _int8_linear_class()(lin)
    x = torch.randn(5, 7, 64, generator=torch.Generator().manual_seed(1))
    x[0, 0] *= 50  # one loud token must not drown the others (per-token scales)
    want, got = lin(x).detach(), q(x)
    assert got.shape == want.shape and got.dtype == torch.float32
    err = (got - want).norm(dim=-1) / want.norm(dim=-1)
    assert err.max() < 0.03, err.max()
    alone = q(x[2:3, 4:5].clone())  # a row's result does not depend on what else is in the batch
    assert torch.equal(alone[0, 0], got[2, 4])


def test_int8_keeps_the_input_dtype_and_scales_in_float32():
    q = _int8_linear_class()(_linear(bias=False)).to(torch.bfloat16)
    assert q.weight_t.dtype == torch.int8 and q.weight_scale.dtype == torch.float32
    y = q(torch.randn(3, 64, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16 and y.shape == (3, 48)


def test_siblings_share_one_quantised_input_but_never_a_stale_one():
    block = torch.nn.Module()
    block.q, block.k, block.wide = _linear(64, 48, seed=2), _linear(64, 16, seed=3), _linear(48, 8, seed=4)
    plain = {n: getattr(block, n) for n in ("q", "k")}
    assert quantize_linears(block) == 3
    assert block.q.shared is block.k.shared and block.wide.shared is not block.q.shared
    x1, x2 = torch.randn(4, 64), torch.randn(4, 64)
    for x in (x1, x2, x1.clone()):  # a new tensor is quantised again, whatever it holds
        for name in ("q", "k"):
            err = (getattr(block, name)(x) - plain[name](x)).norm() / plain[name](x).norm()
            assert err < 0.03


def test_the_output_head_stays_floating_point(test_model_dir):
    from universalner.weights.hf import load_model_and_tokenizer

    lm, *_ = load_model_and_tokenizer(test_model_dir, quantization="int8", device="cpu")
    kinds = {type(m).__name__ for m in lm.modules()}
    assert "Int8Linear" in kinds and type(lm.get_output_embeddings()) is torch.nn.Linear
    assert lm.get_output_embeddings().weight.dtype == torch.float32  # the test model records no CPU choice


def test_int8_errors_are_clear(test_model_dir):
    from universalner import UniversalNER
    from universalner.weights.hf import quantization_config

    with pytest.raises(ValueError, match="CPU's int8 path"):  # checked before any GPU is looked for
        quantization_config("int8", "cuda:0")
    with pytest.raises(ValueError, match="quantization must be one of"):
        UniversalNER.from_pretrained(test_model_dir, quantization="int4")
    with pytest.raises(ValueError, match="dtype must be"):
        UniversalNER.from_pretrained(test_model_dir, dtype="int8")


@pytest.mark.slow
def test_the_cpu_choice_follows_the_record_and_the_hardware(tmp_path, monkeypatch):
    """bf16 recorded: taken where the CPU multiplies bf16 natively, refused (float32) where it does not."""
    from universalner.weights import hardware
    from universalner.weights.hf import cpu_choice

    (tmp_path / "universalner.json").write_text(json.dumps({"cpu": {"dtype": "bfloat16", "measured": "t"}}))
    for native, want in ((True, {"dtype": "bfloat16"}), (False, {})):
        monkeypatch.setattr(hardware, "cpu_has_bf16", lambda native=native: native)
        assert cpu_choice([tmp_path]) == want
    (tmp_path / "universalner.json").write_text(
        json.dumps({"cpu": {"quantization": "int8", "dtype": "float32"}})
    )
    assert cpu_choice([tmp_path]) == {"quantization": "int8", "dtype": "float32"}
    assert cpu_choice([tmp_path / "nothing"]) == {}


@pytest.mark.slow
def test_a_student_records_its_cpu_path(tmp_path, test_gguf):
    """The shipped student loads as its record says (bf16 where native); a copy whose record asks for
    int8 loads int8; an explicit dtype wins over the record; a model with no record stays float32."""
    from universalner import UniversalNER
    from universalner.weights.hardware import cpu_has_bf16
    from universalner.weights.shipped import DEFAULT_STUDENT, STUDENTS_DIR

    shipped = STUDENTS_DIR / DEFAULT_STUDENT
    record = json.loads((shipped / "universalner.json").read_text())
    assert record["cpu"]["dtype"] in ("bfloat16", "float32") and "F1" in record["cpu"]["measured"]
    ner = UniversalNER.from_pretrained(device="cpu")
    # from the record and the hardware (test_the_cpu_choice_follows_the_record_and_the_hardware)
    want = torch.bfloat16 if record["cpu"]["dtype"] == "bfloat16" and cpu_has_bf16() else torch.float32
    assert ner.engine.model.dtype == want
    ents = ner.extract("Barack Obama met Emmanuel Macron in Paris.", ["person", "location"])
    assert {(e.label, e.text) for e in ents} >= {("person", "Barack Obama"), ("person", "Emmanuel Macron")}
    assert UniversalNER.from_pretrained(dtype="float32").engine.model.dtype == torch.float32

    copy = tmp_path / "student"
    shutil.copytree(shipped, copy)
    rec = json.loads((copy / "universalner.json").read_text())
    rec["cpu"] = {"quantization": "int8", "dtype": "float32", "measured": "a test"}
    (copy / "universalner.json").write_text(json.dumps(rec))
    cfg = json.loads((copy / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(test_gguf)  # a tuned (not shipped) adapter names its base by path
    (copy / "adapter_config.json").write_text(json.dumps(cfg))
    lm = UniversalNER.from_pretrained(copy, device="cpu").engine.model
    assert any(type(m).__name__ == "Int8Linear" for m in lm.modules()) and lm.dtype == torch.float32
