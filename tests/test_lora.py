"""The LoRA merge without peft, and the shipped student's merged weights kept on disk: bit for bit
what peft's ``merge_and_unload`` gives, the same answers, and peft wherever the merge is not plain.

Real weights throughout: the shipped student's adapter on the test model, compared with peft's merge.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from universalner.weights.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, merge_lora
from universalner.weights.shipped import DEFAULT_STUDENT, STUDENTS_DIR

pytestmark = pytest.mark.slow

STUDENT = STUDENTS_DIR / DEFAULT_STUDENT
SENTENCES = [
    ("Barack Obama met Emmanuel Macron in Paris.", ["person", "location"]),
    ("Tim Cook presented the iPhone 15 at Apple Park in Cupertino.", ["person", "product", "location"]),
    ("Patients with type 2 diabetes were treated with metformin.", ["disease", "drug"]),
]


def base(folder: Path, dtype=torch.float32):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)


def peft_merged(folder: Path, dtype=torch.float32):
    from peft import PeftModel

    return PeftModel.from_pretrained(base(folder, dtype), str(STUDENT)).merge_and_unload()


def same_weights(a, b) -> bool:
    pa = dict(a.named_parameters(remove_duplicate=False))
    pb = dict(b.named_parameters(remove_duplicate=False))
    ba, bb = dict(a.named_buffers()), dict(b.named_buffers())
    return (
        pa.keys() == pb.keys()
        and ba.keys() == bb.keys()
        and all(pa[k].dtype == pb[k].dtype and torch.equal(pa[k], pb[k]) for k in pa)
        and all(torch.equal(ba[k], bb[k]) for k in ba)
        and {p.requires_grad for p in pa.values()} == {p.requires_grad for p in pb.values()}
    )


@pytest.fixture(scope="module")
def reference(test_model_dir):
    return peft_merged(test_model_dir)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_own_merge_is_peft_merge_bit_for_bit(test_model_dir, reference, dtype):
    mine = base(test_model_dir, dtype)
    assert merge_lora(mine, STUDENT)
    assert same_weights(mine, reference if dtype == torch.float32 else peft_merged(test_model_dir, dtype))


def _adapter_copy(tmp_path: Path, config: dict | None = None, extra: dict | None = None) -> Path:
    folder = tmp_path / "adapter"
    folder.mkdir()
    cfg = json.loads((STUDENT / ADAPTER_CONFIG).read_text()) | (config or {})
    (folder / ADAPTER_CONFIG).write_text(json.dumps(cfg))
    if extra:
        from safetensors.torch import load_file, save_file

        save_file(load_file(str(STUDENT / ADAPTER_WEIGHTS)) | extra, str(folder / ADAPTER_WEIGHTS))
    else:
        shutil.copyfile(STUDENT / ADAPTER_WEIGHTS, folder / ADAPTER_WEIGHTS)
    return folder


@pytest.mark.parametrize(
    "config, extra",
    [
        ({"use_dora": True}, None),
        ({"use_rslora": True}, None),
        ({"rank_pattern": {"q_proj": 8}}, None),
        ({"modules_to_save": ["lm_head"]}, None),
        ({"a_setting_from_a_later_peft": 1}, None),
        ({"peft_type": "IA3"}, None),
        ({"r": 8}, None),  # does not match the weights
        (None, {"base_model.model.model.embed_tokens.lora_embedding_A": torch.zeros(16, 49152)}),
        (None, {"base_model.model.lm_head.lora_A.weight": torch.zeros(16, 576)}),  # lacks its B
    ],
    ids=["dora", "rslora", "rank_pattern", "modules_to_save", "unknown", "ia3", "r", "embedding", "half"],
)
def test_anything_but_a_plain_lora_is_left_to_peft_untouched(tmp_path, test_model_dir, config, extra):
    model = base(test_model_dir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert not merge_lora(model, _adapter_copy(tmp_path, config, extra))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_tied_weight_is_left_to_peft(tmp_path, test_model_dir):
    """SmolLM2 ties its output head to the input embedding: adding to one would change both."""
    from safetensors.torch import save_file

    folder = _adapter_copy(tmp_path)
    save_file(
        {
            "base_model.model.lm_head.lora_A.weight": torch.zeros(16, 576),
            "base_model.model.lm_head.lora_B.weight": torch.zeros(49152, 16),
        },
        str(folder / ADAPTER_WEIGHTS),
    )
    assert not merge_lora(base(test_model_dir), folder)


def test_the_kept_merged_student_answers_as_peft(tmp_path, monkeypatch, test_model_dir, reference):
    """First load: merged here and kept; second: read back; a damaged copy: merged and kept again."""
    from universalner import UniversalNER
    from universalner.attention import use_grouped_sdpa
    from universalner.engines.hf import HFEngine
    from universalner.weights.record import read_template_record

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "gguf").symlink_to(test_model_dir.parent.parent)  # the converted base, not converted again
    monkeypatch.setenv("UNIVERSALNER_CACHE", str(cache))
    tok = UniversalNER.from_pretrained(
        device="cpu", dtype="float32"
    ).engine.tokenizer  # the first load keeps it
    (slot,) = (cache / "merged").iterdir()  # one slot per student, base and dtype; one copy in it
    (kept,) = (p for p in slot.iterdir() if not p.name.startswith("."))
    assert (kept / "merged.json").is_file() and (kept / "model.safetensors").is_file()
    use_grouped_sdpa(reference)  # the attention HFEngine.load gives a CPU model: answers equal to the digit
    peft_ner = UniversalNER(HFEngine(reference, tok, "cpu"), record=read_template_record(STUDENT))
    want = [peft_ner.extract(text, labels) for text, labels in SENTENCES]
    assert any(want)

    again = UniversalNER.from_pretrained(device="cpu", dtype="float32")
    assert same_weights(again.engine.model, reference)
    assert [again.extract(text, labels) for text, labels in SENTENCES] == want

    weights = kept / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # cut short
    repaired = UniversalNER.from_pretrained(device="cpu", dtype="float32")
    assert same_weights(repaired.engine.model, reference)
    assert (kept / "merged.json").is_file() and weights.stat().st_size > 500_000_000  # kept whole again
    assert [repaired.extract(text, labels) for text, labels in SENTENCES] == want
