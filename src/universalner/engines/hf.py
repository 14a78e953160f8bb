"""The transformers engine: full-precision, bitsandbytes 4-bit/8-bit, and peft adapters.

The model is loaded by ``weights.hf`` (device, dtype, quantisation, adapter); this module runs it by two
paths (see ``HFEngine``): ``plain``, one ``generate`` per question batched with left padding, the
reference; and ``fast`` (default), the passage's shared prompt prefix computed once and the questions
decoded as branches off its KV cache.
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import asdict, dataclass
from typing import Any

from ..attention import use_grouped_sdpa
from ..constraints import DONE, MENTION, NO_PENALTIES, Branch, PassageGrammar, Penalties, TokenIndex, choose
from ..tokens import prompt_ids
from ..weights.hf import load_model_and_tokenizer
from .base import Engine, Generation, Request

PATHS = ("fast", "plain")
# causal-LM classes whose logits are exactly lm_head(decoder(...)): no scaling, no soft-capping, so the
# constrained path may compute logits for the allowed tokens only
_PLAIN_HEAD_TYPES = {"llama", "mistral", "qwen2", "qwen3", "phi3", "smollm3", "olmo2"}


@dataclass
class EngineStats:
    """What the model was made to compute (summed over calls; reset with ``engine.stats = EngineStats()``).

    ``prefill_tokens``: prompt tokens run through the model; ``prefill_slots``: the same plus padding,
    what the matrix products paid for; ``decode_slots``: one per sequence per decoding step, padding
    rows and finished rows still in the batch included; ``peak_kv_bytes``: the largest KV cache held.
    """

    prefill_tokens: int = 0
    prefill_slots: int = 0
    decode_slots: int = 0
    forwards: int = 0
    peak_kv_bytes: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _PlainConstraint:
    """Constrained decoding inside ``model.generate`` (a logits processor): the plain path's constrained
    answers, token for token what the fast path decides, used to check it and to time it fairly."""

    def __init__(self, branches: list[Branch], prompt_len: int, max_new_tokens: int, stop: set[int]):
        self.branches = branches
        self.prompt_len = prompt_len
        self.max_new_tokens = max_new_tokens
        self.stop = stop
        self.finished = [False] * len(branches)
        # (row, step) -> (allowed ids, their log-probabilities without the penalties)
        self.unpenalised: dict[tuple[int, int], tuple[Any, Any]] = {}

    def __call__(self, input_ids, scores):
        import torch

        step = input_ids.shape[1] - self.prompt_len
        if step > 0:
            for row, br in enumerate(self.branches):
                t = int(input_ids[row, -1])
                if self.finished[row] or t in self.stop:
                    self.finished[row] = True
                else:
                    br.advance(t)
        out = scores.clone()
        remaining = self.max_new_tokens - step - 1
        for row, br in enumerate(self.branches):
            if self.finished[row]:
                continue
            ch = br.allowed(remaining)
            ids = torch.tensor(ch.ids, device=scores.device)
            keep = scores[row].index_select(0, ids)
            j = choose(keep, br, ch, torch.argmax) if len(ch.ids) > 1 else 0
            if j != int(keep.argmax()):  # a penalty moved the decision: force it, keep the model's scores
                self.unpenalised[(row, step)] = (ids, torch.log_softmax(keep.float(), 0))
                keep = torch.full_like(keep, -math.inf)
                keep[j] = 0.0
            out[row].fill_(-math.inf)
            out[row].index_copy_(0, ids, keep)
        return out


class HFEngine(Engine):
    """Greedy decoding with transformers, by one of two paths (``path=``).

    ``plain``: the reference. One full prompt per question, batched with left padding through
    ``model.generate``; every question pays for the whole passage, and a batch runs until its longest
    answer ends. ``fast`` (default): the prompts of a passage are tokenized in full and their longest
    common token prefix (system text, passage, acknowledgement, the start of the question) is run once;
    its KV cache is copied to one branch per question, the branches of several passages decode as one
    batch, and a branch leaves the batch as soon as its answer ends. The token ids are the ones the
    plain path sees, so unconstrained greedy answers are the same.

    ``constrained=True`` (both paths): answers are JSON lists of strings from the passage
    (``universalner.constraints``); greedy among the allowed tokens, and each token's log-probability is
    renormalised over the allowed tokens (a forced token has probability 1), so a mention's score
    measures the choices the model actually had. The fast path computes logits for the allowed tokens
    only where the architecture allows it (``_PLAIN_HEAD_TYPES``) and skips the forced end token.
    """

    name = "transformers"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        device: str = "cpu",
        max_batch: int = 64,
        path: str = "fast",
        lookahead: int = 8,
    ):
        if path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, not {path!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.max_batch = max(1, int(max_batch))
        self.path = path
        self.lookahead = max(0, int(lookahead))
        self.stats = EngineStats()
        self._heads: dict[tuple[int, ...], list[tuple[Any, Any]]] = {}  # KV of shared prompt starts
        self._heads_lock = threading.Lock()
        self._head: Any = False  # (decoder, lm_head) once looked up; None where logits need the full model

    @classmethod
    def load(cls, model, quantization=None, device="auto", adapter=None, dtype=None, **kw) -> HFEngine:
        lm, tok, dev, records = load_model_and_tokenizer(model, quantization, device, adapter, dtype)
        use_grouped_sdpa(lm)  # on a CPU: shared key/value heads read in place, not copied per query head
        engine = cls(lm, tok, dev, **kw)
        engine.record_dirs = records
        return engine

    def stop_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id}
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        if isinstance(gen_eos, int):
            ids.add(gen_eos)
        elif isinstance(gen_eos, (list, tuple)):
            ids.update(gen_eos)
        return sorted(i for i in ids if i is not None)

    def token_index(self) -> TokenIndex:
        """The constrained-decoding index of this tokenizer (built once, cached)."""
        return TokenIndex.for_hf_tokenizer(self.tokenizer, self.stop_ids())

    def _generate(
        self, requests: list[Request], max_new_tokens: int, constrained: bool, penalty: Penalties
    ) -> list[Generation]:
        """Greedy answers by the engine's path; ``penalty``: the list decisions' shifts (``Engine.penalties``,
        the exact rule is ``constraints.choose``'s)."""
        if self.path == "fast" and self._fast_supported():
            return self._generate_fast(requests, max_new_tokens, constrained, penalty)
        out: list[Generation] = []
        for i in range(0, len(requests), self.max_batch):
            part = requests[i : i + self.max_batch]
            passages = [r.passage for r in part] if constrained else None
            out.extend(self._generate_plain([r.prompt for r in part], max_new_tokens, passages, penalty))
        return out

    # ------------------------------------------------------------------ the plain path
    def _generate_plain(
        self,
        prompts: list[str],
        max_new_tokens: int,
        passages: list[str] | None = None,
        penalty: Penalties = NO_PENALTIES,
    ) -> list[Generation]:
        import torch
        from transformers import LogitsProcessorList

        tok = self.tokenizer
        enc = self._left_padded(prompt_ids(tok, prompts)[0])
        stop = self.stop_ids()
        extra: dict[str, Any] = {}
        branches = None
        if passages is not None:
            index = self.token_index()
            grammars: dict[str, PassageGrammar] = {}
            branches = [grammars.setdefault(p, PassageGrammar(index, p)).branch(*penalty) for p in passages]
            proc = _PlainConstraint(branches, enc["input_ids"].shape[1], max_new_tokens, set(stop))
            extra["logits_processor"] = LogitsProcessorList([proc])
        with torch.inference_mode():
            res = self.model.generate(
                **enc,
                do_sample=False,
                max_new_tokens=max_new_tokens,
                eos_token_id=stop,
                pad_token_id=tok.pad_token_id,
                output_scores=True,
                return_dict_in_generate=True,
                **extra,
            )
        new = res.sequences[:, enc["input_ids"].shape[1] :]
        logprobs = torch.stack([torch.log_softmax(s.float(), -1) for s in res.scores], 1)
        chosen = logprobs.gather(-1, new.unsqueeze(-1)).squeeze(-1)
        if branches is not None:  # scores from the model's own probabilities, not the penalised ones
            for (row, t), (ids, lsm) in proc.unpenalised.items():
                hit = (ids == new[row, t]).nonzero()
                if t < new.shape[1] and len(hit):
                    chosen[row, t] = lsm[int(hit[0])]
        gens = []
        lengths = enc["attention_mask"].sum(1).tolist()
        b, width = enc["input_ids"].shape
        self.stats.prefill_tokens += int(sum(lengths))
        self.stats.prefill_slots += b * width
        self.stats.decode_slots += b * max(0, new.shape[1] - 1)
        self.stats.forwards += new.shape[1]
        self.stats.peak_kv_bytes = max(self.stats.peak_kv_bytes, b * (width + new.shape[1]) * self._kv_slot())
        for row in range(new.shape[0]):
            ids: list[int] = []
            lps: list[float] = []
            for t, tid in enumerate(new[row].tolist()):
                if tid in stop:
                    break
                ids.append(tid)
                lps.append(float(chosen[row, t]))
            if branches is None:
                gens.append(self.detokenize(ids, lps, prompt_tokens=int(lengths[row])))
            else:
                gens.append(self.from_bytes(ids, lps, prompt_tokens=int(lengths[row])))
        return gens

    def _left_padded(self, seqs: list[list[int]]) -> dict[str, Any]:
        """input_ids and attention_mask of token id lists, left-padded with the pad token."""
        import torch

        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, s in enumerate(seqs):
            if s:
                ids[row, width - len(s) :] = torch.tensor(s)
                mask[row, width - len(s) :] = 1
        return {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}

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

    def from_bytes(self, ids: list[int], logprobs: list[float], prompt_tokens: int = 0) -> Generation:
        """A constrained answer spelled from its tokens' bytes: exactly the passage's characters (a
        tokenizer's ``decode`` may tidy spaces, e.g. ``McDonald 's`` -> ``McDonald's``)."""
        pieces = self.token_index().pieces
        buf = b""
        prev = 0
        spans = []
        for tid, lp in zip(ids, logprobs, strict=True):
            buf += pieces[tid] or b""
            cur = len(buf.decode("utf-8", errors="ignore"))
            spans.append((prev, cur, lp if math.isfinite(lp) else -1e4))
            prev = cur
        return Generation(buf.decode("utf-8", errors="replace"), spans, prompt_tokens)

    # ------------------------------------------------------------------ the fast path
    def _generate_fast(
        self,
        requests: list[Request],
        max_new_tokens: int,
        constrained: bool,
        penalty: Penalties = NO_PENALTIES,
    ) -> list[Generation]:
        import torch

        enc, regions = self._encode_with_passages(requests)
        for i, ids in enumerate(enc):
            if not ids:
                raise ValueError(f"requests[{i}] has an empty prompt")
        members: dict[Any, list[int]] = {}
        for i, r in enumerate(requests):
            members.setdefault(r.group, []).append(i)
        # a unit: the requests of one group and the length of their shared token prefix (at least one
        # token of every prompt is left for its branch, whose last position gives the first answer token)
        units = [
            (idx, min(_common_prefix([enc[i] for i in idx]), min(len(enc[i]) for i in idx) - 1))
            for idx in members.values()
        ]
        # chunks of at most max_batch branches; a passage's branches stay together unless it has more
        # than that, and passages of similar prefix length go together (less padding)
        chunks: list[list[tuple[int, int]]] = [[]]
        for u in sorted(range(len(units)), key=lambda u: units[u][1]):
            idx = units[u][0]
            if chunks[-1] and len(chunks[-1]) + len(idx) > self.max_batch:
                chunks.append([])
            for i in idx:
                if len(chunks[-1]) == self.max_batch:
                    chunks.append([])
                chunks[-1].append((u, i))
        last_use = {u: c for c, chunk in enumerate(chunks) for u, _ in chunk}
        # what every prompt of the call starts with (the system text): computed once, kept across calls
        heads = [enc[idx[0]][:n] for idx, n in units]
        shared = min(_common_prefix(heads), min(len(h) for h in heads)) if len(heads) > 1 else 0
        shared = shared if shared >= 8 else 0
        grammars: dict[str, PassageGrammar] = {}
        if constrained:
            index = self.token_index()
            for r in requests:
                if r.passage not in grammars:
                    grammars[r.passage] = PassageGrammar(index, r.passage)
        out: list[Generation | None] = [None] * len(requests)
        prefix_kv: dict[int, list[tuple[Any, Any]]] = {}
        with torch.inference_mode():
            for c, chunk in enumerate(chunks):
                todo = list(dict.fromkeys(u for u, _ in chunk if u not in prefix_kv))
                kvs = self._prefill_prefixes([enc[units[u][0][0]][: units[u][1]] for u in todo], shared)
                prefix_kv.update(zip(todo, kvs, strict=True))
                branches = (
                    [grammars[requests[i].passage].branch(*penalty) for _, i in chunk]
                    if constrained
                    else None
                )
                gens = self._decode_chunk(chunk, enc, units, prefix_kv, max_new_tokens, branches, regions)
                for (_, i), g in zip(chunk, gens, strict=True):
                    out[i] = g
                for u in {u for u, _ in chunk}:
                    if last_use[u] == c:
                        del prefix_kv[u]
        return out  # type: ignore[return-value]

    def _fast_supported(self) -> bool:
        """The fast path copies plain per-layer KV tensors; models whose cache is anything else (sliding
        windows, linear attention, ...) take the plain path."""
        if not hasattr(self, "_fast_ok"):
            from transformers import DynamicCache
            from transformers.cache_utils import DynamicLayer

            try:
                layers = DynamicCache(config=self.model.config).layers
            except Exception:  # noqa: BLE001 - an exotic config: the plain path works for every model
                layers = None
            self._fast_ok = bool(layers) and all(type(layer) is DynamicLayer for layer in layers)
        return self._fast_ok

    def _encode_with_passages(self, requests: list[Request]) -> tuple[list[list[int]], list[tuple]]:
        """Each prompt's token ids (exactly as the plain path tokenizes it, BOS included where the
        tokenizer adds one: ``universalner.tokens``), the token range its passage occupies (the whole
        prompt where the tokenizer gives no offsets), and where each of those tokens starts in the
        passage (character offset -> token index)."""
        prompts = [r.prompt for r in requests]
        tok = self.tokenizer
        if not getattr(tok, "is_fast", False):
            enc = prompt_ids(tok, prompts)[0]
            return enc, [(0, len(e), {}) for e in enc]
        all_ids, all_offs = prompt_ids(tok, prompts, offsets=True)
        regions = []
        for r, ids, offs in zip(requests, all_ids, all_offs, strict=True):
            start = r.prompt.rfind(r.passage) if r.passage else -1
            if start < 0:
                regions.append((0, len(ids), {}))
                continue
            end = start + len(r.passage)
            inside = [k for k, (a, b) in enumerate(offs) if a >= start and b <= end and b > a]
            if not inside:
                regions.append((0, len(ids), {}))
                continue
            at_char: dict[int, int] = {}
            for k in inside:
                at_char.setdefault(offs[k][0] - start, k)
            regions.append((inside[0], inside[-1] + 1, at_char))
        return all_ids, regions

    def _split_head(self):
        """(decoder, lm_head) for architectures whose logits are lm_head(decoder output), else None."""
        if self._head is False:
            import torch

            found = None  # set once, at the end: another thread never sees a half-made answer
            inner = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
            head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
            body = getattr(inner, getattr(inner, "base_model_prefix", ""), None)
            mtype = getattr(getattr(inner, "config", None), "model_type", None)
            if (
                type(head) is torch.nn.Linear
                and body is not None
                and body is not inner
                and mtype in _PLAIN_HEAD_TYPES
            ):
                found = (body, head)
            self._head = found
        return self._head

    def _forward(self, ids, attn, pos, cache, hidden: bool, keep: int = 1):
        """Run the model; float32 logits of the last ``keep`` positions ([rows, keep, vocab]), or their
        hidden states when ``hidden`` (the constrained path computes allowed logits itself)."""
        import torch

        self.stats.forwards += 1
        if hidden:
            body, _ = self._split_head()
            kv = {_cache_keyword(body): cache}
            res = body(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, **kv)
            return res.last_hidden_state[:, -keep:]
        inner = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        kv = {_cache_keyword(inner): cache}
        res = self.model(
            input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, logits_to_keep=keep, **kv
        )
        return res.logits[:, -keep:, :].to(dtype=torch.float32)

    def _prefill_prefixes(self, seqs: list[list[int]], shared: int = 0) -> list[list[tuple[Any, Any]]]:
        """The KV caches of passage prefixes, computed as one batch: (keys, values) per layer for each
        prefix, batch 1, no padding ([] for an empty prefix).

        The first ``shared`` tokens are the same in every prefix: their cache is computed once (and
        kept on the engine for later calls); each prefix's remainder runs on top of it, left-padded.
        """
        import torch
        from transformers import DynamicCache

        out: list[list[tuple[Any, Any]]] = [[] for _ in seqs]
        head = self._head_cache(seqs[0][:shared]) if shared and seqs else []
        rows = [b for b, s in enumerate(seqs) if len(s) > shared]
        for b, s in enumerate(seqs):
            if s and len(s) <= shared:
                out[b] = head
        if not rows:
            return out
        width = max(len(seqs[b]) - shared for b in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        attn = torch.zeros((len(rows), shared + width), dtype=torch.long)
        attn[:, :shared] = 1
        pos = torch.zeros((len(rows), width), dtype=torch.long)
        for r, b in enumerate(rows):
            rest = seqs[b][shared:]
            ids[r, width - len(rest) :] = torch.tensor(rest)
            attn[r, shared + width - len(rest) :] = 1
            pos[r, width - len(rest) :] = torch.arange(shared, shared + len(rest))
        cache = DynamicCache(config=self.model.config)
        for layer, (k, v) in zip(cache.layers, head, strict=False):
            layer.update(
                k.expand(len(rows), -1, -1, -1).contiguous(), v.expand(len(rows), -1, -1, -1).contiguous()
            )
        dev = self.device
        self._forward(ids.to(dev), attn.to(dev), pos.to(dev), cache, hidden=self._split_head() is not None)
        self.stats.prefill_tokens += sum(len(seqs[b]) - shared for b in rows)
        self.stats.prefill_slots += len(rows) * width
        for r, b in enumerate(rows):
            n = len(seqs[b]) - shared
            kv = []
            for li, layer in enumerate(cache.layers):
                k = layer.keys[r : r + 1, :, shared + width - n :]
                v = layer.values[r : r + 1, :, shared + width - n :]
                if shared:
                    k = torch.cat([head[li][0], k], 2)
                    v = torch.cat([head[li][1], v], 2)
                kv.append((k, v))
            out[b] = kv
        return out

    def _head_cache(self, ids: list[int]) -> list[tuple[Any, Any]]:
        """The KV cache of a prompt start shared by all passages (the system text), computed once per
        distinct start and kept (the last four)."""
        import torch
        from transformers import DynamicCache

        key = tuple(ids)
        with self._heads_lock:
            got = self._heads.pop(key, None)
        if got is None:
            cache = DynamicCache(config=self.model.config)
            x = torch.tensor([ids], device=self.device)
            self._forward(x, torch.ones_like(x), None, cache, hidden=self._split_head() is not None)
            self.stats.prefill_tokens += len(ids)
            self.stats.prefill_slots += len(ids)
            got = [(layer.keys, layer.values) for layer in cache.layers]
        with self._heads_lock:
            self._heads[key] = got  # most recent last
            while len(self._heads) > 4:
                self._heads.pop(next(iter(self._heads)))
        return got

    def _kv_slot(self) -> int:
        """Bytes of KV cache per token per sequence."""
        cfg = self.model.config
        cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        size = next(self.model.parameters()).element_size()
        return 2 * cfg.num_hidden_layers * heads * dim * max(size, 2)

    def _branch_cache(self, chunk, units, prefix_kv, width: int):
        """One cache row per branch: its group's prefix, right-aligned at ``width`` (zeros before it)."""
        import torch
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        if width == 0:
            return cache
        rows: dict[int, list[int]] = {}
        for b, (u, _) in enumerate(chunk):
            rows.setdefault(u, []).append(b)
        filled = [prefix_kv[u] for u in rows if prefix_kv[u]]
        for layer_idx in range(len(filled[0])):
            k0, v0 = filled[0][layer_idx]
            shape = (len(chunk), k0.shape[1], width, k0.shape[3])
            k = torch.zeros(shape, dtype=k0.dtype, device=k0.device)
            v = torch.zeros((*shape[:3], v0.shape[3]), dtype=v0.dtype, device=v0.device)
            for u, bs in rows.items():
                n = units[u][1]
                if n:
                    pk, pv = prefix_kv[u][layer_idx]
                    k[bs, :, width - n :] = pk
                    v[bs, :, width - n :] = pv
            cache.layers[layer_idx].update(k, v)
        return cache

    def _decode_chunk(
        self, chunk, enc, units, prefix_kv, max_new_tokens: int, branches, regions
    ) -> list[Generation]:
        """Prefill the branches' suffixes off the shared prefixes, then decode greedily.

        Each step feeds every live branch its pending token plus up to ``lookahead`` draft tokens copied
        from its prompt where the answer so far repeats a stretch of it (answers are copied from the
        passage). One forward scores the whole draft; the branch keeps the draft tokens that greedy
        decoding would have chosen anyway, and the positions of rejected ones are masked out, so the
        result is exactly token-by-token greedy. A branch whose answer ended leaves the batch.
        """
        import torch

        dev = self.device
        constrained = branches is not None
        hidden = constrained and self._split_head() is not None
        stop = set(self.stop_ids())
        if constrained:
            stop.update(branches[0].grammar.end_ids)
        plens = [units[u][1] for u, _ in chunk]
        width = max(plens)
        sufs = [enc[i][n:] for (_, i), n in zip(chunk, plens, strict=True)]
        s_max = max(len(s) for s in sufs)
        nb = len(chunk)
        # the empty answer's tokens (`[` `]`) ride along as a draft: a branch whose answer is `[]` is
        # then finished by this one forward. A fixed draft, never one learnt from earlier calls: the
        # draft changes the shapes of the products, and in bf16 or int8 their roundings, so an answer
        # must not depend on what the engine answered before
        opening = self._opening() if self.lookahead else []
        d = len(opening)
        ids = torch.full((nb, s_max + d), self.tokenizer.pad_token_id, dtype=torch.long)
        attn = torch.zeros((nb, width + s_max + d), dtype=torch.long)
        pos = torch.zeros((nb, s_max + d), dtype=torch.long)
        for b, (s, n) in enumerate(zip(sufs, plens, strict=True)):
            ids[b, s_max - len(s) :] = torch.tensor(s + opening)
            attn[b, width - n : width] = 1
            attn[b, width + s_max - len(s) :] = 1
            pos[b, s_max - len(s) :] = torch.arange(n, n + len(s) + d)
        ids, attn, pos = ids.to(dev), attn.to(dev), pos.to(dev)
        cache = self._branch_cache(chunk, units, prefix_kv, width)
        out = self._forward(ids, attn, pos, cache, hidden, keep=1 + d)
        self.stats.prefill_tokens += sum(len(s) for s in sufs)
        self.stats.prefill_slots += nb * s_max
        self.stats.decode_slots += nb * d
        slot = self._kv_slot()
        self.stats.peak_kv_bytes = max(self.stats.peak_kv_bytes, nb * attn.shape[1] * slot)
        lookups = [
            _NgramLookup(enc[i], *regions[i], self.lookahead) if self.lookahead else None for _, i in chunk
        ]
        rows = list(range(nb))  # batch row -> branch
        drafts: list[list[int]] = [list(opening) for _ in range(nb)]  # fed after each row's pending token
        # position id of each row's last valid token (with an opening draft, the last suffix token
        # plays the pending token's part)
        last = pos[:, -1 - d].clone() - (1 if d else 0)
        got_ids: list[list[int]] = [[] for _ in range(nb)]
        got_lps: list[list[float]] = [[] for _ in range(nb)]
        block_fed = d > 0  # False: nothing fed beyond the prompt yet
        while True:
            lse = None if hidden else torch.logsumexp(out, -1)
            top = None if hidden else out.argmax(-1).tolist()
            live, accepted = [], []
            for r, b in enumerate(rows):
                j, alive = 0, True
                while True:  # choose from position j; continue while the draft guessed right
                    if len(got_ids[b]) >= max_new_tokens:
                        alive = False
                        break
                    if hidden or constrained:
                        remaining = max_new_tokens - len(got_ids[b]) - 1
                        t, lp = self._choose_allowed(out[r, j], branches[b], remaining, hidden)
                    else:
                        t = top[r][j]
                        lp = float(out[r, j, t] - lse[r, j])
                    if t in stop:
                        alive = False
                        break
                    got_ids[b].append(t)
                    got_lps[b].append(lp)
                    if constrained:
                        branches[b].advance(t)
                        if branches[b].complete:  # only the end token can follow: no need to compute it
                            alive = False
                            break
                    if j < len(drafts[r]) and drafts[r][j] == t:
                        j += 1
                        continue
                    break
                accepted.append(j)
                if lookups[b] is not None:
                    lookups[b].update(len(drafts[r]), j)
                if alive and len(got_ids[b]) < max_new_tokens:
                    live.append(r)
            # mask the rejected draft positions; they stay in the cache but are never attended to
            if block_fed:
                fed = [1 + len(d) for d in drafts]
                base = attn.shape[1] - max(fed)
                for r, a in enumerate(accepted):
                    if a + 1 < fed[r]:
                        attn[r, base + 1 + a : base + fed[r]] = 0
                last = last + 1 + torch.tensor(accepted, device=dev)
            if not live:
                break
            if len(live) < len(rows):
                sel = torch.tensor(live, device=dev)
                cache.batch_select_indices(sel)
                attn, last = attn[sel], last[sel]
                rows = [rows[r] for r in live]
            drafts = [
                self._draft(
                    lookups[b],
                    got_ids[b],
                    branches[b] if constrained else None,
                    max_new_tokens - len(got_ids[b]),
                    stop,
                )
                for b in rows
            ]
            w = _block_width([len(d) for d in drafts])
            drafts = [d[: w - 1] for d in drafts]
            x = torch.full((len(rows), w), self.tokenizer.pad_token_id, dtype=torch.long)
            block = torch.zeros((len(rows), w), dtype=torch.long)
            for r, b in enumerate(rows):
                seq = [got_ids[b][-1], *drafts[r]]
                x[r, : len(seq)] = torch.tensor(seq)
                block[r, : len(seq)] = 1
            x, block = x.to(dev), block.to(dev)
            attn = torch.cat([attn, block], 1)
            steps = last[:, None] + 1 + torch.arange(w, device=dev)[None, :]
            out = self._forward(x, attn, steps, cache, hidden, keep=w)
            block_fed = True
            self.stats.decode_slots += len(rows) * w
            self.stats.peak_kv_bytes = max(self.stats.peak_kv_bytes, len(rows) * attn.shape[1] * slot)
        gens = []
        for b, (_, i) in enumerate(chunk):
            n_prompt = len(enc[i])
            if constrained:
                gens.append(self.from_bytes(got_ids[b], got_lps[b], n_prompt))
            else:
                gens.append(self.detokenize(got_ids[b], got_lps[b], n_prompt))
        return gens

    def _opening(self) -> list[int]:
        """The tokens of the empty answer ``[]`` as the tokenizer spells it (at most two)."""
        got = getattr(self, "_empty_answer", None)
        if got is None:
            got = self._empty_answer = list(self.tokenizer.encode("[]", add_special_tokens=False))[:2]
        return got

    def _draft(self, lookup, got: list[int], branch: Branch | None, room: int, stop: set[int]) -> list[int]:
        """Tokens that follow the answer's latest words where they occur in the prompt (may be empty)."""
        if lookup is None or room <= 0:
            return []
        # inside a mention the answer is certain to copy on, so one matching token is enough to draft
        in_mention = branch is not None and branch.state[0] == MENTION
        draft = None
        if in_mention:  # the grammar knows where in the passage the mention has got to
            text = branch.grammar.text
            for e in branch.state[1][:4]:
                draft = lookup.at(
                    len(text[:e].decode("utf-8", errors="ignore")), min(self.lookahead, room), 2
                )
                if draft:
                    break
        if not draft:
            draft = lookup.follow(
                got, min(self.lookahead, room), 1 if in_mention else 2, 2 if in_mention else 0
            )
        if not draft:
            return draft
        keep = []
        if branch is not None:  # stop at the first token the answer language refuses
            g, st = branch.grammar, branch.state
            for t in draft:
                piece = g.index.pieces[t] if t < len(g.index.pieces) else None
                if not piece or t in stop:
                    break
                for byte in piece:
                    st = g.moves(st).get(byte) if st is not None else None
                if st is None:
                    break
                keep.append(t)
                if st[0] == DONE:
                    break
            return keep
        for t in draft:
            if t in stop:
                break
            keep.append(t)
        return keep

    def _choose_allowed(self, vec, branch: Branch, remaining: int, hidden: bool) -> tuple[int, float]:
        """Greedy among the branch's allowed tokens; log-probability renormalised over them.

        ``vec`` is a position's logits, or its hidden state when the head is applied here to the
        allowed tokens only."""
        import torch

        ch = branch.allowed(remaining)
        if len(ch.ids) == 1:
            return ch.ids[0], 0.0
        t = ch.memo.get("ids")
        if t is None:
            t = ch.memo["ids"] = torch.tensor(ch.ids, device=vec.device)
        if hidden:
            head = self._split_head()[1]
            w = ch.memo.get("w")
            if w is None:
                w = head.weight.index_select(0, t)
                if w.numel() <= 4_000_000:
                    ch.memo["w"] = w
            bias = None if head.bias is None else head.bias.index_select(0, t)
            lg = torch.nn.functional.linear(vec, w, bias).float()
        else:
            lg = vec.index_select(0, t)
        j = choose(lg, branch, ch, torch.argmax)
        return ch.ids[j], float(lg[j] - torch.logsumexp(lg, 0))


class _NgramLookup:
    """Prompt-lookup drafts for one branch: where do the answer's last tokens occur in the passage's
    tokens, and what follows them there.

    Only the passage is searched (answers copy from it); a single-token match counts only when that
    token occurs once in the passage, and the caller asks for it only inside a mention. The draft length adapts: it doubles after a draft is accepted in
    full and halves after a miss, so prose that does not copy the passage costs little.
    """

    def __init__(
        self, prompt: list[int], lo: int, hi: int, at_char: dict[int, int], longest: int, max_n: int = 3
    ):
        self.prompt = prompt
        self.hi = hi
        self.at_char = at_char  # passage character offset -> the prompt token that starts there
        self.max_n = max_n
        self.longest = max(1, longest)
        self.k = max(1, longest // 2)
        self.rest = 0
        self.where: dict[tuple[int, ...], int] = {}
        counts: dict[int, int] = {}
        for s in range(lo, hi):
            counts[prompt[s]] = counts.get(prompt[s], 0) + 1
        for n in range(1, max_n + 1):
            for s in range(lo, hi - n):
                gram = tuple(prompt[s : s + n])
                if n > 1 or counts[gram[0]] == 1:
                    self.where.setdefault(gram, s + n)  # the first occurrence wins

    def at(self, char: int, room: int, floor: int = 0) -> list[int] | None:
        """The prompt tokens from the one that starts at passage offset ``char``, if one does."""
        t = self.at_char.get(char)
        if t is None:
            return None
        return self.prompt[t : min(self.hi, t + min(max(self.k, floor), room))]

    def follow(self, got: list[int], room: int, min_n: int = 1, floor: int = 0) -> list[int]:
        """Up to ``room`` tokens; ``floor``: draft at least this many even after misses."""
        k = max(self.k, floor)
        if k == 0:  # drafts kept missing: rest a few tokens, then try one token again
            self.rest -= 1
            if self.rest > 0:
                return []
            k = self.k = 1
        for n in range(min(self.max_n, len(got)), min_n - 1, -1):
            at = self.where.get(tuple(got[-n:]))
            if at is not None:
                return self.prompt[at : min(self.hi, at + min(k, room))]
        return []

    def update(self, drafted: int, accepted: int) -> None:
        if drafted:
            self.k = min(self.longest, max(self.k, 1) * 2) if accepted == drafted else self.k // 2
            if self.k == 0:
                self.rest = 8


def _cache_keyword(module: Any) -> str:
    """``cache``, the KV cache argument's name since transformers 5.2x (``past_key_values`` then warns
    once per process that it is deprecated), or ``past_key_values`` for models that do not take it."""
    return _cache_keyword_of(type(module))


@functools.lru_cache(maxsize=64)
def _cache_keyword_of(cls: type) -> str:
    import inspect

    try:
        params = inspect.signature(cls.forward).parameters
    except (AttributeError, TypeError, ValueError):
        params = {}
    return "cache" if "cache" in params else "past_key_values"


def _block_width(lengths: list[int]) -> int:
    """Columns to feed per row: 1 + the draft length kept. Every row pays for the widest draft, so a
    width is kept only where the drafts fill at least a third of the extra columns."""
    for d in range(max(lengths, default=0), 0, -1):
        if 3 * sum(min(n, d) for n in lengths) >= len(lengths) * d:
            return 1 + d
    return 1


def _common_prefix(seqs: list[list[int]]) -> int:
    """Length of the longest common prefix of token id lists."""
    first = seqs[0]
    n = len(first)
    for s in seqs[1:]:
        m = min(n, len(s))
        k = 0
        while k < m and s[k] == first[k]:
            k += 1
        n = k
    return n
