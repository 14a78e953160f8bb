"""The CLI as a user runs it: killed with SIGKILL mid-way, rerun, nothing asked twice, nothing lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from teacher_server import TeacherServer, key_of

from universalner.tune.data import read_conversations


def cli(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-cli"}
    cmd = [sys.executable, "-m", "universalner.distill", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kw)


def journal_lines(path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def test_kill_9_and_resume_asks_no_answered_passage_again(shared_data, tmp_path):
    out = tmp_path / "out"
    inputs = [str(p) for p in sorted((shared_data / "passages").glob("cc_*.jsonl"))]  # 203 passages
    args = ["--input", *inputs, "--output", str(out), "--max-passages", "60", "--passage-tokens", "200"]
    with TeacherServer(latency=0.15, malformed_rate=0.1) as server:
        args += ["--base-url", server.url, "--concurrency", "4", "--negatives", "3"]
        proc = cli(*args)
        deadline = time.monotonic() + 60
        while len(journal_lines(out / "teacher.jsonl")) < 16 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        before = {r["key"]: r for r in journal_lines(out / "teacher.jsonl")}
        assert 16 <= len(before) < 60

        proc = cli(*args)
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        calls = server.stats()["calls"]

    passages = [json.loads(line) for line in (out / "passages.jsonl").read_text().splitlines()]
    server_key = {p["id"]: key_of(p["text"]) for p in passages}
    lines = journal_lines(out / "teacher.jsonl")
    assert len(passages) == 60
    assert len(lines) == len({r["key"] for r in lines}) == 60  # every passage once, none lost
    assert {r["id"] for r in lines} == set(server_key)
    for r in before.values():  # answered before the kill: never asked again
        assert calls[server_key[r["id"]]] == 1, r["id"]
    repeated = [pid for pid, k in server_key.items() if calls[k] > 1]
    assert len(repeated) <= 4  # only calls in flight at the kill (at most --concurrency) were sent again
    assert not set(repeated) & {r["id"] for r in before.values()}
    assert sum(calls.values()) == 60 + len(repeated)

    assert "passage/s" in stderr  # the progress bar shows the rate
    assert f"passages: 60 ({len(before)} answered before" in stdout
    stats = json.loads((out / "stats.json").read_text())
    train = json.loads((out / "train.json").read_text())
    assert stats["passages"]["answered"] == 60 and stats["passages"]["in_train"] == len(train) > 40
    assert stats["dropped"]["unparseable_answers"] == stats["passages"]["unparseable"] > 0
    assert stats["dropped"]["else_type"] > 0 and stats["dropped"]["not_in_passage"] > 0
    empty = [sum(t["value"] == "[]" for t in rec["conversations"][3::2]) for rec in train]
    asked = [len(rec["conversations"]) // 2 - 1 for rec in train]
    assert all(e == min(3, stats["types"] - (q - e)) for e, q in zip(empty, asked, strict=True))
    assert stats["negatives"] == sum(empty) > 2 * len(train)
    assert stats["tokens"]["prompt"] == sum(r["prompt_tokens"] for r in lines)
    assert abs(sum(stats["type_concentration"].values()) - 1) < 1e-3
    assert (out / "type_frequency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    by_id = {p["id"]: p["text"] for p in passages}
    examples = read_conversations(out / "train.json")  # what `universalner.tune` reads
    assert len(examples) == len(train)
    for ex in examples:
        conv = ex.conversation
        assert conv.text == by_id[ex.id]
        for q, a in zip(conv.questions, conv.answers, strict=True):
            assert all(m in conv.text for m in json.loads(a)), (q, a)

    offline = [a if a != server.url else "http://127.0.0.1:9/v1" for a in args]  # nothing left to ask
    rerun = cli(*offline)
    stdout, stderr = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, stderr
    assert json.loads((out / "train.json").read_text()) == train


def test_changed_passage_settings_and_bad_input_are_clear_errors(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"text": "Ada Lovelace lived in London."}) + "\n")
    proc = cli("--input", str(corpus), "--output", str(tmp_path / "o"), "--dry-run", "--no-progress")
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "1 passages" in stdout and "estimated cost with gpt-3.5-turbo: $" in stdout
    proc = cli("--input", str(corpus), "--output", str(tmp_path / "o"), "--passage-tokens", "64", "--dry-run")
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "passages made with other settings (passage_tokens: 256 -> 64)" in stderr
    corpus.write_text('{"text": "fine"}\n{"txt": "typo"}\n')
    proc = cli("--input", str(corpus), "--output", str(tmp_path / "p"), "--dry-run")
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "c.jsonl:2: no field 'text'" in stderr and "Traceback" not in stderr


def test_help_is_fast_and_imports_no_torch():
    code = (
        "import sys, contextlib, io\n"
        "from universalner.distill.__main__ import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try: main(['--help'])\n"
        "    except SystemExit: pass\n"
        "assert '--passage-tokens' in out.getvalue() and '--tokenizer' in out.getvalue()\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'matplotlib') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
