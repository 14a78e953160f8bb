"""The training loss on the answer tokens only, with the output head applied only there.

The reference takes the loss on assistant turns only; the usual causal-LM forward still computes
the logits of every position (49k-wide for SmolLM2) and throws most of them away. Here the
decoder runs once, the hidden states of the positions that predict an answer token are picked,
and only they go through the head: the same loss, less work and memory.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .collate import IGNORE


def causal_lm(model: Any) -> Any:
    """The ``*ForCausalLM`` inside a peft wrapper (or the model itself)."""
    inner = model
    if hasattr(inner, "get_base_model"):
        inner = inner.get_base_model()
    return inner


def has_decoder_and_head(model: Any) -> bool:
    lm = causal_lm(model)
    return hasattr(lm, "model") and hasattr(lm, "lm_head") and hasattr(lm, "get_output_embeddings")


def answer_loss(model: Any, inputs: dict, num_items: Any = None, autocast_bf16: bool = False):
    """Sum of the answer tokens' cross-entropy over ``num_items`` (else their count), like HF's loss."""
    import torch
    import torch.nn.functional as F

    lm = causal_lm(model)
    labels = inputs["labels"]
    # the stock path gets autocast from accelerate's wrapper of ``forward``, which this call bypasses
    ctx = (
        torch.autocast(labels.device.type, dtype=torch.bfloat16)
        if autocast_bf16
        else contextlib.nullcontext()
    )
    with ctx:
        hidden = lm.model(
            input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask")
        ).last_hidden_state
        target = labels[:, 1:]
        keep = target != IGNORE
        logits = lm.lm_head(hidden[:, :-1][keep])
    loss = F.cross_entropy(logits.float(), target[keep], reduction="sum")
    denom = num_items if num_items is not None else keep.sum().clamp(min=1)
    return loss / denom
