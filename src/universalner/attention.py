"""Attention that reads grouped key/value heads in place, for models loaded on a CPU.

Models with grouped-query attention (SmolLM2: 9 query heads share 3 key/value heads) go through
transformers' SDPA, which copies every key and value head once per query head that reads it
(``repeat_kv``) whenever an attention mask is given, as on every call of the fast path. On a CPU those
copies of the whole cache, layer by layer and forward by forward, took about a sixth of the default
student's time. ``torch.nn.functional.scaled_dot_product_attention(..., enable_gqa=True)`` reads the
shared heads where they are; the products are the same, so answers are too (scores agree to 1e-5).
"""

from __future__ import annotations

import threading
from typing import Any

NAME = "universalner_sdpa"
_REGISTERED = threading.Lock()
_done = False


def grouped_sdpa(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers' SDPA attention (``integrations.sdpa_attention``) less the copied key/value heads."""
    import torch

    if kwargs.get("softcap") is not None or kwargs.get("position_bias") is not None:
        raise ValueError(f"{NAME} handles plain attention only (no softcap, no position bias)")
    q_len = query.shape[2]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(q_len > 1 and attention_mask is None and causal)
    if causal and key.shape[2] > q_len:  # as transformers does: the flash kernel wants a square causal block
        key, value = key[:, :, :q_len], value[:, :, :q_len]
    groups = getattr(module, "num_key_value_groups", 1)
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, is_causal=causal,
        enable_gqa=groups > 1,
    )  # fmt: skip
    return out.transpose(1, 2).contiguous(), None


def use_grouped_sdpa(model: Any) -> bool:
    """Switch ``model`` from SDPA to ``grouped_sdpa`` where that is safe: a grouped-query model on the CPU
    whose attention is plain SDPA. True when switched."""
    global _done
    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    heads, kv = getattr(config, "num_attention_heads", 0), getattr(config, "num_key_value_heads", 0)
    if not kv or heads == kv or getattr(model, "device", None) is None or model.device.type != "cpu":
        return False
    if getattr(config, "attn_logit_softcapping", None) or getattr(config, "sliding_window", None):
        return False
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    with _REGISTERED:
        if not _done:  # the attention, and SDPA's masks for it (an unknown name would get no mask at all)
            AttentionInterface.register(NAME, grouped_sdpa)
            AttentionMaskInterface.register(NAME, sdpa_mask)
            _done = True
    model.set_attn_implementation(NAME)
    return True
