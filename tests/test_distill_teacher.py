"""The teacher client against a real chat-completions server on 127.0.0.1 that misbehaves on purpose."""

from __future__ import annotations

import json

import pytest
from teacher_server import TeacherServer, key_of

from universalner.distill import DistillConfig, Journal, TeacherConfig, TeacherError, distill, run_teacher
from universalner.distill.passages import sample_passages


@pytest.fixture(scope="module")
def passages(shared_data):
    return sample_passages(sorted((shared_data / "passages").glob("cc_*.jsonl")), max_passages=24, seed=3)


def fast(url: str, **kw) -> TeacherConfig:
    return TeacherConfig(model="gpt-3.5-turbo", base_url=url, api_key="sk-test", backoff=0.01, **kw)


def test_429_500_and_timeouts_are_retried_once_each_and_answers_kept(passages, tmp_path):
    n = len(passages)
    with TeacherServer(fail_429=1, fail_500=1, slow_first=1.0, malformed_rate=0.3) as server:
        cfg = fast(server.url, concurrency=12, timeout=0.3)
        report = run_teacher(passages, tmp_path / "teacher.jsonl", cfg, progress=False)
        stats = server.stats()
    # per passage: a 429, then a 500, then an answer slower than the timeout, then the answer
    assert report.answered == n and report.failed == 0 and report.retries == 3 * n
    assert report.failed_attempts == {"429": n, "500": n, "timeout": n}
    assert stats["status"][429] == stats["status"][500] == n
    assert set(stats["calls"].values()) == {4}
    records = Journal(tmp_path / "teacher.jsonl").load()
    assert len(records) == n and {r["attempts"] for r in records.values()} == {4}
    assert {key_of(p.text) for p in passages} == set(stats["calls"])
    assert report.prompt_tokens == sum(r["prompt_tokens"] for r in records.values()) > 0
    assert report.cost_usd == pytest.approx(
        (report.prompt_tokens * 0.5 + report.completion_tokens * 1.5) / 1e6
    )

    with TeacherServer() as again:  # a rerun asks nothing
        report2 = run_teacher(passages, tmp_path / "teacher.jsonl", fast(again.url), progress=False)
        assert again.stats()["calls"] == {}
    assert (report2.already_answered, report2.answered, report2.prompt_tokens) == (n, 0, report.prompt_tokens)


def test_exhausted_retries_lose_nothing_and_a_rerun_finishes(passages, tmp_path):
    with TeacherServer(fail_500=100) as server:
        cfg = fast(server.url, concurrency=4, max_retries=2, max_consecutive_failures=1000)
        report = run_teacher(passages[:6], tmp_path / "teacher.jsonl", cfg, progress=False)
        assert (report.answered, report.failed) == (0, 6)
        assert set(server.stats()["calls"].values()) == {3}  # the first try and 2 retries
        server.behaviour.fail_500 = 0
        report = run_teacher(passages[:6], tmp_path / "teacher.jsonl", cfg, progress=False)
        assert (report.answered, report.failed) == (6, 0)
        assert set(server.stats()["calls"].values()) == {4}


def test_a_teacher_that_is_down_stops_the_run(passages, tmp_path):
    with TeacherServer(fail_500=100) as server:
        cfg = fast(server.url, concurrency=2, max_retries=1, max_consecutive_failures=4)
        # with two calls in flight, one more passage may fail before the run notices: 4 or 5
        with pytest.raises(TeacherError, match="[45] passages in a row failed.*Rerun to resume"):
            run_teacher(passages, tmp_path / "teacher.jsonl", cfg, progress=False)
        assert sum(server.stats()["calls"].values()) < len(passages) * 2


def test_refused_key_stops_at_once_and_400_is_recorded_not_repeated(passages, tmp_path):
    with TeacherServer(refuse_key=True) as server:
        with pytest.raises(TeacherError, match="refused the API key.*OPENAI_API_KEY"):
            run_teacher(passages, tmp_path / "a.jsonl", fast(server.url, concurrency=2), progress=False)
        assert sum(server.stats()["calls"].values()) <= 2
    marker = passages[0].text.split()[0]
    rejected = [p for p in passages if marker in p.text]
    with TeacherServer(reject_marker=marker) as server:
        report = run_teacher(passages, tmp_path / "b.jsonl", fast(server.url, concurrency=4), progress=False)
        assert report.rejected == len(rejected) and report.answered == len(passages) - len(rejected)
        run_teacher(passages, tmp_path / "b.jsonl", fast(server.url), progress=False)
        assert set(server.stats()["calls"].values()) == {1}
    errors = [r for r in Journal(tmp_path / "b.jsonl").load().values() if "error" in r]
    assert len(errors) == len(rejected) and errors[0]["error"].startswith("400: ")


def test_torn_last_line_is_repaired(passages, tmp_path):
    path = tmp_path / "teacher.jsonl"
    with TeacherServer() as server:
        run_teacher(passages[:3], path, fast(server.url), progress=False)
        with open(path, "a") as f:
            f.write('{"key": "half a rec')  # what a crash in the middle of a write leaves
        report = run_teacher(passages[:4], path, fast(server.url), progress=False)
    assert (report.already_answered, report.answered) == (3, 1)
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line)["key"] for line in lines)


def test_definition_mode_and_the_key_is_never_written(passages, tmp_path, monkeypatch):
    secret = "sk-proj-THIS-KEY-MUST-NOT-LEAK-1234"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": p.text}) + "\n" for p in passages[:8]))
    with TeacherServer() as server:
        teacher = TeacherConfig(base_url=server.url.replace("//", "//user:pw@"), mode="definition")
        cfg = DistillConfig(inputs=[str(corpus)], output=str(tmp_path / "out"), teacher=teacher)
        result = distill(cfg, progress=False)
    assert result.complete and result.teacher.answered == 8
    train = json.loads((tmp_path / "out" / "train.json").read_text())
    questions = {t["value"] for rec in train for t in rec["conversations"][2::2]}
    # definitions are asked (their closing period dropped), not type names
    assert any(q.endswith("is a kind of named thing in the text?") for q in questions), questions
    for f in (tmp_path / "out").iterdir():
        data = f.read_bytes()
        assert secret.encode() not in data and b"pw@" not in data, f
