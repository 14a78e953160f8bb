"""The transformers engine: full-precision, bitsandbytes 4-bit/8-bit, and peft adapters.

This module loads the model and runs the plain path: one ``generate`` per question, batched
with left padding, greedy. It is the reference the faster paths are checked against.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..loading import check_hub_reachable, offline_hint, resolve_model
from .base import Engine, Generation, Request

QUANTIZATIONS = (None, "4bit", "8bit")


def pick_device(device: str | None) -> str:
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu', 'cuda' or 'auto', not {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but no CUDA GPU is available here; use device='cpu' or 'auto'")
    return device


def quantization_config(quantization: str | None, device: str):
    """bitsandbytes settings: nf4 with double quantisation; bf16 compute on CUDA, fp32 on CPU."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, not {quantization!r}")
    if quantization is None:
        return None
    import torch
    from transformers import BitsAndBytesConfig

    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"quantization={quantization!r} needs bitsandbytes: pip install bitsandbytes"
        ) from e
    if quantization == "4bit":
        compute = torch.bfloat16 if device.startswith("cuda") else torch.float32
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
    return BitsAndBytesConfig(load_in_8bit=True)


def _is_adapter(path: Path | str) -> bool:
    return isinstance(path, Path) and (path / "adapter_config.json").is_file()


def load_model_and_tokenizer(
    model: str | os.PathLike,
    quantization: str | None = None,
    device: str | None = "auto",
    adapter: str | os.PathLike | None = None,
    dtype: str | None = None,
):
    """(model, tokenizer, device, [folders that may hold a template record])."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if quantization not in QUANTIZATIONS:  # checked before anything slow happens
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, not {quantization!r}")
    device = pick_device(device)
    location = resolve_model(model)
    record_dirs: list[Path] = []
    if _is_adapter(location):  # a LoRA output folder given as the model: load its base first
        import json

        adapter, record_dirs = location, [location]
        base = json.loads((location / "adapter_config.json").read_text()).get("base_model_name_or_path")
        if not base:
            raise ValueError(f"{location}/adapter_config.json names no base model")
        location = resolve_model(base)
    if isinstance(location, Path):
        record_dirs.append(location)
    else:
        check_hub_reachable(location)
    qconf = quantization_config(quantization, device)
    if dtype is None:
        torch_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if qconf is not None:
        kwargs["quantization_config"] = qconf
        kwargs["device_map"] = {"": device}
    try:
        tok_src = (
            adapter
            if adapter is not None and (Path(adapter) / "tokenizer_config.json").is_file()
            else location
        )
        tokenizer = AutoTokenizer.from_pretrained(str(tok_src))
        lm = AutoModelForCausalLM.from_pretrained(str(location), **kwargs)
    except OSError as e:
        if isinstance(location, str):
            raise offline_hint(location, e) from e
        raise
    if qconf is None:
        lm = lm.to(device)
    if adapter is not None:
        adapter_path = resolve_model(adapter)
        try:
            from peft import PeftModel
        except ImportError as e:
            raise ImportError("adapter= needs peft: pip install 'universalner[tune]'") from e
        lm = PeftModel.from_pretrained(lm, str(adapter_path))
        if isinstance(adapter_path, Path):
            record_dirs.insert(0, adapter_path)
    lm.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return lm, tokenizer, device, record_dirs


class HFEngine(Engine):
    """Greedy decoding with transformers; see the module docstring for what each path does."""

    name = "transformers"

    def __init__(self, model: Any, tokenizer: Any, device: str = "cpu", max_batch: int = 16):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.max_batch = max(1, int(max_batch))

    @classmethod
    def load(cls, model, quantization=None, device="auto", adapter=None, dtype=None, **kw) -> HFEngine:
        lm, tok, dev, records = load_model_and_tokenizer(model, quantization, device, adapter, dtype)
        engine = cls(lm, tok, dev, **kw)
        engine.record_dirs = records
        return engine

    # ------------------------------------------------------------------ the plain path
    def stop_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id}
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        if isinstance(gen_eos, int):
            ids.add(gen_eos)
        elif isinstance(gen_eos, (list, tuple)):
            ids.update(gen_eos)
        return sorted(i for i in ids if i is not None)

    def generate(
        self, requests: Sequence[Request], *, max_new_tokens: int = 256, constrained: bool = False
    ) -> list[Generation]:
        if constrained:
            raise NotImplementedError("constrained decoding is not available in the plain path")
        out: list[Generation] = []
        for i in range(0, len(requests), self.max_batch):
            out.extend(
                self._generate_plain([r.prompt for r in requests[i : i + self.max_batch]], max_new_tokens)
            )
        return out

    def _generate_plain(self, prompts: list[str], max_new_tokens: int) -> list[Generation]:
        import torch

        tok = self.tokenizer
        side = tok.padding_side
        tok.padding_side = "left"
        try:
            enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        finally:
            tok.padding_side = side
        stop = self.stop_ids()
        with torch.inference_mode():
            res = self.model.generate(
                **enc,
                do_sample=False,
                max_new_tokens=max_new_tokens,
                eos_token_id=stop,
                pad_token_id=tok.pad_token_id,
                output_scores=True,
                return_dict_in_generate=True,
            )
        new = res.sequences[:, enc["input_ids"].shape[1] :]
        logprobs = torch.stack([torch.log_softmax(s.float(), -1) for s in res.scores], 1)
        chosen = logprobs.gather(-1, new.unsqueeze(-1)).squeeze(-1)
        gens = []
        lengths = enc["attention_mask"].sum(1).tolist()
        for row in range(new.shape[0]):
            ids: list[int] = []
            lps: list[float] = []
            for t, tid in enumerate(new[row].tolist()):
                if tid in stop:
                    break
                ids.append(tid)
                lps.append(float(chosen[row, t]))
            gens.append(self.detokenize(ids, lps, prompt_tokens=int(lengths[row])))
        return gens

    def detokenize(self, ids: list[int], logprobs: list[float], prompt_tokens: int = 0) -> Generation:
        """The answer text and each token's character span in it (prefix decoding, robust to
        tokenizers whose pieces only make sense in context)."""
        spans = []
        prev = ""
        for k in range(len(ids)):
            cur = self.tokenizer.decode(ids[: k + 1], skip_special_tokens=True)
            lp = logprobs[k] if math.isfinite(logprobs[k]) else -1e4
            spans.append((len(prev), len(cur), lp))
            prev = cur
        return Generation(prev, spans, prompt_tokens)
