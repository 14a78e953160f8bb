"""Folding a plain LoRA adapter into its base model without peft: the merge arithmetic, nothing else.

Importing peft costs about a second on a CPU (it pulls in bitsandbytes, which compiles kernels with
torch inductor at import), and ``PeftModel.from_pretrained`` + ``merge_and_unload`` about another,
to compute what is, for a plain LoRA adapter, one product per layer: ``W += (B @ A) * lora_alpha / r``.
``merge_lora`` computes exactly that, in peft's order and dtypes (the LoRA factors in float32, as
peft keeps them, the product added to the weight in place), so the merged weights are bit for bit
peft's. Anything else an adapter may hold (DoRA, rsLoRA, per-module ranks, extra trained modules,
biases, tied weights, a flag this code does not know) is left to peft: ``merge_lora`` then returns
False and changes nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# settings that do not change a merge: how the adapter was made or named, or which modules it covers
# (read from the weights themselves). Any other setting with a value is left to peft.
_HARMLESS = {
    "base_model_name_or_path", "revision", "task_type", "inference_mode", "peft_version", "peft_type",
    "auto_mapping", "init_lora_weights", "lora_dropout", "target_modules", "exclude_modules",
    "layers_to_transform", "layers_pattern", "r", "lora_alpha", "megatron_config", "megatron_core",
    "loftq_config", "eva_config", "corda_config", "lora_ga_config", "qalora_group_size", "bias",
}  # fmt: skip
_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<ab>[AB])\.weight$")


def _plain(config: dict[str, Any]) -> bool:
    """A LoRA adapter whose merge is one scaled product per module, nothing else."""
    if config.get("peft_type") != "LORA" or config.get("bias", "none") != "none":
        return False
    if not isinstance(config.get("r"), int) or not isinstance(config.get("lora_alpha"), (int, float)):
        return False
    return not any(value for key, value in config.items() if key not in _HARMLESS)


def plain_factors(adapter: Path) -> tuple[float, int, dict[str, dict[str, Any]]] | None:
    """(scale, r, {module name: {"A": tensor, "B": tensor}}) of a plain LoRA adapter folder, or None
    where its merge is more than ``W += (B @ A) * scale`` (then peft's business)."""
    adapter = Path(adapter)
    try:
        config = json.loads((adapter / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    weights = adapter / ADAPTER_WEIGHTS
    if not isinstance(config, dict) or not _plain(config) or not weights.is_file():
        return None
    from safetensors import safe_open

    factors: dict[str, dict[str, Any]] = {}
    with safe_open(str(weights), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 - safe_open is not a mapping
            m = _KEY.match(key)
            if m is None:  # embeddings, extra modules, biases, magnitudes: peft's
                return None
            factors.setdefault(m["module"], {})[m["ab"]] = f.get_tensor(key)
    if any(set(ab) != {"A", "B"} for ab in factors.values()):
        return None
    return config["lora_alpha"] / config["r"], config["r"], factors


def merge_lora(model: Any, adapter: Path) -> bool:
    """Fold the LoRA adapter in folder ``adapter`` into ``model`` in place, as peft's
    ``merge_and_unload`` would; False (and ``model`` untouched) where peft must do it."""
    import torch

    plain = plain_factors(adapter)
    if plain is None:
        return False
    scale, r, factors = plain
    shared = _tied_weights(model)
    plan = []
    for name, ab in factors.items():
        try:
            module = model.get_submodule(name)
        except AttributeError:
            return False
        if type(module) is not torch.nn.Linear or id(module.weight) in shared:
            return False
        a, b, w = ab["A"], ab["B"], module.weight
        if a.shape[0] != r or (b.shape[0], a.shape[1]) != tuple(w.shape):
            return False
        if not (a.is_floating_point() and b.is_floating_point() and w.is_floating_point()):
            return False
        plan.append((w, a, b))
    buffers: dict[tuple[Any, ...], Any] = {}  # one product buffer per shape: fresh memory costs page faults
    with torch.no_grad():
        for w, a, b in plan:  # peft: factors in float32, the product computed beside the weight
            a = a.to(device=w.device, dtype=torch.float32)
            b = b.to(device=w.device, dtype=torch.float32)
            key = (w.device, tuple(w.shape))
            delta = buffers.get(key)
            if delta is None:
                delta = buffers[key] = torch.empty(w.shape, dtype=torch.float32, device=w.device)
            torch.matmul(b, a, out=delta)
            delta.mul_(scale)
            w.data += delta
    model.requires_grad_(False)  # as peft leaves an inference-mode adapter's base
    return True


def _tied_weights(model: Any) -> set[int]:
    """ids of parameters that more than one module uses (an input embedding tied to the output head)."""
    seen: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        seen[id(p)] = seen.get(id(p), 0) + 1
    return {k for k, n in seen.items() if n > 1}
