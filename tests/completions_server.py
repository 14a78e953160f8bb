"""A real OpenAI-compatible HTTP server on 127.0.0.1 that answers with a real model (transformers engine).

Used by the tests of ``engine="openai"`` when llama.cpp's own server (``llama-cpp-python[server]``)
is not installed. It speaks ``GET /v1/models``, ``POST /v1/completions`` (raw prompt, legacy
logprobs: tokens, token_logprobs, text_offset) and ``POST /v1/chat/completions`` (the tokenizer's
chat template, logprobs as content[{token, logprob, bytes}]), greedy only. Knobs for the tests:
``fail_first`` answers that many requests with 503 first (retries), ``completions=False`` removes the
completions endpoint (chat fallback), and ``max_in_flight`` records how many requests were open at once.

Grammars (``constrained=True``): ``grammar=`` names the one request field the server takes a GBNF
grammar from, as the real servers do, and decoding then follows it through llguidance (the grammar
engine of vLLM's ``guidance`` backend and of llama.cpp built with ``LLAMA_LLGUIDANCE``; every
tokenization of the allowed bytes allowed, as in llama.cpp's own engine and xgrammar):

* ``"grammar"``: llama.cpp's servers. Log-probabilities are over the whole vocabulary, before the
  grammar (llama-server without ``post_sampling_probs``; llama-cpp-python's server).
* ``"structured_outputs"`` (``{"grammar": ...}``, vLLM >= 0.11) and ``"guided_grammar"`` (older vLLM):
  log-probabilities of the logits after the grammar's mask, i.e. renormalised over the allowed tokens.

A grammar in any other field is refused (400). ``owner`` and ``version`` are what ``/v1/models``
(``owned_by``) and ``/version`` report, which is how the engine picks the field. ``bodies`` keeps
every request body received.

Run by hand: ``python tests/completions_server.py MODEL_FOLDER --port 8000``.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from universalner.engines.base import Engine, Generation, Request

GRAMMAR_FIELDS = ("grammar", "guided_grammar", "structured_outputs")


def gbnf_spec(gbnf: str) -> str:
    """A GBNF grammar as an llguidance grammar, with every tokenization of the allowed bytes allowed.

    llguidance by default lets only the canonical tokens spell bytes the grammar forces (inside a
    mention: the rest of a word); llama.cpp's grammar engine and xgrammar (vLLM's default) allow any
    token whose bytes fit, and so does the library's own constraint. ``no_forcing`` is that rule.
    """
    import llguidance
    from llguidance.gbnf_to_lark import any_to_lark

    try:
        lark = any_to_lark(gbnf)
    except Exception as e:  # noqa: BLE001 - the converter raises anything on bad input
        raise ValueError(f"the grammar does not parse as GBNF: {e}") from e
    head = "%llguidance {}"
    lark = lark.replace(head, "", 1) if lark.startswith(head) else lark
    return llguidance.LLMatcher.grammar_from_lark('%llguidance {"no_forcing": true}\n' + lark)


class CompletionsServer:
    """Serve ``engine`` under the name ``model_name``; ``start()`` returns the base URL."""

    def __init__(
        self,
        engine: Engine,
        model_name: str,
        port: int = 0,
        fail_first: int = 0,
        completions: bool = True,
        delay: float = 0.0,
        grammar: str | None = None,
        owner: str | None = None,
        version: str | None = None,
    ):
        if grammar not in (None, *GRAMMAR_FIELDS):
            raise ValueError(f"grammar must be None or one of {GRAMMAR_FIELDS}, not {grammar!r}")
        self.engine = engine
        self.model_name = model_name
        self.fail_first = fail_first
        self.completions = completions
        self.delay = delay
        self.grammar = grammar
        self.owner = owner
        self.version = version
        self._llg_tokenizer: Any = None
        self.hits: dict[str, int] = {}
        self.prompts: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._count = threading.Lock()
        self._model = threading.Lock()  # one generation at a time: the engine is not thread-safe
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def start(self) -> str:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> CompletionsServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ answering
    def _grammar_of(self, body: dict[str, Any]) -> str | None:
        """The GBNF grammar of a request, from the one field this server takes; others are refused."""
        sent = [f for f in GRAMMAR_FIELDS if body.get(f)]
        if not sent:
            return None
        if self.grammar is None:
            raise ValueError("this server does not support grammars")
        if sent != [self.grammar]:
            raise ValueError(f"unknown field(s) {sent}: this server takes a grammar as {self.grammar!r}")
        value = body[self.grammar]
        if self.grammar == "structured_outputs":
            if not isinstance(value, dict) or not isinstance(value.get("grammar"), str):
                raise ValueError('structured_outputs must be {"grammar": "<GBNF>"}')
            value = value["grammar"]
        if not isinstance(value, str):
            raise ValueError(f"{self.grammar} must be a GBNF string")
        return value

    def _generate(self, prompt: str, body: dict[str, Any]) -> Generation:
        grammar = self._grammar_of(body)
        if float(body.get("temperature", 1.0)) != 0.0:
            raise ValueError("this server only decodes greedily: send temperature=0")
        max_tokens = int(body.get("max_tokens") or 16)
        with self._model:
            self.prompts.append(prompt)
            if grammar is None:
                (gen,) = self.engine.generate([Request(prompt, "")], max_new_tokens=max_tokens)
            else:
                gen = self._generate_with_grammar(prompt, grammar, max_tokens)
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else stops
        cut = min((gen.text.find(s) for s in stops if s in gen.text), default=-1)
        if cut >= 0:
            gen = Generation(gen.text[:cut], [t for t in gen.token_spans if t[0] < cut], gen.prompt_tokens)
        return gen

    def _generate_with_grammar(self, prompt: str, gbnf: str, max_tokens: int) -> Generation:
        """Greedy decoding under a GBNF grammar (llguidance's token mask), one token at a time with a
        KV cache; the prompt is tokenized as vLLM does (``add_special_tokens=True``). Stops at the end
        token, which the grammar allows once the answer is complete, or after ``max_tokens`` (a grammar
        has no length budget: the answer may be cut off)."""
        import llguidance
        import llguidance.hf
        import torch

        tok, model = self.engine.tokenizer, self.engine.model
        if self._llg_tokenizer is None:
            self._llg_tokenizer = llguidance.hf.from_tokenizer(tok)
        matcher = llguidance.LLMatcher(self._llg_tokenizer, gbnf_spec(gbnf))
        if matcher.is_error():
            raise ValueError(f"the grammar does not compile: {matcher.get_error()[:500]}")
        n_vocab = self._llg_tokenizer.vocab_size
        shifts = torch.arange(32, dtype=torch.int32)
        prompt_ids = tok(prompt, add_special_tokens=True)["input_ids"]
        x, past = torch.tensor([prompt_ids]), None
        ids: list[int] = []
        lps: list[float] = []
        masked_logprobs = self.grammar != "grammar"
        with torch.inference_mode():
            while len(ids) < max_tokens:
                res = model(input_ids=x, past_key_values=past, use_cache=True)
                past = res.past_key_values
                logits = res.logits[0, -1].float()
                words = torch.frombuffer(bytearray(matcher.compute_bitmask()), dtype=torch.int32)
                ok = ((words[:, None] >> shifts) & 1).reshape(-1)[:n_vocab].bool()
                allowed = torch.full_like(logits, float("-inf"))
                allowed[:n_vocab] = logits[:n_vocab].masked_fill(~ok, float("-inf"))
                t = int(allowed.argmax())
                if t == tok.eos_token_id:
                    break
                lp = torch.log_softmax(allowed if masked_logprobs else logits, -1)[t]
                ids.append(t)
                lps.append(float(lp))
                if not matcher.consume_token(t):
                    raise RuntimeError(f"llguidance refused token {t} it allowed: {matcher.get_error()}")
                x = torch.tensor([[t]])
        return self.engine.detokenize(ids, lps, prompt_tokens=len(prompt_ids))

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise ValueError("prompt must be a string")
        gen = self._generate(prompt, body)
        logprobs = None
        if body.get("logprobs"):
            logprobs = {
                "tokens": [gen.text[s:e] for s, e, _ in gen.token_spans],
                "token_logprobs": [lp for _, _, lp in gen.token_spans],
                "text_offset": [len(prompt) + s for s, _, _ in gen.token_spans],
                "top_logprobs": None,
            }
        choice = {"index": 0, "text": gen.text, "logprobs": logprobs, "finish_reason": "stop"}
        return self._envelope("text_completion", choice, gen)

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ValueError("messages must be a non-empty list")
        prompt = self.engine.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        gen = self._generate(prompt, body)
        logprobs = None
        if body.get("logprobs"):
            content = []
            for s, e, lp in gen.token_spans:
                piece = gen.text[s:e]
                content.append(
                    {"token": piece, "logprob": lp, "bytes": list(piece.encode()), "top_logprobs": []}
                )
            logprobs = {"content": content}
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": gen.text},
            "logprobs": logprobs,
            "finish_reason": "stop",
        }
        return self._envelope("chat.completion", choice, gen)

    def _envelope(self, kind: str, choice: dict[str, Any], gen: Generation) -> dict[str, Any]:
        n = len(gen.token_spans)
        return {
            "id": f"cmpl-{time.monotonic_ns()}",
            "object": kind,
            "created": int(time.time()),
            "model": self.model_name,
            "choices": [choice],
            "usage": {
                "prompt_tokens": gen.prompt_tokens,
                "completion_tokens": n,
                "total_tokens": gen.prompt_tokens + n,
            },
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet under pytest
                pass

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, message: str) -> None:
                self._send(
                    status, {"error": {"message": message, "type": "invalid_request_error", "code": status}}
                )

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    model = {"id": server.model_name, "object": "model"}
                    if server.owner:
                        model["owned_by"] = server.owner
                    self._send(200, {"object": "list", "data": [model]})
                elif self.path.rstrip("/") == "/version" and server.version:
                    self._send(200, {"version": server.version})
                else:
                    self._error(404, f"no route {self.path}")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                route = self.path.rstrip("/")
                with server._count:
                    server.hits[route] = server.hits.get(route, 0) + 1
                    failing = server.fail_first > 0
                    if failing:
                        server.fail_first -= 1
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    if server.delay:
                        time.sleep(server.delay)
                    if failing:
                        return self._error(503, "overloaded, try again")
                    try:
                        body = json.loads(raw or b"{}")
                    except json.JSONDecodeError as e:
                        return self._error(400, f"body is not JSON: {e}")
                    with server._count:
                        server.bodies.append(body)
                    if body.get("model") != server.model_name:
                        return self._error(404, f"The model `{body.get('model')}` does not exist.")
                    if route == "/v1/completions" and server.completions:
                        return self._send(200, server.completion(body))
                    if route == "/v1/chat/completions":
                        return self._send(200, server.chat(body))
                    return self._error(404, f"no route {self.path}")
                except ValueError as e:
                    return self._error(400, str(e))
                finally:
                    with server._count:
                        server.in_flight -= 1

        return Handler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a model folder or .gguf file (loaded with the transformers engine)")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--name", default=None, help="the served model name (default: the model argument)")
    ap.add_argument(
        "--grammar", choices=GRAMMAR_FIELDS, default=None, help="take GBNF grammars in this field"
    )
    args = ap.parse_args()
    from universalner.engines.hf import HFEngine

    engine = HFEngine.load(args.model, device="cpu")
    server = CompletionsServer(engine, args.name or args.model, port=args.port, grammar=args.grammar)
    print(f"serving {server.model_name!r} at {server.base_url}", flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
