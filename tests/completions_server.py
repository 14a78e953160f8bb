"""A real OpenAI-compatible HTTP server on 127.0.0.1 that answers with a real model (transformers engine).

Used by the tests of ``engine="openai"`` when llama.cpp's own server (``llama-cpp-python[server]``)
is not installed. It speaks ``GET /v1/models``, ``POST /v1/completions`` (raw prompt, legacy
logprobs: tokens, token_logprobs, text_offset) and ``POST /v1/chat/completions`` (the tokenizer's
chat template, logprobs as content[{token, logprob, bytes}]), greedy only. Knobs for the tests:
``fail_first`` answers that many requests with 503 first (retries), ``completions=False`` removes the
completions endpoint (chat fallback), and ``max_in_flight`` records how many requests were open at once.

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
    ):
        self.engine = engine
        self.model_name = model_name
        self.fail_first = fail_first
        self.completions = completions
        self.delay = delay
        self.hits: dict[str, int] = {}
        self.prompts: list[str] = []
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
    def _generate(self, prompt: str, body: dict[str, Any]) -> Generation:
        if body.get("grammar") or body.get("guided_grammar") or body.get("structured_outputs"):
            raise ValueError("this server does not support grammars")
        if float(body.get("temperature", 1.0)) != 0.0:
            raise ValueError("this server only decodes greedily: send temperature=0")
        max_tokens = int(body.get("max_tokens") or 16)
        with self._model:
            self.prompts.append(prompt)
            (gen,) = self.engine.generate([Request(prompt, "")], max_new_tokens=max_tokens)
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else stops
        cut = min((gen.text.find(s) for s in stops if s in gen.text), default=-1)
        if cut >= 0:
            gen = Generation(gen.text[:cut], [t for t in gen.token_spans if t[0] < cut], gen.prompt_tokens)
        return gen

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
                    self._send(
                        200, {"object": "list", "data": [{"id": server.model_name, "object": "model"}]}
                    )
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
    args = ap.parse_args()
    from universalner.engines.hf import HFEngine

    engine = HFEngine.load(args.model, device="cpu")
    server = CompletionsServer(engine, args.name or args.model, port=args.port)
    print(f"serving {server.model_name!r} at {server.base_url}", flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
