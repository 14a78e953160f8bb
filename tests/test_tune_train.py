"""Training the real 135M test model for a few steps: LoRA learns, resumes, QLoRA and full run.

Kept tiny: eight short CrossNER sentences cut to 128 tokens (so most of the loss is on the first
answer after the passage, the one inference asks for), batch 2-4, one to six steps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from universalner import UniversalNER
from universalner.prompts import get_template, parse_answer
from universalner.tune.__main__ import build_parser, config_from_args
from universalner.tune.collate import Collator, Encoder
from universalner.tune.data import load_examples
from universalner.tune.progress import LOSS_LOG, read_log
from universalner.tune.train import TuneConfig, load_for_training, prepare_output, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_conll(shared_data, tmp_path_factory) -> Path:
    """The eight shortest annotated CrossNER politics training sentences, as a CoNLL file."""
    from universalner.corpora import read_conll

    sentences = [s for s in read_conll(shared_data / "crossner" / "politics" / "train.txt") if s.entities]
    chosen = sorted(sentences, key=lambda s: len(s.text))[:8]
    path = tmp_path_factory.mktemp("tune") / "politics_tiny.txt"
    path.write_text(
        "\n\n".join("\n".join(f"{t}\t{g}" for t, g in zip(s.tokens, s.tags, strict=True)) for s in chosen)
        + "\n"
    )
    return path


def small_config(base, out, data, **kw) -> TuneConfig:
    settings = dict(
        supervised=[("crossner_politics", str(data))], batch_size=2, grad_accum=1, max_length=128,
        logging_steps=1, lora_r=8, lora_alpha=16, warmup_ratio=0.0,
    )  # fmt: skip
    settings.update(kw)
    return TuneConfig(base_model=str(base), output=str(out), **settings)


def answer_loss(model, tok, cfg: TuneConfig) -> float:
    """Mean loss on the answer tokens of the training conversations, as the Trainer computes it."""
    import torch

    examples = load_examples([], cfg.supervised, cfg.seed)
    enc = Encoder(tok, get_template("chat", tok), cfg.max_length)
    feats = [
        {"input_ids": e.input_ids, "labels": e.labels}
        for e in map(enc.encode, (x.conversation for x in examples))
    ]
    with torch.no_grad():
        return float(model(**Collator(tok.pad_token_id)(feats)).loss)


def test_lora_lowers_the_loss_and_the_adapter_extracts(test_model_dir, tiny_conll, tmp_path, ner):
    cfg = small_config(
        test_model_dir, tmp_path / "lora", tiny_conll, max_steps=6, batch_size=4, lr=2e-3, save_steps=100
    )
    before = answer_loss(ner.engine.model, ner.engine.tokenizer, cfg)
    result = run(cfg)
    out = result.output
    assert result.global_step == 6 and result.examples == 8 and result.truncated == 8  # 8 questions > 128
    assert (out / "adapter_config.json").is_file() and (out / "tokenizer_config.json").is_file()
    assert json.loads((out / "universalner.json").read_text())["template"] == "chat"
    assert (out / "loss.png").stat().st_size > 1000
    logged = [r for r in read_log(out / LOSS_LOG) if "loss" in r]
    assert [r["step"] for r in logged] == [1, 2, 3, 4, 5, 6]

    student = UniversalNER.from_pretrained(test_model_dir, adapter=out, device="cpu", max_new_tokens=16)
    after = answer_loss(student.engine.model, student.engine.tokenizer, cfg)
    assert after < 0.7 * before, (before, after)
    assert student.template.layout == "chat"
    # asked unconstrained (constrained decoding forces a list whatever the weights): the untuned model
    # answers in prose, the student in the JSON lists it was trained on
    text = "Nigel Farage launched the Brexit Party in London ."
    labels = ["politician", "political party", "election"]
    (base,) = UniversalNER(ner.engine, max_new_tokens=16).predict([text], labels, constrained=False)
    (pred,) = student.predict([text], labels, constrained=False)
    for label in labels:
        assert not base.raw[label].lstrip().startswith("["), (label, base.raw[label])
        assert pred.raw[label].lstrip().startswith("["), (label, pred.raw[label])
        assert parse_answer(pred.raw[label]) == json.loads(pred.raw[label]), (label, pred.raw[label])
    for e in pred.entities:
        assert text[e.start : e.end] == e.text


def test_a_seeded_run_is_reproducible(test_model_dir, tiny_conll, tmp_path):
    """The same data, settings and seed on one machine: the same adapter, bit for bit, and the same
    losses (before, the LoRA matrices were initialised before anything was seeded)."""
    import torch
    from safetensors.torch import load_file

    runs = []
    for name in ("a", "b"):
        cfg = small_config(test_model_dir, tmp_path / name, tiny_conll, max_steps=2, lr=2e-3, save_steps=100)
        out = run(cfg).output
        losses = [r["loss"] for r in read_log(out / LOSS_LOG) if "loss" in r]
        runs.append((load_file(str(out / "adapter_model.safetensors")), losses))
    (a, la), (b, lb) = runs
    assert la == lb and len(la) == 2
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def tune_cli(*args):
    return [sys.executable, "-m", "universalner.tune", *map(str, args)]


def test_resume_after_kill_continues_from_the_checkpoint(test_model_dir, tiny_conll, tmp_path, capsys):
    out = tmp_path / "run"
    args = tune_cli(
        "--base-model", test_model_dir, "--supervised", f"crossner_politics={tiny_conll}", "--output", out,
        "--max-steps", 4, "--save-steps", 2, "--batch-size", 2, "--grad-accum", 1, "--max-length", 128,
        "--logging-steps", 1, "--lora-r", 4, "--template", "uniner",
    )  # fmt: skip
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    state = out / "checkpoint-2" / "trainer_state.json"
    deadline = time.time() + 240
    while not state.is_file() and first.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.2)  # the state file is written in one go; give it a moment to close
    os.kill(first.pid, signal.SIGKILL)
    log_first = first.communicate()[0]
    assert first.returncode == -signal.SIGKILL, log_first  # killed mid-run, not finished
    assert not (out / "adapter_config.json").is_file()

    again = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"resuming from {out / 'checkpoint-2'} (step 2)" in again.stderr
    assert f"tokenized data read from {out / 'tokenized.npz'}" in again.stderr  # not tokenised twice
    assert "trained 4 steps (resumed at step 2)" in again.stdout
    log = read_log(out / LOSS_LOG)
    resume = next(i for i, r in enumerate(log) if r.get("event") == "resume")
    assert log[resume]["step"] == 2
    assert [r["step"] for r in log[resume + 1 :] if "loss" in r] == [3, 4]  # steps 1-2 not trained again
    assert [r["step"] for r in log[:resume] if "loss" in r][:2] == [1, 2]
    assert json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())["global_step"] == 4
    assert (out / "adapter_config.json").is_file()
    # resuming a finished run trains nothing more (the Trainer alone would take one more step)
    (out / "adapter_model.safetensors").unlink()  # as if killed after the last checkpoint, before saving
    same = config_from_args(build_parser().parse_args(list(map(str, args[3:]))))
    done = run(replace(same, resume=True))
    assert (done.global_step, done.resumed_from) == (4, 4)
    assert "already finished at step 4" in capsys.readouterr().err
    assert (out / "adapter_model.safetensors").read_bytes() == (
        out / "checkpoint-4" / "adapter_model.safetensors"
    ).read_bytes()
    assert max(r["step"] for r in read_log(out / LOSS_LOG)) == 4
    # trained in the uniner layout (the chat model's own eos ends each answer): inference follows the
    # record; the adapter folder alone loads (its adapter_config names the base)
    student = UniversalNER.from_pretrained(out, device="cpu", max_new_tokens=4)
    assert student.template.layout == "uniner" and student.template.eos == "<|im_end|>"
    assert student.prompt("Rome .", "city").endswith("What describes city in the text? ASSISTANT:")
    # the same settings are required to resume; a run in the folder is not overwritten silently
    with pytest.raises(ValueError, match="--resume"):
        prepare_output(same)
    with pytest.raises(ValueError, match="seed: 0 -> 3"):
        prepare_output(replace(same, resume=True, seed=3))
    assert prepare_output(replace(same, resume=True, max_steps=8))[0] == 4  # training longer is fine


def test_qlora_trains_a_4bit_base(test_model_dir, tiny_conll, tmp_path):
    import bitsandbytes as bnb

    cfg = small_config(test_model_dir, tmp_path / "qlora", tiny_conll, method="qlora", max_steps=1)
    model, _ = load_for_training(cfg, test_model_dir)
    four_bit = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(four_bit) >= 30 and four_bit[0].weight.quant_state.quant_type == "nf4"
    assert any("lora_A" in n for n, p in model.named_parameters() if p.requires_grad)
    del model
    result = run(cfg)
    assert result.global_step == 1 and result.train_loss > 0
    assert json.loads((result.output / "universalner.json").read_text())["method"] == "qlora"
    assert (result.output / "adapter_model.safetensors").is_file()


def test_full_fine_tuning_saves_a_model(test_model_dir, tiny_conll, tmp_path):
    import torch
    from safetensors.torch import load_file

    cfg = small_config(test_model_dir, tmp_path / "full", tiny_conll, method="full", max_steps=1)
    result = run(cfg)
    out = result.output
    assert (out / "config.json").is_file() and not (out / "adapter_config.json").exists()
    tuned, base = load_file(out / "model.safetensors"), load_file(Path(test_model_dir) / "model.safetensors")
    changed = [k for k in base if k in tuned and not torch.equal(base[k], tuned[k])]
    assert len(changed) > 10  # one step at lr 2e-5 moved the weights
    student = UniversalNER.from_pretrained(out, device="cpu", max_new_tokens=4)
    assert student.template.layout == "chat" and student.record["method"] == "full"

    # the fine-tune as a LoRA adapter: at full rank its merge gives the tuned linear layers back
    from transformers import AutoModelForCausalLM

    from universalner.tune.extract import extract_lora
    from universalner.tune.extract import main as extract_main
    from universalner.weights.lora import merge_lora

    report = extract_lora(test_model_dir, out, tmp_path / "r576", rank=576)
    assert report["modules"] == 210 and report["max_relative_error"] < 1e-3
    assert 0 < report["share_of_change_outside_linear_layers"] < 1  # embeddings and norms moved too
    model = AutoModelForCausalLM.from_pretrained(test_model_dir, dtype=torch.float32)
    assert merge_lora(model, tmp_path / "r576")  # a plain LoRA: folded without peft
    merged = model.state_dict()
    for k in [k for k in changed if k.endswith("proj.weight")]:
        assert torch.allclose(merged[k], tuned[k].float(), atol=1e-5), k
    # a small rank loses some of the change and says how much; the adapter loads like any student
    small = extract_lora(test_model_dir, out, tmp_path / "r8", rank=8)
    assert 0 < small["mean_relative_error"] < 1
    adapted = UniversalNER.from_pretrained(tmp_path / "r8", device="cpu", max_new_tokens=4)
    assert adapted.record["extraction"]["rank"] == 8 and adapted.template.layout == "chat"
    # a folder that is not a full fine-tune gets one clear error, not a traceback
    assert (
        extract_main(
            ["--base", str(test_model_dir), "--full", str(tmp_path / "r8"), "--output", str(tmp_path / "x")]
        )
        == 2
    )
