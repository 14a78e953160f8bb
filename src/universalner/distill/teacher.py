"""Asking the teacher: bounded concurrency, retries, and an append-only journal that makes runs resumable.

Every answer is appended to ``teacher.jsonl`` (one flushed line per passage) the moment it arrives,
so a killed run (even ``kill -9``) keeps every answer it received and a rerun asks only the rest.
The only calls a rerun repeats are those still in flight when the process died: their answers never
arrived. The API key is read from the environment and passed to the client; it is never written.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..prompts import teacher_messages
from .passages import Passage
from .prices import estimate_cost


class TeacherError(RuntimeError):
    """A problem no retry can fix (bad key, unknown model, unreachable server); the run stops cleanly."""


OPENAI_URL = "https://api.openai.com/v1"


def safe_url(url: str | None) -> str | None:
    """The base URL without any user:password part."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password or parts.username:
        parts = parts._replace(netloc=(parts.hostname or "") + (f":{parts.port}" if parts.port else ""))
    return urlunsplit(parts)


@dataclass
class TeacherConfig:
    """How to reach the teacher and how hard to push it. ``api_key`` is never persisted."""

    model: str = "gpt-3.5-turbo"
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    mode: str = "type"
    concurrency: int = 16
    max_retries: int = 8
    timeout: float = 120.0
    backoff: float = 1.0
    max_backoff: float = 60.0
    max_tokens: int | None = None
    temperature: float = 0.0
    price_in: float | None = None
    price_out: float | None = None
    max_consecutive_failures: int = 50

    def resolved_base_url(self) -> str | None:
        return self.base_url or os.environ.get("OPENAI_BASE_URL") or None

    def shown_url(self) -> str:
        """Where the teacher is asked, for messages (credentials removed)."""
        return safe_url(self.resolved_base_url()) or OPENAI_URL

    def has_key(self) -> bool:
        return bool(self.api_key or os.environ.get("OPENAI_API_KEY"))

    def resolved_api_key(self) -> str:
        key = self.api_key or os.environ.get("OPENAI_API_KEY")
        if key:
            return key
        if self.resolved_base_url():
            return "EMPTY"  # local servers (vLLM, llama.cpp) accept any key
        raise TeacherError(
            "no API key: set OPENAI_API_KEY, or point --base-url (OPENAI_BASE_URL) at a local server"
        )


@dataclass
class TeacherReport:
    """What a teacher run did; token counts and cost cover the whole journal, this run and earlier ones."""

    passages: int = 0
    already_answered: int = 0
    answered: int = 0
    rejected: int = 0
    failed: int = 0
    retries: int = 0
    failed_attempts: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    elapsed_s: float = 0.0


def passage_key(p: Passage, cfg: TeacherConfig) -> str:
    """What makes two calls the same call: passage text, teacher model and prompt mode."""
    h = hashlib.sha1(f"{cfg.model}\x00{cfg.mode}\x00{p.text}".encode()).hexdigest()
    return h[:20]


# --- the journal ---------------------------------------------------------------------------------
class Journal:
    """Append-only JSON lines; a line torn by a crash is cut off before new lines are added."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._f = None

    def load(self) -> dict[str, dict[str, Any]]:
        """Records by key (the last one wins), repairing a torn last line."""
        out: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return out
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as f:
                f.truncate(cut)
            data = data[:cut]
        for lineno, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                out[rec["key"]] = rec
            except (json.JSONDecodeError, KeyError, TypeError):
                raise TeacherError(
                    f"{self.path}:{lineno}: not a journal record; fix or remove that line"
                ) from None
        return out

    def append(self, rec: dict[str, Any]) -> None:
        if self._f is None:
            self._f = open(self.path, "a", encoding="utf-8")
        self._f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self._f.flush()  # in the OS's hands now: survives kill -9 of this process

    def close(self) -> None:
        if self._f is not None:
            os.fsync(self._f.fileno())
            self._f.close()
            self._f = None


# --- one call ------------------------------------------------------------------------------------
def _retry_after(err: Exception) -> float | None:
    resp = getattr(err, "response", None)
    value = resp.headers.get("retry-after") if resp is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _unreachable(e: Exception) -> str | None:
    """Why a connection could not even be opened (refused, unknown host, no route), or None.

    A timeout, or a connection dropped after it was open, is not this: those are retried. The HTTP
    library's ``ConnectError`` is matched by name (the openai client ships its own copy of httpx)."""
    import socket

    chain: list[BaseException] = []
    x: BaseException | None = e
    while x is not None and len(chain) < 12:
        chain.append(x)
        x = x.__cause__ or x.__context__
    if not any(type(c).__name__ == "ConnectError" for c in chain):
        return None
    if any(isinstance(c, ConnectionRefusedError) for c in chain):
        return "connection refused"
    gai = next((c for c in chain if isinstance(c, socket.gaierror)), None)
    if gai is not None:
        return f"host not found ({gai.strerror or gai})"
    return f"could not connect ({chain[-1]})"


def _classify(e: Exception, cfg: TeacherConfig, reached: bool = False) -> str | None:
    """Why a call failed, as a retry reason; None when asking again would not help; raises when fatal.

    ``reached``: the teacher has answered in this run. Until it has, a connection that cannot be
    opened stops the run at once (a wrong URL, a server not started); after, it is retried like a
    dropped connection (a server restarting)."""
    import openai

    if isinstance(e, openai.RateLimitError):
        if getattr(e, "code", None) == "insufficient_quota":
            raise TeacherError(
                f"the teacher at {cfg.shown_url()} refuses: quota exhausted ({e.message})"
            ) from None
        return "429"
    if isinstance(e, (openai.AuthenticationError, openai.PermissionDeniedError)):
        given = "the API key" if cfg.has_key() else "the request without an API key"
        fix = (
            "set OPENAI_API_KEY to a key it accepts"
            if cfg.has_key()
            else "no key was given: set OPENAI_API_KEY"
        )
        raise TeacherError(
            f"the teacher at {cfg.shown_url()} refused {given} ({e.status_code}: {e.message}); {fix}"
        ) from None
    if isinstance(e, openai.NotFoundError):
        raise TeacherError(
            f"the teacher has no model {cfg.model!r} or no chat-completions endpoint at "
            f"{cfg.resolved_base_url() or 'api.openai.com'} (404: {e.message})"
        ) from None
    if isinstance(e, openai.APIStatusError):
        if e.status_code >= 500 or e.status_code in (408, 409):
            return str(e.status_code)
        return None  # 400, 422...: this request is wrong (e.g. too long); asking again would not help
    if isinstance(e, openai.APITimeoutError):
        return "timeout"
    if isinstance(e, openai.APIConnectionError):
        why = None if reached else _unreachable(e)
        if why is not None:
            raise TeacherError(
                f"cannot reach the teacher at {cfg.shown_url()}: {why}. Start the server there, or pass "
                "the right --base-url (or OPENAI_BASE_URL); rerun the same command to resume"
            ) from None
        return "connection"
    if isinstance(e, (openai.APIResponseValidationError, ValueError, AttributeError, LookupError, TypeError)):
        return "bad response"
    raise e


async def _ask(
    client: Any, p: Passage, key: str, cfg: TeacherConfig, report: TeacherReport, rng: random.Random
):
    """One passage: a journal record (answer, or a rejection no retry fixes), or None if retries ran out."""
    body = {
        "model": cfg.model,
        "messages": teacher_messages(p.text, cfg.mode),
        "temperature": cfg.temperature,
    }
    extra = {"max_tokens": cfg.max_tokens} if cfg.max_tokens else {}
    head = {"key": key, "id": p.id, "model": cfg.model, "mode": cfg.mode}
    for attempt in range(cfg.max_retries + 1):
        t0 = time.monotonic()
        try:
            # client.post with a plain body: the typed ``chat.completions.create`` spends ~9 ms of CPU per
            # call transforming its parameters, which caps a 2-core machine near 100 calls/s.
            resp = await client.post("/chat/completions", body={**body, **extra}, cast_to=object)
            choice = resp["choices"][0]
            usage = resp.get("usage") or {}
            return {
                **head,
                "answer": choice["message"].get("content") or "",
                "finish_reason": choice.get("finish_reason"),
                "prompt_tokens": usage.get("prompt_tokens") or 0,
                "completion_tokens": usage.get("completion_tokens") or 0,
                "attempts": attempt + 1,
                "latency_s": round(time.monotonic() - t0, 3),
            }
        except Exception as e:
            reason = _classify(e, cfg, reached=report.answered + report.rejected > 0)
            if reason is None:
                report.rejected += 1
                return {**head, "error": f"{getattr(e, 'status_code', '')}: {getattr(e, 'message', e)}"}
            hinted = _retry_after(e) if reason == "429" else None
        report.failed_attempts[reason] = report.failed_attempts.get(reason, 0) + 1
        if attempt == cfg.max_retries:
            break
        report.retries += 1
        wait = min(cfg.max_backoff, cfg.backoff * 2**attempt) * (0.5 + 0.5 * rng.random())
        await asyncio.sleep(min(cfg.max_backoff, hinted) if hinted is not None else wait)
    return None


# --- the run -------------------------------------------------------------------------------------
def _tally(
    report: TeacherReport, records: dict[str, dict[str, Any]], keys: set[str], cfg: TeacherConfig
) -> None:
    recs = [r for k, r in records.items() if k in keys]
    report.prompt_tokens = sum(r.get("prompt_tokens", 0) for r in recs)
    report.completion_tokens = sum(r.get("completion_tokens", 0) for r in recs)
    report.cost_usd = estimate_cost(
        cfg.model, report.prompt_tokens, report.completion_tokens, cfg.price_in, cfg.price_out
    )


def run_teacher(
    passages: Sequence[Passage],
    journal_path: str | os.PathLike,
    cfg: TeacherConfig,
    progress: bool = True,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> TeacherReport:
    """Ask the teacher about every passage not yet in the journal; return what happened."""
    if cfg.concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, not {cfg.concurrency}")
    if cfg.mode not in ("type", "definition"):
        raise ValueError(f"teacher mode must be 'type' or 'definition', not {cfg.mode!r}")
    journal = Journal(journal_path)
    records = journal.load()
    keys = {p.id: passage_key(p, cfg) for p in passages}
    todo = [p for p in passages if keys[p.id] not in records]
    report = TeacherReport(passages=len(passages), already_answered=len(passages) - len(todo))
    t0 = time.monotonic()
    try:
        if todo:
            asyncio.run(_run_all(todo, keys, journal, records, cfg, report, progress, on_record))
    finally:
        journal.close()
        report.elapsed_s = time.monotonic() - t0
        _tally(report, records, set(keys.values()), cfg)
    return report


async def _run_all(todo, keys, journal, records, cfg, report, progress, on_record) -> None:
    import openai
    from tqdm.auto import tqdm

    client = openai.AsyncOpenAI(
        api_key=cfg.resolved_api_key(), base_url=cfg.resolved_base_url(), max_retries=0, timeout=cfg.timeout
    )
    bar = tqdm(
        total=report.passages,
        initial=report.already_answered,
        unit="passage",
        desc="teacher",
        disable=not progress,
        dynamic_ncols=True,
        smoothing=0.1,
    )
    pending = iter(todo)
    rng = random.Random()  # jitter only: nothing persisted depends on it
    state = {"consecutive_failures": 0, "tokens": 0}

    async def worker() -> None:
        for p in pending:
            rec = await _ask(client, p, keys[p.id], cfg, report, rng)
            if rec is None:
                report.failed += 1
                state["consecutive_failures"] += 1
                if state["consecutive_failures"] >= cfg.max_consecutive_failures:
                    raise TeacherError(
                        f"{state['consecutive_failures']} passages in a row failed after {cfg.max_retries} retries "
                        f"each ({report.failed_attempts}); is the teacher up? Rerun to resume where this stopped."
                    )
                continue
            state["consecutive_failures"] = 0
            journal.append(rec)
            records[rec["key"]] = rec
            if "error" not in rec:
                report.answered += 1
                state["tokens"] += rec["prompt_tokens"] + rec["completion_tokens"]
            bar.update(1)
            bar.set_postfix_str(f"tokens={state['tokens']:,} retries={report.retries}", refresh=False)
            if on_record is not None:
                on_record(rec)

    tasks = [asyncio.create_task(worker()) for _ in range(min(cfg.concurrency, len(todo)))]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            if t.exception() is not None:
                raise t.exception()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        bar.close()
        await client.close()
