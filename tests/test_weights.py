"""``weights/``: one rule to find a model and an adapter's base, the cache's one-copy slots (safe for
threads and processes), dtypes, and the LoRA merge into a GGUF file of more than one architecture."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from universalner.weights.cache import Slot
from universalner.weights.errors import ModelNotFoundError
from universalner.weights.resolve import Location, resolve
from universalner.weights.shipped import DEFAULT_STUDENT, STUDENTS_DIR


# --------------------------------------------------------------------------------- resolve
def test_a_shipped_name_means_the_shipped_student_even_beside_a_folder_of_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / DEFAULT_STUDENT).mkdir()
    (tmp_path / DEFAULT_STUDENT / "config.json").write_text("{}")
    got = resolve(DEFAULT_STUDENT)
    assert got == Location("adapter", STUDENTS_DIR / DEFAULT_STUDENT, shipped=True)
    assert resolve(f"./{DEFAULT_STUDENT}") == Location("folder", Path(DEFAULT_STUDENT))
    assert resolve(tmp_path / DEFAULT_STUDENT).kind == "folder"  # a Path is a path


def test_kinds_and_errors(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert resolve(tmp_path / "m.gguf") == Location("gguf", tmp_path / "m.gguf")
    assert resolve("someone/model") == Location("hub", "someone/model")
    with pytest.raises(ModelNotFoundError, match="GGUF file not found"):
        resolve(tmp_path / "gone.gguf")
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve(tmp_path)
    with pytest.raises(TypeError):
        resolve(3)  # type: ignore[arg-type]


def test_an_adapters_base_by_one_rule(tmp_path):
    (tmp_path / "base.gguf").write_bytes(b"GGUF")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    config = {
        "peft_type": "LORA",
        "r": 2,
        "lora_alpha": 4,
        "base_model_name_or_path": str(tmp_path / "base.gguf"),
    }
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    where = resolve(adapter)
    assert where == Location("adapter", adapter) and where.base() == Location("gguf", tmp_path / "base.gguf")
    config["base_model_name_or_path"] = str(tmp_path / "gone")
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelNotFoundError, match=f"the adapter {adapter} was trained on"):
        where.base()
    with pytest.raises(ValueError, match="only an adapter has a base"):
        Location("hub", "a/b").base()


def test_torch_dtypes_are_taken_as_transformers_takes_them():
    import torch

    from universalner.weights.hf import _torch_dtype

    assert _torch_dtype(torch.float32) is torch.float32 and _torch_dtype("bfloat16") is torch.bfloat16
    for bad in ("float64", torch.int8, "fp32", 32):
        with pytest.raises(ValueError, match="dtype must be"):
            _torch_dtype(bad)


# --------------------------------------------------------------------------------- the cache's slots
def _write_folder(text: str):
    def write(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / "a.txt").write_text(text)
        (tmp / "done").write_text("")

    return write


def _done(p: Path) -> bool:
    return (p / "done").is_file()


def test_a_slot_keeps_one_current_copy_and_spares_one_being_read(tmp_path, monkeypatch):
    monkeypatch.setattr(Slot, "GRACE", 0.0)
    old = Slot(tmp_path / "slot", "aaaa")
    assert old.put(_write_folder("old"), _done) == old.path
    new = Slot(tmp_path / "slot", "bbbb")
    with old.reading():  # another process reads the old copy: it stays
        new.put(_write_folder("new"), _done)
        assert _done(old.path) and _done(new.path)
    assert new.prune() == [old.path]  # unused now: removed
    assert sorted(p.name for p in (tmp_path / "slot").iterdir() if not p.name.endswith(".lock")) == ["bbbb"]
    assert (new.path / "a.txt").read_text() == "new"


def test_a_slot_spares_a_copy_used_lately(tmp_path):
    old = Slot(tmp_path / "slot", "aaaa")
    old.put(_write_folder("old"), _done)
    with old.reading():
        pass  # used a moment ago: its process may still open it
    Slot(tmp_path / "slot", "bbbb").put(_write_folder("new"), _done)
    assert _done(old.path)


def test_threads_writing_one_slot_leave_one_whole_copy(tmp_path):
    slot = Slot(tmp_path / "slot", "cccc")
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            assert Slot(tmp_path / "slot", "cccc").put(_write_folder(f"writer {i}"), _done) == slot.path
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _done(slot.path) and (slot.path / "a.txt").read_text().startswith("writer ")
    assert [p.name for p in (tmp_path / "slot").iterdir() if p.name.startswith(".tmp")] == []


def test_an_unwritable_cache_is_an_error_only_when_the_copy_is_required(tmp_path):
    def fail(tmp: Path) -> None:
        raise OSError("disk full")

    slot = Slot(tmp_path / "slot", "dddd")
    assert slot.put(fail, _done) is None
    with pytest.raises(OSError, match="disk full"):
        slot.put(fail, _done, required=True)


# --------------------------------------------------------------------------------- a LoRA into a GGUF base
HIDDEN, N_HEAD, N_KV = 64, 4, 2


def _tiny_gguf(path: Path, arch: str) -> dict[str, object]:
    """A random decoder layer written as llama.cpp names it; returns its tensors (rows, columns)."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(0)
    kv = HIDDEN // N_HEAD * N_KV
    tensors = {
        "token_embd.weight": rng.standard_normal((96, HIDDEN)),
        "blk.0.attn_norm.weight": np.ones(HIDDEN),
        "blk.0.attn_q.weight": rng.standard_normal((HIDDEN, HIDDEN)),
        "blk.0.attn_k.weight": rng.standard_normal((kv, HIDDEN)),
        "blk.0.attn_v.weight": rng.standard_normal((kv, HIDDEN)),
        "blk.0.attn_output.weight": rng.standard_normal((HIDDEN, HIDDEN)),
    }
    tensors = {k: v.astype(np.float32) for k, v in tensors.items()}
    w = gguf.GGUFWriter(str(path), arch)
    w.add_uint32(f"{arch}.attention.head_count", N_HEAD)
    w.add_uint32(f"{arch}.attention.head_count_kv", N_KV)
    for name, a in tensors.items():
        w.add_tensor(name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return tensors


def _adapter(folder: Path, base: Path, alpha: int = 4) -> dict[str, object]:
    """A plain LoRA (r=2) on q, k and v of layer 0, as peft writes it; returns the float32 updates."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(exist_ok=True)
    g = torch.Generator().manual_seed(1)
    kv = HIDDEN // N_HEAD * N_KV
    weights, deltas = {}, {}
    for module, rows, name in (
        ("q_proj", HIDDEN, "attn_q"),
        ("k_proj", kv, "attn_k"),
        ("v_proj", kv, "attn_v"),
    ):
        a, b = torch.randn(2, HIDDEN, generator=g), torch.randn(rows, 2, generator=g)
        key = f"base_model.model.model.layers.0.self_attn.{module}"
        weights[f"{key}.lora_A.weight"], weights[f"{key}.lora_B.weight"] = a, b
        deltas[name] = ((b @ a) * (alpha / 2)).numpy()
    save_file(weights, str(folder / "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "r": 2, "lora_alpha": alpha, "base_model_name_or_path": str(base),
              "task_type": "CAUSAL_LM", "target_modules": ["q_proj", "k_proj", "v_proj"]}  # fmt: skip
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return deltas


def _read(path: Path) -> dict[str, object]:
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(path))
    return {t.name: np.array(t.data).reshape([int(x) for x in reversed(t.shape)]) for t in reader.tensors}


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_the_merge_puts_q_and_k_rows_in_the_architectures_order(tmp_path, arch):
    import numpy as np

    from universalner.weights.merged_gguf import ROW_ORDER, _permute, merged_gguf

    base = _tiny_gguf(tmp_path / f"{arch}.gguf", arch)
    deltas = _adapter(tmp_path / "adapter", tmp_path / f"{arch}.gguf")
    got = _read(merged_gguf(tmp_path / "adapter", "f32", tmp_path / "merged.gguf"))
    heads = {"attn_q": N_HEAD, "attn_k": N_KV, "attn_v": None}
    for name, n in heads.items():
        delta = deltas[name]
        if ROW_ORDER[arch] and n is not None:  # llama.cpp's LLaMA files hold q/k rows permuted
            delta = _permute(delta, n)
        want = base[f"blk.0.{name}.weight"] + delta
        assert np.allclose(got[f"blk.0.{name}.weight"], want, atol=1e-5), (arch, name)
    assert np.array_equal(got["blk.0.attn_output.weight"], base["blk.0.attn_output.weight"])
    if arch == "qwen2":  # the LLaMA order would have put the update on the wrong rows
        wrong = base["blk.0.attn_q.weight"] + _permute(deltas["attn_q"], N_HEAD)
        assert not np.allclose(got["blk.0.attn_q.weight"], wrong, atol=1e-3)


def test_the_row_order_agrees_with_transformers_gguf_reader():
    """transformers undoes llama.cpp's q/k permutation exactly for the architectures ROW_ORDER permutes."""
    from transformers import modeling_gguf_pytorch_utils as reader

    from universalner.weights.merged_gguf import ROW_ORDER

    processors = getattr(reader, "TENSOR_PROCESSORS", None)
    if processors is None:
        pytest.skip("this transformers names its GGUF tensor processors differently")
    for arch, permuted in ROW_ORDER.items():
        proc = processors.get(arch)
        assert (proc is not None and "Llama" in proc.__name__) == permuted, arch


def test_an_architecture_of_unknown_row_order_is_refused(tmp_path):
    from universalner.weights.merged_gguf import merged_gguf

    _tiny_gguf(tmp_path / "other.gguf", "gpt2")
    _adapter(tmp_path / "adapter", tmp_path / "other.gguf")
    with pytest.raises(ValueError, match="q/k row order"):
        merged_gguf(tmp_path / "adapter", "f32", tmp_path / "merged.gguf")
    assert not (tmp_path / "merged.gguf").exists() and not list(tmp_path.glob(".merged.gguf*"))


def test_the_cached_merge_is_keyed_by_the_adapter_config_and_keeps_one_copy(tmp_path, monkeypatch):
    from universalner.weights.merged_gguf import merged_gguf

    monkeypatch.setenv("UNIVERSALNER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(Slot, "GRACE", 0.0)
    _tiny_gguf(tmp_path / "q.gguf", "qwen2")
    _adapter(tmp_path / "adapter", tmp_path / "q.gguf", alpha=4)
    first = merged_gguf(tmp_path / "adapter", "f32")
    assert merged_gguf(tmp_path / "adapter", "f32") == first
    _adapter(tmp_path / "adapter", tmp_path / "q.gguf", alpha=8)  # the same weights, another scale
    second = merged_gguf(tmp_path / "adapter", "f32")
    assert second != first and second.parent == first.parent
    assert not first.exists()  # the old copy, unused, is gone: one current copy per student and base
    a, b = _read(second), _read(tmp_path / "q.gguf")
    assert not (a["blk.0.attn_q.weight"] == b["blk.0.attn_q.weight"]).all()


# --------------------------------------------------------------------------------- loading
@pytest.mark.slow
def test_bf16_on_a_cpu_is_read_as_bf16_and_equals_the_float32_model_cast(
    tmp_path, test_model_dir, monkeypatch
):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    from universalner.weights import hf

    folder = tmp_path / "tiny"
    config = LlamaConfig(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    for f in test_model_dir.iterdir():  # the test model's tokenizer
        if f.name.startswith(("tokenizer", "special_tokens")):
            (folder / f.name).write_bytes(f.read_bytes())
    asked: list[object] = []
    real = AutoModelForCausalLM.from_pretrained

    def spy(*a, **kw):
        asked.append(kw.get("dtype"))
        return real(*a, **kw)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    got, _, _, _ = hf.load_model_and_tokenizer(folder, device="cpu", dtype=torch.bfloat16)
    assert asked == [torch.bfloat16]  # no float32 copy first
    want = real(str(folder), dtype=torch.float32).to(torch.bfloat16)
    a, b = dict(got.named_parameters()), dict(want.named_parameters())
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    a, b = dict(got.named_buffers()), dict(want.named_buffers())
    assert all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_threads_loading_the_shipped_student_share_one_merged_copy(tmp_path, test_model_dir, monkeypatch):
    """The merged copy is written under a unique name and renamed into place: threads (and processes)
    that load the student at once all get the same model and leave one whole copy."""
    import torch

    from universalner.weights.cache import cache_dir
    from universalner.weights.hf import has_merged, load_model_and_tokenizer

    real = cache_dir()
    monkeypatch.setenv("UNIVERSALNER_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    os.symlink(real / "gguf", tmp_path / "cache" / "gguf")  # the base's conversion, made once already
    (tmp_path / "cache" / "sha256.json").write_bytes((real / "sha256.json").read_bytes())
    results: dict[int, object] = {}
    errors: list[BaseException] = []

    def load(i: int) -> None:
        try:
            model, tok, _, records = load_model_and_tokenizer(DEFAULT_STUDENT, device="cpu")
            ids = tok("Text: Barack Obama met Emmanuel Macron in Paris.", return_tensors="pt").input_ids
            with torch.no_grad():
                results[i] = model(ids).logits
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(torch.equal(results[0], results[i]) for i in results)
    slots = list((tmp_path / "cache" / "merged").iterdir())
    assert len(slots) == 1
    copies = [p for p in slots[0].iterdir() if not p.name.startswith(".")]
    assert len(copies) == 1 and has_merged(copies[0])
    load(3)  # read from the copy now: the same numbers
    assert errors == [] and torch.equal(results[0], results[3])


@pytest.mark.slow
def test_processes_loading_the_shipped_student_at_once_share_one_merged_copy(tmp_path, test_model_dir):
    import subprocess
    import sys

    from universalner.weights.cache import cache_dir
    from universalner.weights.hf import has_merged

    real = cache_dir()
    (tmp_path / "cache").mkdir()
    os.symlink(real / "gguf", tmp_path / "cache" / "gguf")
    code = (
        "import hashlib, torch\n"
        "from universalner.weights.hf import load_model_and_tokenizer\n"
        "m, tok, _, _ = load_model_and_tokenizer('universalner-135m', device='cpu')\n"
        "ids = tok('Text: Barack Obama met Emmanuel Macron in Paris.', return_tensors='pt').input_ids\n"
        "with torch.no_grad():\n"
        "    print(hashlib.sha256(m(ids).logits.float().numpy().tobytes()).hexdigest())\n"
    )
    env = {**os.environ, "UNIVERSALNER_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert outs[0][0].split()[-1] == outs[1][0].split()[-1]
    (slot,) = (tmp_path / "cache" / "merged").iterdir()
    copies = [p for p in slot.iterdir() if not p.name.startswith(".")]
    assert len(copies) == 1 and has_merged(copies[0])
    assert not [p for p in slot.iterdir() if p.name.startswith(".tmp")]


@pytest.mark.slow
def test_the_merged_copy_kept_in_bf16_equals_the_float32_merge_rounded(tmp_path, test_model_dir, monkeypatch):
    """bf16 on a CPU: the merged student is kept at half the size, and reading it back gives the very
    weights of the float32 merge rounded once (what a first load computes)."""
    import torch

    from universalner.weights.cache import cache_dir
    from universalner.weights.hf import load_model_and_tokenizer

    real = cache_dir()
    monkeypatch.setenv("UNIVERSALNER_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    os.symlink(real / "gguf", tmp_path / "cache" / "gguf")
    first, _, _, _ = load_model_and_tokenizer(DEFAULT_STUDENT, device="cpu", dtype="bfloat16")
    (slot,) = (tmp_path / "cache" / "merged").iterdir()
    assert "bfloat16" in slot.name
    (copy,) = (p for p in slot.iterdir() if not p.name.startswith("."))
    assert (copy / "model.safetensors").stat().st_size < 300e6  # half of float32's 540 MB
    again, _, _, _ = load_model_and_tokenizer(DEFAULT_STUDENT, device="cpu", dtype="bfloat16")
    for a, b in (
        (first.named_parameters, again.named_parameters),
        (first.named_buffers, again.named_buffers),
    ):
        x, y = dict(a()), dict(b())
        assert x.keys() == y.keys() and all(x[k].dtype == y[k].dtype and torch.equal(x[k], y[k]) for k in x)


def test_special_tokens_come_from_the_gguf_header(test_gguf, test_model_dir):
    """transformers 5.17 reads SmolLM2's GGUF with <|im_start|> as eos; the converted folder must say
    what the file's header says (eos and pad <|im_end|>), whatever the transformers version."""
    from transformers import AutoTokenizer

    from universalner.weights.gguf import read_gguf_metadata, special_tokens_as_in_gguf

    meta = read_gguf_metadata(test_gguf, ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id"])
    tok = AutoTokenizer.from_pretrained(str(test_model_dir))
    assert tok.eos_token_id == meta["tokenizer.ggml.eos_token_id"] and tok.eos_token == "<|im_end|>"
    assert tok.pad_token_id == meta["tokenizer.ggml.padding_token_id"]
    tok.eos_token, tok.pad_token = "<|im_start|>", None  # as transformers 5.17 reads the file
    assert special_tokens_as_in_gguf(tok, meta) == ["eos_token", "pad_token"]
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|im_end|>")
    assert special_tokens_as_in_gguf(tok, meta) == []  # nothing left to mend
