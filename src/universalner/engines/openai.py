"""Any OpenAI-compatible server (vLLM, llama.cpp's server, TGI) as an engine: how one outgrows a machine.

Prompts are rendered here, by the template, and sent raw to the completions endpoint so the model sees
the UniNER layout byte for byte; servers without that endpoint get the same conversation as chat
messages. Requests go out ``max_concurrency`` at a time, the questions about one passage next to
each other so the server's prefix cache computes the passage once; failed calls (connection errors,
429, 5xx) are retried with exponential backoff by the ``openai`` client. Scores come from the
log-probabilities the server returns. With ``constrained=True`` these are what the server makes of
them: vLLM computes them after the grammar's mask, i.e. renormalised over the allowed tokens as the
local engines do; llama.cpp's servers take them over the whole vocabulary, before the grammar, which
gives lower scores (docs/engines.md).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..constraints import Penalties
from ..prompts import ACK, LLAMA_EOS, SYSTEM, passage_turn, question_turn
from ..tokens import prefix_text
from ..weights.errors import ModelNotFoundError
from .base import Engine, Generation, Request

log = logging.getLogger(__name__)

ENDPOINTS = ("auto", "completions", "chat")
#: how servers take a grammar: llama.cpp (its own server and llama-cpp-python's) and vLLM (old and new)
GRAMMAR_FIELDS = ("grammar", "guided_grammar", "structured_outputs")


class ServerError(RuntimeError):
    """The server could not be reached or refused a request, with what to do about it."""


def load_tokenizer(source: Any) -> Any:
    """A transformers tokenizer from a folder, a ``.gguf`` file or a hub id; an object is used as it is."""
    if source is None or not isinstance(source, (str, os.PathLike)):
        return source
    from transformers import AutoTokenizer

    path = Path(os.path.expanduser(str(source)))
    if path.suffix.lower() == ".gguf":
        from ..weights.gguf import GGUFTokenizer

        return GGUFTokenizer.from_file(path)
    if path.is_dir():
        return AutoTokenizer.from_pretrained(str(path))
    try:  # a hub id: only from the local cache, a server-side model must not wait on the hub
        return AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    except OSError as e:
        raise ValueError(
            f"tokenizer {source!r} is neither a folder, a .gguf file nor a cached hub id; "
            "pass the student's folder (or tokenizer=None for the UniNER layout with '</s>')"
        ) from e


def _auto_tokenizer(model: str) -> Any:
    """The student's tokenizer when ``model`` names something local, else None (UniNER layout).

    A LoRA adapter served by name (vLLM --lora-modules) has its base's tokenizer, the base found by the
    rule of every engine (``weights.resolve.Location.base``)."""
    where = _where(model)
    if (
        where is not None
        and where.kind == "adapter"
        and not (Path(where.path) / "tokenizer_config.json").is_file()
    ):
        try:
            base = where.base()
        except (ModelNotFoundError, ValueError, OSError):
            return None
        return _auto_tokenizer(str(base.path))
    path = Path(os.path.expanduser(model))
    if path.is_dir() or (path.suffix.lower() == ".gguf" and path.is_file()):
        return load_tokenizer(path)
    try:
        return load_tokenizer(model)
    except (ValueError, OSError):
        return None


def _where(model: str) -> Any:
    """``weights.resolve.resolve(model)``, or None where it names nothing here (a served name)."""
    from ..weights.resolve import resolve

    try:
        return resolve(model)
    except (ModelNotFoundError, TypeError):
        return None


def conversation_messages(prompt: str, passage: str) -> list[dict[str, str]]:
    """The chat messages of a UniNER prompt (for servers without a completions endpoint).

    The engine sees only the rendered prompt, so the question and the data set name are read back
    out of it with the template's own turn builders; the messages are then exactly those the chat
    layout renders (system text, passage turn, acknowledgement, question).
    """
    q_head, q_tail = question_turn("\0").split("\0")
    i, j = prompt.rfind(q_head), prompt.rfind(q_tail)
    if i < 0 or j < i + len(q_head):
        raise ValueError(
            "the chat endpoint needs the conversation, and this prompt is not a UniNER question "
            f"(no {q_head!r}...{q_tail!r} in it); use a server with a completions endpoint"
        )
    label = prompt[i + len(q_head) : j]
    d_head, d_tail = passage_turn(passage, "\0").split("\0")
    dataset = None
    k = prompt.find(d_tail)
    if k >= 0:
        h = prompt.rfind(d_head, 0, k)
        if h >= 0 and "\n" not in prompt[h + len(d_head) : k]:
            dataset = prompt[h + len(d_head) : k]
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": passage_turn(passage, dataset)},
        {"role": "assistant", "content": ACK},
        {"role": "user", "content": question_turn(label)},
    ]


def _spans_from_pieces(text: str, pieces: list[str], logprobs: list[float | None]) -> list[tuple]:
    """(start, end, logprob) per token from the token strings a server returns, clipped to ``text``."""
    spans, pos = [], 0
    for piece, lp in zip(pieces, logprobs, strict=False):
        if pos >= len(text):
            break  # tokens of a stop string the server cut from the text
        end = min(pos + len(piece), len(text))
        spans.append((pos, end, float(lp) if lp is not None else -1e4))
        pos = end
    return spans


def completion_generation(choice: Any, usage: Any) -> Generation:
    """A completions-endpoint choice as a Generation (logprobs in the legacy tokens/offsets form)."""
    text = choice.text or ""
    spans: list[tuple] = []
    lp = getattr(choice, "logprobs", None)
    if lp is not None and lp.tokens and lp.token_logprobs:
        if "".join(lp.tokens).startswith(text):
            spans = _spans_from_pieces(text, list(lp.tokens), list(lp.token_logprobs))
        elif lp.text_offset and len(lp.text_offset) == len(lp.tokens):
            base = lp.text_offset[0]
            ends = [o - base for o in lp.text_offset[1:]] + [len(text)]
            spans = [
                (o - base, min(e, len(text)), float(p) if p is not None else -1e4)
                for o, e, p in zip(lp.text_offset, ends, lp.token_logprobs, strict=True)
                if o - base < len(text)
            ]
    return Generation(text, spans, int(getattr(usage, "prompt_tokens", 0) or 0))


def chat_generation(choice: Any, usage: Any) -> Generation:
    """A chat-endpoint choice as a Generation (logprobs as per-token bytes, decoded incrementally)."""
    text = choice.message.content or ""
    spans: list[tuple] = []
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if content:
        raw, prev = b"", ""
        pieces = []
        for t in content:
            raw += bytes(t.bytes) if t.bytes is not None else t.token.encode()
            cur = raw.decode("utf-8", errors="ignore")
            pieces.append(cur[len(prev) :] if cur.startswith(prev) else t.token)
            prev = cur
        spans = _spans_from_pieces(text, pieces, [t.logprob for t in content])
    return Generation(text, spans, int(getattr(usage, "prompt_tokens", 0) or 0))


def _cut_at_stop(gen: Generation, stops: Sequence[str]) -> Generation:
    """Servers differ on whether a stop string is kept; the answer never includes it."""
    cut = min((gen.text.find(s) for s in stops if s and s in gen.text), default=-1)
    if cut < 0:
        return gen
    spans = [(s, min(e, cut), lp) for s, e, lp in gen.token_spans if s < cut]
    return Generation(gen.text[:cut], spans, gen.prompt_tokens)


class OpenAIEngine(Engine):
    """Greedy answers from an OpenAI-compatible server; see the module docstring."""

    name = "openai"

    def __init__(
        self,
        client: Any,
        model: str,
        tokenizer: Any = None,
        endpoint: str = "auto",
        max_concurrency: int = 8,
        logprobs: bool = True,
        grammar_field: str = "auto",
        extra_body: dict[str, Any] | None = None,
    ):
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {ENDPOINTS}, not {endpoint!r}")
        if grammar_field not in ("auto", *GRAMMAR_FIELDS):
            raise ValueError(
                f"grammar_field must be 'auto' or one of {GRAMMAR_FIELDS}, not {grammar_field!r}"
            )
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"max_concurrency must be a positive integer, not {max_concurrency!r}")
        self.client = client
        self.model = model
        self.tokenizer = tokenizer
        self.endpoint = endpoint
        #: the endpoint in use: "chat" from the start, or once the server turned out to have no completions
        self.using = "chat" if endpoint == "chat" else "completions"
        self.max_concurrency = max_concurrency
        self.logprobs = logprobs
        #: how the server takes constrained decoding's grammar; "auto" means "grammar" (llama.cpp)
        self.grammar_field = "grammar" if grammar_field == "auto" else grammar_field
        self.extra_body = dict(extra_body or {})
        self._lock = threading.Lock()
        self.record_dirs: list[Path] = []

    @classmethod
    def load(
        cls,
        model,
        quantization=None,
        device="auto",
        adapter=None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        served_model: str | None = None,
        tokenizer: Any = "auto",
        max_retries: int = 5,
        timeout: float = 300.0,
        check: bool = True,
        **kw,
    ) -> OpenAIEngine:
        """Connect to the server at ``base_url`` (default ``$OPENAI_BASE_URL`` or 127.0.0.1:8000/v1).

        ``model`` names the student; the server is asked for ``served_model`` (default: ``model``).
        ``tokenizer="auto"`` reads the student's tokenizer (for its chat template) when ``model`` is a
        local folder or ``.gguf``; None means the UniNER layout with ``"</s>"``.
        """
        import openai

        if quantization is not None:
            raise ValueError(
                "quantization is chosen by the server with engine='openai' (e.g. vLLM --quantization awq)"
            )
        if adapter is not None:
            raise ValueError(
                "adapters are loaded by the server with engine='openai' "
                "(vLLM: --enable-lora --lora-modules name=path, then served_model='name')"
            )
        if device not in (None, "auto"):
            raise ValueError("device is chosen by the server with engine='openai'; leave device='auto'")
        if not isinstance(model, (str, os.PathLike)) or not str(model).strip():
            raise TypeError(f"model must name the served student, not {model!r}")
        model = str(model)
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or "http://127.0.0.1:8000/v1"
        client = openai.OpenAI(
            base_url=base_url,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
            max_retries=max_retries,
            timeout=timeout,
        )
        tok = _auto_tokenizer(model) if tokenizer == "auto" else load_tokenizer(tokenizer)
        served = served_model or model
        if check:
            served, owner = _check_server(client, base_url, served, explicit=served_model is not None)
            if kw.get("grammar_field", "auto") == "auto" and owner == "vllm":
                kw["grammar_field"] = vllm_grammar_field(_server_version(base_url))
        engine = cls(client, served, tok, **kw)
        where, path = _where(model), Path(os.path.expanduser(model))
        engine.record_dirs = (
            [Path(where.path)]
            if where is not None and where.kind == "adapter"
            else [path]
            if path.is_dir()
            else []
        )
        return engine

    # ------------------------------------------------------------------ requests
    @property
    def stop(self) -> list[str]:
        return [self.eos_token or LLAMA_EOS]

    def _body(self, req: Request, constrained: bool) -> dict[str, Any]:
        body = dict(self.extra_body)
        if constrained:
            from ..constraints import passage_grammar

            grammar = passage_grammar(req.passage)
            body[self.grammar_field] = (
                {"grammar": grammar} if self.grammar_field == "structured_outputs" else grammar
            )
        return body

    def server_prompt(self, prompt: str) -> str:
        """The prompt as sent to the completions endpoint, so that the model sees one BOS.

        Servers tokenize a completions prompt with the model's special tokens (vLLM's
        ``add_special_tokens=True`` default, llama.cpp's server, TGI): a BOS the student's tokenizer adds
        (LLaMA's ``<s>``) is added there, as for the released UniNER students served by vLLM. A prompt
        that already starts with it (a chat template that writes its own) loses it here instead of
        getting a second one; with no tokenizer (UniNER layout) the prompt is sent as it is.
        """
        cached = getattr(self, "_bos", None)
        if cached is None or cached[0] is not self.tokenizer:
            cached = self._bos = (self.tokenizer, prefix_text(self.tokenizer))
        bos = cached[1]
        return prompt[len(bos) :] if bos and prompt.startswith(bos) else prompt

    def _complete(self, req: Request, max_new_tokens: int, constrained: bool) -> Generation:
        res = self.client.completions.create(
            model=self.model,
            prompt=self.server_prompt(req.prompt),
            max_tokens=max_new_tokens,
            temperature=0.0,
            logprobs=1 if self.logprobs else None,
            stop=self.stop,
            extra_body=self._body(req, constrained) or None,
        )
        return completion_generation(res.choices[0], res.usage)

    def _chat(self, req: Request, max_new_tokens: int, constrained: bool) -> Generation:
        res = self.client.chat.completions.create(
            model=self.model,
            messages=conversation_messages(req.prompt, req.passage),
            max_tokens=max_new_tokens,
            temperature=0.0,
            logprobs=self.logprobs or None,
            stop=self.stop,
            extra_body=self._body(req, constrained) or None,
        )
        return chat_generation(res.choices[0], res.usage)

    def _one(self, req: Request, max_new_tokens: int, constrained: bool) -> Generation:
        import openai

        try:
            if self.using == "chat":
                gen = self._chat(req, max_new_tokens, constrained)
            else:
                try:
                    gen = self._complete(req, max_new_tokens, constrained)
                except openai.APIStatusError as e:
                    if self.endpoint != "auto" or e.status_code not in (404, 405, 501):
                        raise
                    with self._lock:
                        if self.using != "chat":
                            log.warning("the server offers no completions endpoint (%s); using chat", e)
                            self.using = "chat"
                    gen = self._chat(req, max_new_tokens, constrained)
        except openai.APIConnectionError as e:
            raise ServerError(f"lost the server at {self.client.base_url}: {e}") from e
        except openai.APIStatusError as e:
            hint = ""
            if constrained and e.status_code == 400:
                hint = (
                    f" (constrained=True sends a GBNF grammar as {self.grammar_field!r}: llama.cpp servers take "
                    "'grammar', vLLM 'structured_outputs' (>= 0.11) or 'guided_grammar'; pass grammar_field=, "
                    "or constrained=False for servers without grammars)"
                )
            elif "logprobs" in str(e) or "logits_all" in str(e):
                hint = " (llama-cpp-python's server gives logprobs only with --logits_all true; or pass logprobs=False)"
            raise ServerError(
                f"the server at {self.client.base_url} answered {e.status_code} to a request: {e}{hint}"
            ) from e
        return _cut_at_stop(gen, self.stop)

    def penalties(self, list_threshold: float = 0.5, continue_threshold: float = 0.5) -> Penalties:
        """Only 0.5 for both: the server decodes, and the list decisions cannot be moved there."""
        if list_threshold != 0.5 or continue_threshold != 0.5:
            raise ValueError(
                "engine 'openai' cannot move the list decisions (list_threshold, continue_threshold): the "
                "server decodes; use 0.5 for both or the transformers or llama.cpp engine"
            )
        return Penalties()

    def _generate(
        self, requests: list[Request], max_new_tokens: int, constrained: bool, penalty: Penalties
    ) -> list[Generation]:
        # the questions of one passage leave together, so the server's prefix cache sees them close
        order = sorted(range(len(requests)), key=lambda i: (requests[i].group, i))
        out: list[Generation | None] = [None] * len(requests)
        workers = min(self.max_concurrency, len(requests))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="universalner-openai") as pool:
            futures = {i: pool.submit(self._one, requests[i], max_new_tokens, constrained) for i in order}
            for i, fut in futures.items():
                out[i] = fut.result()
        return out  # type: ignore[return-value]


def vllm_grammar_field(version: str | None) -> str:
    """vLLM took grammars as ``guided_grammar`` until 0.10 and as ``structured_outputs`` since
    (the old field was removed in 0.12); an unknown version is taken to be a recent one."""
    m = re.match(r"(\d+)\.(\d+)", version or "")
    if m and (int(m.group(1)), int(m.group(2))) < (0, 11):
        return "guided_grammar"
    return "structured_outputs"


def _server_version(base_url: str) -> str | None:
    """vLLM's ``GET /version`` (next to ``/v1``), or None."""
    import httpx

    root = re.sub(r"/v1/?$", "", base_url.rstrip("/"))
    try:
        return str(httpx.get(root + "/version", timeout=10).json().get("version"))
    except (httpx.HTTPError, ValueError, AttributeError):
        return None


def _check_server(client: Any, base_url: str, served: str, explicit: bool) -> tuple[str, str | None]:
    """Fail at load, with the served names, rather than at the first question; (name, owner)."""
    import openai

    try:
        listed = list(client.models.list())
        ids = [m.id for m in listed]
        owners = {m.id: getattr(m, "owned_by", None) for m in listed}
    except openai.APIConnectionError as e:
        raise ServerError(
            f"no OpenAI-compatible server answers at {base_url} ({e}); start one, e.g.\n"
            f"    vllm serve {served} --enable-prefix-caching\n"
            "or pass base_url='http://host:port/v1'"
        ) from e
    except openai.APIStatusError:
        return served, None  # a server without /models: trust the name
    if not ids or served in ids:
        return served, owners.get(served)
    if not explicit and len(ids) == 1 and (_same_file(served, ids[0]) or Path(served).expanduser().exists()):
        # a local student given for its tokenizer, and a server with one model: that one is the student
        if not _same_file(served, ids[0]):
            log.info("the server at %s serves one model, %r: using it for %s", base_url, ids[0], served)
        return ids[0], owners.get(ids[0])
    raise ServerError(
        f"the server at {base_url} does not serve {served!r}; it serves {ids}. "
        "Pass served_model=<one of these> (and the student's folder as the model, for its tokenizer)."
    )


def _same_file(a: str, b: str) -> bool:
    """llama.cpp's server names a model by the path it was given, which may be spelled differently."""
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve() or re.sub(
            r".*/", "", a
        ) == re.sub(r".*/", "", b)
    except OSError:
        return False
