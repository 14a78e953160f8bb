"""The llama.cpp engine: GGUF students (4-bit on the CPU) through ``llama-cpp-python``.

Why it is fast: llama.cpp runs quantised weights natively, and this engine decodes the K questions
about a passage as K sequences of one batch that share the passage. The common token prefix of the
K prompts (system text, passage, acknowledgement, the start of the question) is evaluated once and
copied to the other sequences (``llama_memory_seq_cp``); then each step decodes one token of every
unfinished question, of several passages at once (up to ``max_sequences``), in one ``llama_decode``.
A question leaves the batch as soon as its answer ends.

Exact: each sequence has its own KV stream and flash attention is off, so a question's answer is the
same whether it is decoded alone or beside others, in one piece or as prefix plus suffix (in a unified
KV cache, or with llama.cpp's CPU flash attention, logits move by tenths of a nat with the batch).

Greedy, like the transformers engine. ``constrained=True`` uses the library's own constraint
(``universalner.constraints``: a JSON list of strings copied from the passage), so both engines
answer in the same language, with log-probabilities renormalised over the allowed tokens as there.

The prompt's chat template and end-of-sequence token come from the GGUF file itself
(``weights.gguf.GGUFTokenizer``, its header read in milliseconds): no transformers tokenizer is built.
A LoRA student is merged into its GGUF base first (``weights.merged_gguf``).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..constraints import Penalties, choose
from ..tokens import with_prefix
from ..weights.errors import ModelNotFoundError
from ..weights.gguf import GGUFError, GGUFTokenizer, find_gguf, read_gguf_metadata
from .base import Engine, Generation, Request

# ------------------------------------------------------------------ the engine
INSTALL_HINT = (
    "engine='llama.cpp' needs llama-cpp-python >= 0.3.36: pip install 'universalner[llamacpp]' "
    "(it compiles llama.cpp; CMAKE_ARGS=-DLLAVA_BUILD=OFF skips the image parts)"
)
#: the llama.cpp C API this engine calls (present from llama-cpp-python 0.3.36)
_NEEDED = ("llama_memory_seq_cp", "llama_memory_clear", "llama_n_ctx_seq", "llama_set_adapters_lora")


def _import_llama_cpp():
    # llama.cpp's OpenMP threads spin at every barrier, and on a busy CPU a spinning thread that loses
    # its core stalls the others: measured on 2 cores beside 3 busy processes, 2 threads decoded 13
    # tokens/s spinning and 33 passive (1 thread: 40; on the idle machine 2 threads: 118 either way).
    # OpenMP reads the policy once, when llama.cpp's libraries load; the variable is put back at once
    # so that nothing else in the process (torch, child processes) sees it.
    import sys

    first = "llama_cpp" not in sys.modules and "OMP_WAIT_POLICY" not in os.environ
    if first:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        import llama_cpp
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    finally:
        if first:
            os.environ.pop("OMP_WAIT_POLICY", None)
    missing = [f for f in _NEEDED if not hasattr(llama_cpp, f)]
    if missing or not hasattr(llama_cpp.llama_context_params(), "kv_unified"):
        raise ImportError(f"llama-cpp-python {llama_cpp.__version__} is too old ({missing}); {INSTALL_HINT}")
    quiet = logging.getLogger("llama-cpp-python")
    if quiet.level == logging.NOTSET:  # llama.cpp prints every tensor it loads unless told otherwise
        quiet.setLevel(logging.ERROR)
    return llama_cpp


class _Branch:
    """One question being answered: its sequence in the KV cache and what it has written."""

    __slots__ = ("index", "seq", "pos", "ids", "logprobs", "logits", "constraint", "done")

    def __init__(self, index: int, seq: int, pos: int, constraint: Any):
        self.index, self.seq, self.pos = index, seq, pos
        self.ids: list[int] = []
        self.logprobs: list[float] = []
        self.logits = None
        self.constraint = constraint
        self.done = False


class LlamaCppEngine(Engine):
    """Greedy batched decoding of GGUF models with llama.cpp; see the module docstring."""

    name = "llama.cpp"

    def __init__(
        self,
        path: str | os.PathLike,
        n_ctx: int = 1024,
        max_sequences: int = 8,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        n_batch: int = 512,
        adapter: str | os.PathLike | None = None,
        adapter_scale: float = 1.0,
        flash_attn: bool = False,
    ):
        llama_cpp = _import_llama_cpp()
        # one llama.cpp context (its KV memory, its batch) serves every call: calls from several threads
        # take turns, whole, so none decodes into another's sequences
        self._lock = threading.RLock()
        self._c = llama_cpp
        self.path = find_gguf(path)
        meta = read_gguf_metadata(self.path, (*GGUFTokenizer.KEYS, "tokenizer.ggml.add_space_prefix"))
        self.tokenizer = GGUFTokenizer.from_metadata(meta)
        self._space_prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", False))
        if int(n_ctx) < 16 or int(max_sequences) < 1:
            raise ValueError(
                f"n_ctx (tokens per question) must be >= 16 and max_sequences >= 1, not {n_ctx}, {max_sequences}"
            )
        llama_cpp.llama_backend_init()
        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = int(n_gpu_layers)
        model = llama_cpp.llama_model_load_from_file(str(self.path).encode(), mparams)
        if not model:
            raise GGUFError(
                f"llama.cpp could not load {self.path} (a GGUF file of an architecture it knows?)"
            )
        self.n_ctx_train = int(llama_cpp.llama_model_n_ctx_train(model))
        self.max_sequences = max(1, min(int(max_sequences), int(llama_cpp.llama_max_parallel_sequences())))
        self.n_batch = max(16, int(n_batch))
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = int(n_ctx) * self.max_sequences
        cparams.n_batch = cparams.n_ubatch = self.n_batch
        cparams.n_seq_max = self.max_sequences
        # one KV stream per question: a question's logits never depend on what else is in the batch
        # (in a unified cache they do, by a few tenths of a nat on the test model), and attention reads
        # only the question's own cells
        cparams.kv_unified = False
        # every core this process may use (passive OpenMP waits keep that safe on a busy machine)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.threads = int(n_threads or cores)
        cparams.n_threads = cparams.n_threads_batch = self.threads
        cparams.no_perf = True
        # llama.cpp's CPU flash attention gives a token different logits depending on how many cells it
        # sees at once (prompt in one batch vs. prefix then suffix); off, prefix sharing is exact
        cparams.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if flash_attn
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        ctx = llama_cpp.llama_init_from_model(model, cparams)
        if not ctx:
            llama_cpp.llama_model_free(model)
            raise RuntimeError(
                f"llama.cpp could not create a context of {max_sequences} x {n_ctx} tokens for {self.path}"
            )
        self._model, self._ctx = model, ctx
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self._finalizer = weakref.finalize(self, _free, llama_cpp, model, ctx, self._batch)
        self.n_ctx = int(llama_cpp.llama_n_ctx_seq(ctx))  # tokens each question may use
        self._vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self._mem = llama_cpp.llama_get_memory(ctx)
        self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self._bos = int(llama_cpp.llama_vocab_bos(self._vocab))
        self.end_ids = frozenset(
            t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(self._vocab, t)
        )
        self._index = None
        self.record_dirs = [self.path.parent]
        self.stats = LlamaStats()
        if adapter is not None:
            self._set_adapter(adapter, adapter_scale)

    @classmethod
    def load(cls, model, quantization=None, device="auto", adapter=None, **kw) -> LlamaCppEngine:
        """A GGUF student, or a LoRA student (a shipped one such as ``universalner-135m``, or a folder
        written by ``universalner.tune`` on a GGUF base) merged into its base once and cached
        (``universalner.weights.merged_gguf``). ``quantization``: for a GGUF file, None (the file is already
        quantised); for a LoRA student, the merged file's format, ``"q8_0"`` (default), ``"q4_0"``,
        ``"f16"`` or ``"f32"``. ``device``: 'cpu' or 'auto' (all layers on the GPU when llama.cpp was
        built with one)."""
        from ..weights.merged_gguf import QUANTS, merged_gguf
        from ..weights.resolve import resolve

        try:  # a shipped student's name or an adapter folder, by the rule of every engine
            where = resolve(model)
        except (ModelNotFoundError, TypeError):  # find_gguf says what this engine reads
            where = None
        folder = Path(where.path) if where is not None and where.kind == "adapter" else None
        if folder is not None:
            if adapter is not None:
                raise ValueError(
                    f"{model!r} is already an adapter; adapter= takes a .gguf LoRA for a GGUF model"
                )
            quant = "q8_0" if quantization is None else quantization
            if quant not in QUANTS:
                raise ValueError(
                    f"quantization={quantization!r}: with engine='llama.cpp' a LoRA student is merged into its "
                    f"base as one of {QUANTS}"
                )
            _import_llama_cpp()  # a missing llama-cpp-python fails before the merge is written
            engine = cls.load(merged_gguf(folder, quant), device=device, **kw)
            engine.record_dirs.insert(0, folder)
            return engine
        if quantization is not None:
            raise ValueError(
                f"quantization={quantization!r}: with engine='llama.cpp' the GGUF file is already quantised; "
                "pick a Q4_K_M / Q8_0 file instead"
            )
        if adapter is not None and Path(adapter).is_dir():
            raise ValueError(
                f"adapter={str(adapter)!r} is a folder; llama.cpp takes a LoRA adapter as one .gguf file "
                "(convert a peft adapter with llama.cpp's convert_lora_to_gguf.py)"
            )
        if "n_gpu_layers" not in kw:
            if device in (None, "auto"):
                kw["n_gpu_layers"] = -1 if _import_llama_cpp().llama_supports_gpu_offload() else 0
            elif device == "cpu":
                kw["n_gpu_layers"] = 0
            elif isinstance(device, str) and device.startswith("cuda"):
                if not _import_llama_cpp().llama_supports_gpu_offload():
                    raise ValueError(
                        f"device={device!r} but this llama-cpp-python was built without GPU support; "
                        'reinstall with CMAKE_ARGS="-DGGML_CUDA=on"'
                    )
                kw["n_gpu_layers"] = -1
            else:
                raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', not {device!r}")
        return cls(model, adapter=adapter, **kw)

    def _set_adapter(self, adapter: str | os.PathLike, scale: float) -> None:
        import ctypes

        c = self._c
        path = Path(adapter)
        if not path.is_file():
            raise ModelNotFoundError(f"LoRA adapter not found: {path}")
        lora = c.llama_adapter_lora_init(self._model, str(path).encode())
        if not lora:
            raise GGUFError(f"llama.cpp could not load {path} as a LoRA adapter for {self.path.name}")
        arr = (c.llama_adapter_lora_p_ctypes * 1)(lora)
        scales = (ctypes.c_float * 1)(scale)
        if c.llama_set_adapters_lora(self._ctx, arr, 1, scales) != 0:
            raise RuntimeError(f"llama.cpp could not apply the LoRA adapter {path}")
        self.record_dirs.insert(0, path.parent)

    def close(self) -> None:
        """Free the model and its KV cache now (also done when the engine is garbage-collected)."""
        self._finalizer()

    # ------------------------------------------------------------------ tokens
    def tokenize(self, text: str, special: bool = True) -> list[int]:
        import ctypes

        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (ctypes.c_int32 * cap)()
        n = self._c.llama_tokenize(self._vocab, data, len(data), buf, cap, False, special)
        if n < 0:
            buf = (ctypes.c_int32 * -n)()
            n = self._c.llama_tokenize(self._vocab, data, len(data), buf, -n, False, special)
        return list(buf[:n])

    def prompt_tokens(self, prompt: str) -> list[int]:
        """The prompt's tokens, after the model's BOS when its vocabulary adds one (LLaMA: as the
        reference was trained and served) and the prompt does not already start with it (a chat
        template that writes its own), the rule of every engine (``universalner.tokens``)."""
        bos = [self._bos] if self._add_bos and self._bos >= 0 else []
        return with_prefix(bos, self.tokenize(prompt, special=True))

    def piece(self, token: int, lstrip: bool = False) -> bytes:
        import ctypes

        buf = ctypes.create_string_buffer(64)
        n = self._c.llama_token_to_piece(self._vocab, token, buf, 64, int(lstrip), False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self._c.llama_token_to_piece(self._vocab, token, buf, -n, int(lstrip), False)
        return buf.raw[:n]

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the tokens of ``text``, from the token pieces (for windowing)."""
        ids = self.tokenize(text, special=False)
        spans, raw, prev = [], b"", ""
        for k, t in enumerate(ids):
            raw += self.piece(t, lstrip=k == 0 and self._space_prefix)
            cur = raw.decode("utf-8", errors="ignore")
            spans.append((min(len(prev), len(text)), min(len(cur), len(text))))
            prev = cur
        if prev != text:  # normalising tokenizers: fall back to the safe estimate
            return super().token_offsets(text)
        return spans

    def token_index(self):
        """The vocabulary as bytes for ``constraints.TokenIndex`` (built once; its trie grows as walks need it)."""
        if self._index is None:
            from ..constraints import TokenIndex

            c = self._c
            pieces: list[bytes | None] = []
            for t in range(self.n_vocab):
                if t in self.end_ids or c.llama_vocab_is_control(self._vocab, t):
                    pieces.append(None)
                else:
                    pieces.append(self.piece(t) or None)
            self._index = TokenIndex(pieces, sorted(self.end_ids))
        return self._index

    # ------------------------------------------------------------------ decoding
    def _decode(self, items: list[tuple[int, int, int, bool]]) -> list[Any]:
        """Evaluate (token, position, sequence, want_logits) items; the logits rows asked for, in order."""
        import numpy as np

        c, b = self._c, self._batch
        rows = []
        for start in range(0, len(items), self.n_batch):
            chunk = items[start : start + self.n_batch]
            for i, (tok, pos, seq, want) in enumerate(chunk):
                b.token[i] = tok
                b.pos[i] = pos
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = seq
                b.logits[i] = want
            b.n_tokens = len(chunk)
            rc = c.llama_decode(self._ctx, b)
            if rc != 0:
                raise RuntimeError(f"llama_decode failed ({rc}) on a batch of {len(chunk)} tokens")
            self.stats.decode_calls += 1
            self.stats.tokens += len(chunk)
            for i, (_, _, _, want) in enumerate(chunk):
                if want:
                    ptr = c.llama_get_logits_ith(self._ctx, i)
                    rows.append(np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy())
        return rows

    def _generate(
        self, requests: list[Request], max_new_tokens: int, constrained: bool, penalty: Penalties
    ) -> list[Generation]:
        tokens = [self.prompt_tokens(r.prompt) for r in requests]
        for i, t in enumerate(tokens):
            if len(t) + max_new_tokens > self.n_ctx:
                raise ValueError(
                    f"request {i}: {len(t)} prompt tokens + max_new_tokens={max_new_tokens} exceed the "
                    f"{self.n_ctx} tokens each question may use; pass n_ctx= "
                    f"(the model was trained on {self.n_ctx_train})"
                )
        out: list[Generation | None] = [None] * len(requests)
        with self._lock:
            for wave in self._waves(requests):
                self._run_wave(wave, requests, tokens, max_new_tokens, constrained, out, penalty)
        return out  # type: ignore[return-value]

    def _waves(self, requests: list[Request]) -> list[list[list[int]]]:
        """Units (the questions of one passage, at most ``max_sequences``) packed into waves that fit."""
        groups: dict[Any, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(r.group, []).append(i)
        units = [
            m[k : k + self.max_sequences]
            for m in groups.values()
            for k in range(0, len(m), self.max_sequences)
        ]
        waves: list[list[list[int]]] = []
        for unit in units:
            if waves and sum(map(len, waves[-1])) + len(unit) <= self.max_sequences:
                waves[-1].append(unit)
            else:
                waves.append([unit])
        return waves

    @staticmethod
    def _shared(unit: list[int], tokens: list[list[int]]) -> int:
        """Tokens all prompts of ``unit`` share (each keeps at least one of its own to decode)."""
        first = tokens[unit[0]]
        n = min(len(tokens[i]) for i in unit) - 1
        for i in unit[1:]:
            t = tokens[i]
            k = 0
            while k < n and t[k] == first[k]:
                k += 1
            n = k
        return max(0, n)

    def _run_wave(self, wave, requests, tokens, max_new, constrained, out, penalty: Penalties) -> None:
        import numpy as np

        c = self._c
        c.llama_memory_clear(self._mem, True)
        grammars: dict[str, Any] = {}
        branches: list[_Branch] = []
        shared = [self._shared(unit, tokens) for unit in wave]
        # what every passage of the wave shares (the system text, "Text:"): once, copied to each owner;
        # a piece of one token would take llama.cpp's one-row kernels and change the numbers, so never
        common = (
            _common_prefix([tokens[unit[0]][: shared[u]] for u, unit in enumerate(wave)])
            if len(wave) > 1
            else 0
        )
        if any(n - common == 1 for n in shared):
            common -= 1
        owners, copies, shared_of = [], [], []
        for u, unit in enumerate(wave):
            owner = len(branches)
            owners.append(owner)
            self.stats.shared_tokens += shared[u] * (len(unit) - 1) + (common if u else 0)
            for i in unit:
                seq = len(branches)
                if seq != owner:
                    copies.append((owner, seq))
                constraint = None
                if constrained:
                    passage = requests[i].passage
                    if passage not in grammars:
                        from ..constraints import PassageGrammar

                        grammars[passage] = PassageGrammar(self.token_index(), passage)
                    constraint = grammars[passage].branch(*penalty)
                branches.append(_Branch(i, seq, len(tokens[i]), constraint))
                shared_of.append(shared[u])
        self._decode([(t, p, 0, False) for p, t in enumerate(tokens[wave[0][0]][:common])])
        for owner in owners[1:]:
            c.llama_memory_seq_cp(self._mem, 0, owner, -1, -1)
        prefill = []  # then every passage once
        for u, unit in enumerate(wave):
            first = tokens[unit[0]]
            prefill += [(first[p], p, owners[u], False) for p in range(common, shared[u])]
        self._decode(prefill)
        for owner, seq in copies:
            c.llama_memory_seq_cp(self._mem, owner, seq, -1, -1)
        suffix = []
        for br, shared in zip(branches, shared_of, strict=True):
            t = tokens[br.index]
            suffix += [(tok, p, br.seq, p == len(t) - 1) for p, tok in enumerate(t[shared:], start=shared)]
        for br, row in zip(branches, self._decode(suffix), strict=True):
            br.logits = row
        active = branches
        while active:
            step = []
            for br in active:
                tok = self._choose(br, max_new, np)
                if tok is not None:
                    step.append((tok, br.pos, br.seq, True))
                    br.pos += 1
            active = [br for br in active if not br.done]
            if not active:
                break
            for br, row in zip(active, self._decode(step), strict=True):
                br.logits = row
        for br in branches:
            out[br.index] = self._generation(br, len(tokens[br.index]))
        c.llama_memory_clear(self._mem, True)

    def _choose(self, br: _Branch, max_new: int, np) -> int | None:
        """Greedy next token of one branch (None when it is finished), recording its log-probability.

        Constrained, the log-probability is renormalised over the allowed tokens (a forced token has
        probability 1), as the transformers engine does.
        """
        logits = br.logits
        if br.constraint is not None:
            choices = br.constraint.allowed(max_new - len(br.ids) - 1)
            if len(choices.ids) == 1:
                tok, lp = choices.ids[0], 0.0
            else:
                ids = choices.memo.get("np")
                if ids is None:
                    ids = choices.memo["np"] = np.asarray(choices.ids, dtype=np.int64)
                sub = logits[ids]
                j = choose(sub, br.constraint, choices, np.argmax)
                tok = int(ids[j])
                lp = float(sub[j]) - _logsumexp(sub, np)
        else:
            tok = int(np.argmax(logits))
            lp = float(logits[tok]) - _logsumexp(logits, np)
        if tok in self.end_ids:
            br.done = True
            return None
        br.ids.append(tok)
        br.logprobs.append(lp)
        if br.constraint is not None:
            br.constraint.advance(tok)
            if br.constraint.complete:  # only an end token can follow: no need to compute it
                br.done = True
                return None
        if len(br.ids) >= max_new:
            br.done = True
            return None
        return tok

    def _generation(self, br: _Branch, prompt_tokens: int) -> Generation:
        """Text and per-token spans, decoding growing prefixes like the transformers engine does."""
        spans, raw, prev = [], b"", ""
        for k, (tok, lp) in enumerate(zip(br.ids, br.logprobs, strict=True)):
            # a constrained answer is spelled from its tokens' bytes exactly, like the transformers engine's
            raw += self.piece(tok, lstrip=k == 0 and self._space_prefix and br.constraint is None)
            cur = raw.decode("utf-8", errors="ignore")
            spans.append((len(prev), len(cur), lp if lp > -1e4 else -1e4))
            prev = cur
        eos = self.tokenizer.eos_token
        if eos and eos in prev:  # the end-of-sequence string written as text
            cut = prev.index(eos)
            prev = prev[:cut]
            spans = [(s, min(e, cut), lp) for s, e, lp in spans if s < cut]
        return Generation(prev, spans, prompt_tokens)


@dataclass
class LlamaStats:
    """What llama.cpp was made to compute (summed over calls): ``tokens`` evaluated in ``decode_calls``
    batches, and ``shared_tokens``: prompt tokens not evaluated because questions shared a passage."""

    tokens: int = 0
    decode_calls: int = 0
    shared_tokens: int = 0


def _common_prefix(seqs: list[list[int]]) -> int:
    n = min(map(len, seqs))
    for s in seqs[1:]:
        k = 0
        while k < n and s[k] == seqs[0][k]:
            k += 1
        n = k
    return n


def _logsumexp(x, np) -> float:
    top = float(x.max())
    return top + float(np.log(np.exp(x - top).sum()))


def _free(llama_cpp, model, ctx, batch) -> None:
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
