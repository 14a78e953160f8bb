"""A real chat-completions server on 127.0.0.1 that plays the teacher, for tests and benchmarks.

Standard library only. It answers the distillation prompt with a list of (entity, type) tuples
found by a capitalisation heuristic, in several syntaxes, and can misbehave on purpose: malformed
answers, 429s, 500s, answers slower than the client's timeout, a refused key. Every request is
counted per passage (``GET /stats``), so tests can prove that no call was made twice.

    python tests/teacher_server.py --latency 0.1        # prints its base URL, serves until killed
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TYPES = [
    "person",
    "location",
    "organization",
    "date",
    "country",
    "event",
    "product",
    "city",
    "work of art",
    "award",
]
_CAPS = re.compile(r"\b[A-Z][\w'-]*(?:\s+(?:of\s+|the\s+|de\s+)?[A-Z][\w'-]*)*")
_YEAR = re.compile(r"\b(?:1[5-9]\d\d|20\d\d)\b")
_SKIP = {
    "The",
    "A",
    "An",
    "It",
    "In",
    "On",
    "This",
    "That",
    "He",
    "She",
    "They",
    "We",
    "I",
    "If",
    "But",
    "And",
}


def passage_of(messages: list[dict]) -> str:
    """The passage inside the teacher prompt (after ``Passage: `` or ``Paragraph: ``)."""
    user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    for marker in ("\n\nPassage: ", "\n\nParagraph: "):
        if marker in user:
            return user.split(marker, 1)[1]
    return user


def key_of(passage: str) -> str:
    return hashlib.sha1(passage.encode()).hexdigest()[:16]


def _h(s: str, salt: str = "") -> int:
    return int(hashlib.md5((salt + s).encode()).hexdigest()[:8], 16)


def entities(passage: str) -> list[tuple[str, str]]:
    """Deterministic (mention, type) pairs: capitalised phrases and years, types skewed Zipf-like."""
    found: list[tuple[str, str]] = []
    for m in _CAPS.finditer(passage):
        text = m.group(0)
        if text in _SKIP or len(text) < 3:
            continue
        r = _h(text) % 100
        typ = TYPES[0] if r < 35 else TYPES[1] if r < 55 else TYPES[2] if r < 70 else TYPES[3 + r % 7]
        found.append((text, typ))
    found += [(m.group(0), "date") for m in _YEAR.finditer(passage)]
    seen, out = set(), []
    for pair in found:
        if pair not in seen:
            seen.add(pair)
            out.append(pair)
    return out[:12]


def answer(passage: str, malformed_rate: float = 0.0, definition: bool = False) -> str:
    """The teacher's reply: usually a tuple list (in one of several syntaxes), with planted noise."""
    h = _h(passage)
    if malformed_rate and (h % 1000) < malformed_rate * 1000:
        return [
            "I'm sorry, but I cannot identify entities in this passage.",
            '[("unterminated, "person"), (',
            "Entities: none found.",
        ][h % 3]
    pairs = entities(passage)
    if h % 5 == 0:
        pairs.append(("something", ["misc", "NONE", "other", "n/a"][h % 4]))  # an ELSE-like type
    if h % 7 == 0:
        pairs.append(("Atlantis Corporation Ltd", "organization"))  # not in the passage
    if h % 11 == 0:
        pairs.append(("北京", "city"))  # not in the passage, not English
    if definition:
        pairs = [(m, f"A {t} is a kind of named thing.") for m, t in pairs]
    style = (h // 7) % 5
    if style == 0:
        return json.dumps([list(p) for p in pairs], ensure_ascii=False)
    if style == 1:
        return (
            "[" + ", ".join(f"('{m}', '{t}')" if "'" not in m else f'("{m}", "{t}")' for m, t in pairs) + "]"
        )
    if style == 2:
        body = "[" + ", ".join(f'("{m}", "{t}")' for m, t in pairs) + "]"
        return f"Here are the entities:\n```python\n{body}\n```"
    if style == 3:
        return "\n".join(f'{i}. ("{m}", "{t}")' for i, (m, t) in enumerate(pairs, 1))
    return "[" + ", ".join(f'("{m}", "{t}")' for m, t in pairs) + "]"


@dataclass
class Behaviour:
    """How the server misbehaves. ``fail_*`` count per passage: its first N attempts fail that way."""

    latency: float = 0.0
    malformed_rate: float = 0.0
    fail_429: int = 0
    fail_500: int = 0
    slow_first: float = 0.0  # the first attempt per passage sleeps this long (past the client's timeout)
    refuse_key: bool = False
    reject_marker: str = ""  # passages containing it get a 400 (as for a prompt over the context length)


@dataclass
class Counts:
    calls: Counter = field(default_factory=Counter)  # requests per passage key
    answered: Counter = field(default_factory=Counter)  # 200 answers fully sent per passage key
    status: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    disable_nagle_algorithm = True  # as real servers do; else delayed ACKs add 40 ms per answer
    server: _Server

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, code: int, body: dict, headers: dict | None = None) -> bool:
        data = json.dumps(body).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/stats"):
            c = self.server.counts
            with c.lock:
                self._send(
                    200, {"calls": dict(c.calls), "answered": dict(c.answered), "status": dict(c.status)}
                )
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        try:
            req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            messages = req["messages"]
        except (ValueError, KeyError, TypeError):
            self._send(400, {"error": {"message": "bad request body", "type": "invalid_request_error"}})
            return
        b, c = self.server.behaviour, self.server.counts
        passage = passage_of(messages)
        key = key_of(passage)
        with c.lock:
            c.calls[key] += 1
            n = c.calls[key]
        if b.refuse_key:
            with c.lock:
                c.status[401] += 1
            self._send(
                401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}
            )
            return
        if b.reject_marker and b.reject_marker in passage:
            with c.lock:
                c.status[400] += 1
            msg = "This model's maximum context length is 4097 tokens."
            self._send(
                400,
                {
                    "error": {
                        "message": msg,
                        "type": "invalid_request_error",
                        "code": "context_length_exceeded",
                    }
                },
            )
            return
        if n <= b.fail_429:
            with c.lock:
                c.status[429] += 1
            msg = {
                "error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}
            }
            self._send(429, msg, {"retry-after": "0"})
            return
        if n <= b.fail_429 + b.fail_500:
            with c.lock:
                c.status[500] += 1
            self._send(500, {"error": {"message": "The server had an error", "type": "server_error"}})
            return
        delay = b.slow_first if (b.slow_first and n == b.fail_429 + b.fail_500 + 1) else b.latency
        if delay:
            time.sleep(delay)
        text = answer(
            passage, b.malformed_rate, definition="\n\nParagraph: " in (messages[-1].get("content") or "")
        )
        prompt_tokens = sum(len(re.findall(r"\w+|[^\w\s]", m.get("content") or "")) + 4 for m in messages) + 3
        body = {
            "id": f"chatcmpl-{key}-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.get("model", "teacher"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(re.findall(r"\w+|[^\w\s]", text)),
                "total_tokens": 0,
            },
        }
        body["usage"]["total_tokens"] = body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
        if self._send(200, body):
            with c.lock:
                c.status[200] += 1
                c.answered[key] += 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    behaviour: Behaviour
    counts: Counts


class TeacherServer:
    """``with TeacherServer(latency=0.1) as s: ... s.url ... s.stats()``; serves from a thread."""

    def __init__(self, port: int = 0, **behaviour):
        self._httpd = _Server(("127.0.0.1", port), _Handler)
        self._httpd.behaviour = Behaviour(**behaviour)
        self._httpd.counts = Counts()
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def behaviour(self) -> Behaviour:
        return self._httpd.behaviour

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def stats(self) -> dict:
        c = self._httpd.counts
        with c.lock:
            return {"calls": dict(c.calls), "answered": dict(c.answered), "status": dict(c.status)}

    def __enter__(self) -> TeacherServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--malformed-rate", type=float, default=0.0)
    ap.add_argument("--fail-429", type=int, default=0)
    ap.add_argument("--fail-500", type=int, default=0)
    ap.add_argument("--slow-first", type=float, default=0.0)
    args = ap.parse_args()
    server = TeacherServer(
        args.port,
        latency=args.latency,
        malformed_rate=args.malformed_rate,
        fail_429=args.fail_429,
        fail_500=args.fail_500,
        slow_first=args.slow_first,
    )
    with server:
        print(server.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
