"""distill stops at once when retrying cannot help, holds its output folder, keeps scientific names.

Real processes and a real teacher server on 127.0.0.1 (``tests/teacher_server.py``); a port with
nothing listening gives a real refused connection.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from teacher_server import TeacherServer

from universalner.distill import DistillConfig, TeacherConfig, TeacherError, distill, filter_pairs, is_english
from universalner.distill.build import DROP_REASONS
from universalner.distill.lock import LOCK_FILE, OutputInUse, output_lock
from universalner.distill.passages import Passage
from universalner.distill.teacher import _classify, run_teacher

PASSAGES = [
    "Barack Obama met Emmanuel Macron in Paris on Tuesday.",
    "The Nile flows through Egypt and Sudan before it reaches the Mediterranean Sea.",
    "Apple hired Tim Cook in California in 1998.",
]


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def corpus(tmp_path, texts=PASSAGES):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-guard", **(env or {})}
    cmd = [sys.executable, "-m", "universalner.distill", *args, "--no-progress"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def passages() -> list[Passage]:
    return [Passage(f"p{i}", t, len(t.split()), f"d{i}") for i, t in enumerate(PASSAGES)]


# ------------------------------------------------------------------ a teacher retrying cannot help
def test_an_unreachable_teacher_stops_in_seconds_naming_the_url(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    out = tmp_path / "out"
    t0 = time.monotonic()
    proc = cli("--input", str(corpus(tmp_path)), "--output", str(out), "--base-url", url)
    stdout, stderr = proc.communicate(timeout=120)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 2, stderr
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach the teacher at " + url), stderr
    assert "connection refused" in lines[0] and "--base-url" in lines[0]
    assert elapsed < 30, f"{elapsed:.1f} s (8 retries with backoff took over 2 minutes)"
    assert stdout == ""
    # nothing a rerun would trust wrongly: the passages are complete, no answer was journalled
    assert len((out / "passages.jsonl").read_text().splitlines()) == len(PASSAGES)
    assert not (out / "teacher.jsonl").exists() or (out / "teacher.jsonl").read_text() == ""
    assert not (out / "train.json").exists() and not (out / LOCK_FILE).exists()


def test_an_unknown_host_stops_too_and_a_refusal_after_answers_is_retried(tmp_path):
    cfg = TeacherConfig(base_url="http://nonexistent.invalid:8000/v1", api_key="sk-x", backoff=0.01)
    with pytest.raises(
        TeacherError, match=r"cannot reach the teacher at http://nonexistent\.invalid.*host not found"
    ):
        run_teacher(passages(), tmp_path / "t.jsonl", cfg, progress=False)
    # once the teacher has answered in this run, a refused connection is a server restarting: retried
    import openai

    client = openai.OpenAI(base_url=f"http://127.0.0.1:{closed_port()}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIConnectionError) as got:
        client.models.list()
    assert _classify(got.value, cfg, reached=True) == "connection"
    with pytest.raises(TeacherError, match="connection refused"):
        _classify(got.value, cfg, reached=False)


def test_timeouts_and_5xx_still_retry(tmp_path):
    with TeacherServer(fail_500=1, slow_first=1.0) as server:
        cfg = TeacherConfig(base_url=server.url, api_key="sk-x", backoff=0.01, timeout=0.3, concurrency=3)
        report = run_teacher(passages(), tmp_path / "t.jsonl", cfg, progress=False)
    assert report.answered == len(PASSAGES) and report.failed_attempts == {"500": 3, "timeout": 3}


@pytest.mark.parametrize("key", ["sk-wrong", None])
def test_a_refused_key_stops_at_once_naming_the_url_and_the_fix(tmp_path, monkeypatch, key):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with TeacherServer(refuse_key=True) as server:
        cfg = TeacherConfig(base_url=server.url, api_key=key, concurrency=2)
        t0 = time.monotonic()
        with pytest.raises(TeacherError) as got:
            run_teacher(passages(), tmp_path / "t.jsonl", cfg, progress=False)
        assert time.monotonic() - t0 < 10
        assert sum(server.stats()["calls"].values()) <= 2
    msg = str(got.value)
    assert f"the teacher at {server.url} refused" in msg and "401" in msg and "OPENAI_API_KEY" in msg
    assert ("no key was given" in msg) == (key is None)


# ------------------------------------------------------------------ one run per output folder
def _wait_for(pred, timeout=60.0, proc=None):
    deadline = time.monotonic() + timeout
    while not pred():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(proc.communicate())
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_a_second_run_on_the_same_output_is_refused_and_a_killed_runs_lock_taken_over(tmp_path):
    texts = [f"Passage {i}: Angela Merkel visited Lisbon and Porto in {1990 + i}." for i in range(20)]
    src = corpus(tmp_path, texts)
    out = tmp_path / "out"
    journal = out / "teacher.jsonl"
    with TeacherServer(latency=1.0) as server:  # one passage a second: the first run lasts 20 s
        args = ["--input", str(src), "--output", str(out), "--base-url", server.url, "--concurrency", "1"]
        first = cli(*args)
        _wait_for(lambda: journal.exists() and journal.read_text().count("\n") >= 1, proc=first)
        holder = json.loads((out / LOCK_FILE).read_text())
        assert holder["pid"] == first.pid

        t0 = time.monotonic()
        second = cli(*args)
        stdout, stderr = second.communicate(timeout=60)
        assert second.returncode == 2, stderr
        assert f"is in use by another distill run (process {first.pid}" in stderr and "--output" in stderr
        assert time.monotonic() - t0 < 30 and stdout == ""
        assert first.poll() is None, "the first run goes on, untouched"

        os.kill(first.pid, signal.SIGKILL)
        first.communicate()
        assert (out / LOCK_FILE).exists()  # what a killed run leaves behind
        third = cli(*args)
        stdout, stderr = third.communicate(timeout=120)
        assert third.returncode == 0, stderr
        assert f"taking over {out} from process {first.pid}" in stderr
        calls = server.stats()["calls"]
    assert not (out / LOCK_FILE).exists()
    lines = [json.loads(x) for x in journal.read_text().splitlines()]
    assert len({r["key"] for r in lines}) == len(lines) == 20
    # no passage paid twice, but the one in flight at the kill: the refused run asked nothing
    assert len(calls) == 20 and sum(n > 1 for n in calls.values()) <= 1, calls


def test_the_lock_in_process_and_an_output_that_is_a_file(tmp_path):
    with output_lock(tmp_path / "o") as folder:
        with pytest.raises(OutputInUse, match=f"process {os.getpid()}"):
            with output_lock(folder):
                pass
    with output_lock(tmp_path / "o"):  # released: taken again
        pass
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file; give a folder"):
        with output_lock(tmp_path / "f"):
            pass
    proc = cli("--input", str(corpus(tmp_path)), "--output", str(tmp_path / "f"), "--dry-run")
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "is a file; give a folder" in stderr
    assert (tmp_path / "f").read_text() == "x"


# ------------------------------------------------------------------ the non-English filter
def test_scientific_names_with_greek_letters_stay_other_scripts_go():
    keep = ["NF-κB", "TNFα", "β-catenin", "α-synuclein", "IL-1β", "5 µg", "Zürich", "Łódź", "Hawaiʻi", "2019"]
    drop = ["北京", "Москва", "Αθήνα", "東京 Tower", "αβγδ-x"]
    assert [m for m in keep if not is_english(m)] == []
    assert [m for m in drop if is_english(m)] == []
    passage = " ".join(keep + drop)
    dropped = dict.fromkeys(DROP_REASONS, 0)
    out = filter_pairs(passage, [(m, "thing") for m in keep + drop], "type", dropped)
    assert out == {"thing": keep} and dropped["non_english"] == len(drop)
    kept_all = filter_pairs(
        passage, [(m, "thing") for m in drop], "type", dict(dropped), keep_non_english=True
    )
    assert kept_all == {"thing": drop}


# ------------------------------------------------------------------ the cost line
def test_an_unknown_price_is_said_once(tmp_path):
    with TeacherServer() as server:
        args = ["--input", str(corpus(tmp_path)), "--base-url", server.url, "--teacher-model", "my-teacher"]
        proc = cli(*args, "--output", str(tmp_path / "a"))
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        assert stdout.count("estimated cost") == 1 and stdout.count("--price-in") == 1, stdout
        assert "estimated cost unknown: no price for 'my-teacher' (pass --price-in/--price-out)" in stdout
        proc = cli(*args, "--output", str(tmp_path / "b"), "--price-in", "1", "--price-out", "2")
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        assert "estimated cost unknown" not in stdout and "per 1,000 passages)" in stdout
        dry = cli(*args, "--output", str(tmp_path / "c"), "--dry-run")
        stdout, _ = dry.communicate(timeout=60)
        assert (
            stdout.count("--price-in") == 1 and "estimated cost with my-teacher: unknown: no price" in stdout
        )


def test_distill_from_python_holds_the_folder_too(tmp_path):
    with TeacherServer() as server:
        cfg = DistillConfig(
            inputs=[str(corpus(tmp_path))],
            output=str(tmp_path / "out"),
            teacher=TeacherConfig(base_url=server.url, api_key="sk-x"),
        )
        with output_lock(tmp_path / "out"):
            with pytest.raises(OutputInUse):
                distill(cfg, progress=False)
        assert server.stats()["calls"] == {}
        assert distill(cfg, progress=False).complete
