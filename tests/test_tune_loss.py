"""tune's fast step: the answer-only head gives the stock loss and gradients; bf16 and grouping are settings."""

from __future__ import annotations

import pytest

from universalner.prompts import Conversation, get_template
from universalner.tune.collate import Collator, Encoder
from universalner.tune.train import TuneConfig, load_for_training, training_arguments, use_bf16

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lora(test_model_dir):
    import torch

    torch.manual_seed(0)
    cfg = TuneConfig(str(test_model_dir), "unused", lora_r=8, lora_alpha=16)
    model, tok = load_for_training(cfg, test_model_dir)
    # a trained-looking adapter: B is zero at init, which would make every LoRA gradient path trivial
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    return model, tok


def batch(tok):
    enc = Encoder(tok, get_template("chat", tok), 256)
    convs = [
        Conversation("Barack Obama met Emmanuel Macron in Paris.", ["person", "location"],
                     ['["Barack Obama", "Emmanuel Macron"]', '["Paris"]']),
        Conversation("Metformin treats type 2 diabetes.", ["drug", "disease", "city"],
                     ['["Metformin"]', '["type 2 diabetes"]', "[]"]),
    ]  # fmt: skip
    feats = [{"input_ids": e.input_ids, "labels": e.labels} for e in map(enc.encode, convs)]
    return Collator(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)(feats)


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


def test_answer_loss_equals_stock_loss(lora):
    import torch

    from universalner.tune.loss import answer_loss

    model, tok = lora
    b = batch(tok)
    assert (b["attention_mask"] == 0).any()  # padding is present and must not count
    model.zero_grad()
    stock = model(**b).loss
    stock.backward()
    g_stock = grads(model)
    model.zero_grad()
    mine = answer_loss(model, b)
    mine.backward()
    g_mine = grads(model)
    assert torch.allclose(stock, mine, rtol=1e-5, atol=1e-6), (float(stock), float(mine))
    assert g_stock.keys() == g_mine.keys() and len(g_mine) > 10
    for n in g_stock:
        assert torch.allclose(g_stock[n], g_mine[n], rtol=1e-3, atol=1e-6), n
    # over an explicit item count (gradient accumulation), the sum is divided by that count
    n_items = int((b["labels"][:, 1:] != -100).sum())
    assert torch.allclose(answer_loss(model, b, num_items=2 * n_items), mine.detach() / 2, rtol=1e-5)


def test_bf16_autocast_loss_is_close(lora):
    import torch

    from universalner.tune.loss import answer_loss

    model, tok = lora
    b = batch(tok)
    with torch.no_grad():
        full, half = answer_loss(model, b), answer_loss(model, b, autocast_bf16=True)
    assert abs(float(full) - float(half)) < 0.05 * float(full)


def test_precision_and_grouping_settings(tmp_path, monkeypatch):
    from universalner.weights import hardware

    base = dict(base_model="m", output=str(tmp_path), data=["x.json"])
    assert use_bf16(TuneConfig(**base, bf16="off")) is False
    assert use_bf16(TuneConfig(**base, bf16="on")) is True
    for native in (True, False):  # no GPU here: the CPU decides
        monkeypatch.setattr(hardware, "cpu_has_bf16", lambda native=native: native)
        assert use_bf16(TuneConfig(**base)) is native
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: True)
    assert use_bf16(TuneConfig(**base, method="qlora")) is False
    with pytest.raises(ValueError, match="--bf16"):
        TuneConfig(**base, bf16="maybe").check()
    args = training_arguments(TuneConfig(**base, bf16="off"))
    strategy = getattr(args, "train_sampling_strategy", None) or (
        "group_by_length" if args.group_by_length else ""
    )
    assert strategy == "group_by_length"
    args = training_arguments(TuneConfig(**base, bf16="off", group_by_length=False))
    strategy = getattr(args, "train_sampling_strategy", None) or (
        "group_by_length" if args.group_by_length else "random"
    )
    assert strategy == "random"
    assert TuneConfig(**base).lora_dropout == 0.0
