"""What a new user gets wrong, through every entry point: the right result, or one clear error.

Entry points: ``UniversalNER.from_pretrained``/``extract``, ``python -m universalner``, the spaCy
component, ``distill``, ``tune`` and ``evaluate``. Inputs: empty and whitespace-only text, a file that
is not UTF-8, a 100,000-word text, labels that are duplicated, empty or 500 characters long, a hub id
with no network (``HF_ENDPOINT`` pointed at a closed port on 127.0.0.1: a real refused connection), a
missing path, an adapter whose base is missing, a truncated or corrupted ``.gguf``, a labels JSON file
that is a number, an ``--output`` that is an existing file.

An error is one line that names what is wrong and what to do (``error: ...``, exit status 2 for the
command lines, no traceback), it comes before any slow work, and nothing half-written is left for a
rerun to trust. The command lines are called in-process (``main(argv)`` returns the exit status).
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path

import pytest

from universalner import UniversalNER
from universalner.weights.errors import ModelNotFoundError

TEXT = "Barack Obama met Emmanuel Macron in Paris."
LONG_LABEL = ("a kind of named thing that is mentioned in a text and that a reader could look up " * 7)[:500]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def offline(monkeypatch):
    """No hub: its endpoint refuses connections (and nothing is cached for the ids used here)."""
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty UNIVERSALNER_CACHE, to see what a failed GGUF conversion leaves in it."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("UNIVERSALNER_CACHE", str(folder))
    return folder


def run_main(module: str, argv: list[str], capsys) -> tuple[int, str, str]:
    """A command line in this process: (exit status, stdout, stderr)."""
    import importlib

    capsys.readouterr()
    try:
        code = importlib.import_module(module).main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def cli(argv, capsys):
    return run_main("universalner.__main__", argv, capsys)


def one_error(err: str, *parts: str) -> str:
    """The single ``error:`` line of stderr, checked to contain ``parts``; before it, at most the
    library's own progress (``universalner: converting X.gguf ...``), nothing from other libraries."""
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("universalner: ")]
    assert lines and lines[0].startswith("error: "), err
    assert "Traceback" not in err, err
    for p in parts:
        assert p in err, (p, err)
    return lines[0]


# ------------------------------------------------------------------ bad model files
@pytest.fixture(scope="module")
def bad_ggufs(test_gguf, tmp_path_factory):
    """A GGUF cut inside its header, one cut inside its tensors, and one whose magic is overwritten."""
    folder = tmp_path_factory.mktemp("gguf")
    data = test_gguf.read_bytes()
    out = {
        "header_cut": data[:200_000],
        "tensors_cut": data[: len(data) * 9 // 10],
        "corrupted": b"JUNK" + data[4:300_000],
    }
    paths = {}
    for name, blob in out.items():
        paths[name] = folder / f"{name}.gguf"
        paths[name].write_bytes(blob)
    return paths


@pytest.fixture
def orphan_adapter(tmp_path):
    """A LoRA adapter folder whose base model (an absolute path) is gone."""
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "base_model_name_or_path": str(tmp_path / "gone" / "base")})
    )
    return folder


# ================================================================== UniversalNER (Python)
def test_api_empty_and_whitespace_text_give_no_entities(ner):
    calls = ner.engine.stats.forwards
    assert ner.extract("", ["person"]) == []
    assert ner.extract("  \n\t ", ["person"]) == []
    preds = ner.predict(["", "   "], ["person", "location"])
    assert [p.entities for p in preds] == [[], []] and ner.engine.stats.forwards == calls  # no model work


def test_api_labels_duplicated_empty_and_500_characters(ner):
    small = UniversalNER(ner.engine, max_new_tokens=12)
    once = small.predict([TEXT], ["person"])[0]
    twice = small.predict([TEXT], ["person", " person ", "person"])[0]
    assert list(twice.raw) == ["person"] and twice.raw == once.raw  # asked once
    assert [(e.start, e.end, e.label) for e in twice.entities] == [
        (e.start, e.end, e.label) for e in once.entities
    ]
    for bad in ([""], ["person", "  "], []):
        with pytest.raises(ValueError, match="no name may be empty|at least one entity type"):
            small.extract(TEXT, bad)
    long = small.predict([TEXT], [LONG_LABEL])[0]
    assert list(long.raw) == [LONG_LABEL] and LONG_LABEL in small.prompt(TEXT, LONG_LABEL)


def test_api_a_100000_word_text_is_windowed_whole(ner):
    words = (TEXT.rstrip(".") + " and").split()
    text = " ".join(words[i % len(words)] for i in range(100_000))
    wins = ner._windows(text)
    assert len(wins) > 200 and wins[0][0] == 0 and wins[-1][1] == len(text)
    assert all(b[0] < a[1] for a, b in zip(wins, wins[1:], strict=False))  # overlapping: nothing skipped


def test_api_hub_id_without_network_fails_in_seconds(offline):
    import transformers  # noqa: F401 - imported by any earlier load: only the failure is timed

    t0 = time.monotonic()
    with pytest.raises(
        ModelNotFoundError, match="(?s)could not load 'nobody/no-such-model'.*huggingface-cli download"
    ):
        UniversalNER.from_pretrained("nobody/no-such-model", device="cpu")
    assert time.monotonic() - t0 < 30


def test_api_missing_path_and_orphan_adapter(tmp_path, orphan_adapter, test_model_dir):
    with pytest.raises(ModelNotFoundError, match="model not found"):
        UniversalNER.from_pretrained(tmp_path / "nothing-here", device="cpu")
    with pytest.raises(ModelNotFoundError) as got:
        UniversalNER.from_pretrained(orphan_adapter, device="cpu")
    msg = str(got.value)
    assert f"the adapter {orphan_adapter} was trained on" in msg and "gone/base" in msg
    assert "base_model_name_or_path" in msg  # what to do
    t0 = time.monotonic()
    with pytest.raises(ModelNotFoundError, match="model not found"):  # before the base is loaded
        UniversalNER.from_pretrained(test_model_dir, adapter=tmp_path / "no-adapter", device="cpu")
    assert time.monotonic() - t0 < 20


@pytest.mark.parametrize("kind", ["header_cut", "tensors_cut", "corrupted"])
def test_api_bad_gguf_is_one_error_and_leaves_no_cache(bad_ggufs, cache, kind):
    with pytest.raises(ValueError, match="could not read .* as a GGUF model.*Download it again"):
        UniversalNER.from_pretrained(bad_ggufs[kind], device="cpu")
    leftovers = list((cache / "gguf").iterdir()) if (cache / "gguf").exists() else []
    assert leftovers == []  # no half-converted folder a later run would load


# ================================================================== python -m universalner
def test_cli_empty_whitespace_and_blank_files(tmp_path, capsys):
    for text in ("", "   \t "):
        code, out, err = cli(["--model", tmp_path, "--labels", "person", text], capsys)
        assert code == 2 and out == ""
        one_error(err, "nothing to analyse: the text is empty")
    blank = tmp_path / "blank.txt"
    blank.write_text("\n   \n\t\n")
    code, _, err = cli(["--model", tmp_path, "--labels", "person", "--input", blank], capsys)
    assert code == 2
    one_error(err, f"--input {blank} holds no text")


def test_cli_non_utf8_files(tmp_path, capsys):
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("Fine line.\nCafé in Zürich.\n".encode("latin-1"))
    code, out, err = cli(["--model", tmp_path, "--labels", "person", "--input", latin], capsys)
    assert code == 2 and out == ""
    one_error(err, f"{latin}:2: not UTF-8 text (byte 0xe9 at column 4)", "save the file as UTF-8")
    labels = tmp_path / "labels.json"
    labels.write_bytes('["café"]'.encode("latin-1"))
    code, _, err = cli(["--model", tmp_path, "--labels", labels, "x"], capsys)
    assert code == 2
    one_error(err, f"--labels: {labels} is not UTF-8 text")


def test_cli_labels_that_are_wrong(tmp_path, capsys):
    number = tmp_path / "number.json"
    number.write_text("5\n")
    code, _, err = cli(["--model", tmp_path, "--labels", number, "x"], capsys)
    assert code == 2
    one_error(err, f"--labels: {number} must hold a JSON list of names or an object of definitions")
    for spec in (",,", " , "):
        code, _, err = cli(["--model", tmp_path, "--labels", spec, "x"], capsys)
        assert code == 2
        one_error(err, "--labels: give at least one entity type")
    empty = tmp_path / "empty.json"
    empty.write_text('["person", ""]')
    code, _, err = cli(["--model", tmp_path / "no-model", "--labels", empty, "x"], capsys)
    assert code == 2  # said before the model is even looked for
    one_error(err, "no name may be empty")


def test_cli_duplicated_and_long_labels_answer(test_model_dir, tmp_path, capsys, ner):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(["city", "city", LONG_LABEL]))
    code, out, err = cli(
        ["--model", test_model_dir, "--labels", labels, "--max-new-tokens", "12", TEXT], capsys
    )
    assert code == 0, err
    (line,) = out.splitlines()
    rec = json.loads(line)
    assert rec["text"] == TEXT
    # the same entities as the library asked each type once (the duplicate asked once, not twice)
    (once,) = UniversalNER(ner.engine, max_new_tokens=12).predict([TEXT], ["city", LONG_LABEL])
    want = [(e.text, e.label, e.start, e.end) for e in once.entities]
    assert want and [(e["text"], e["label"], e["start"], e["end"]) for e in rec["entities"]] == want


def test_cli_models_that_cannot_be_loaded(tmp_path, capsys, offline, orphan_adapter, bad_ggufs, cache):
    import transformers  # noqa: F401 - only the failure is timed

    t0 = time.monotonic()
    code, _, err = cli(["--model", "nobody/no-such-model", "--labels", "person", "x"], capsys)
    assert code == 2 and time.monotonic() - t0 < 30
    one_error(err, "could not load 'nobody/no-such-model'", "huggingface-cli download")
    code, _, err = cli(["--model", tmp_path / "missing", "--labels", "person", "x"], capsys)
    assert code == 2
    one_error(err, "model not found")
    code, _, err = cli(["--model", orphan_adapter, "--labels", "person", "x"], capsys)
    assert code == 2
    one_error(err, f"the adapter {orphan_adapter} was trained on", "base_model_name_or_path")
    code, _, err = cli(["--model", bad_ggufs["header_cut"], "--labels", "person", "x"], capsys)
    assert code == 2
    one_error(err, "could not read", "as a GGUF model")
    assert not (cache / "gguf").exists() or list((cache / "gguf").iterdir()) == []


def test_cli_output_that_is_not_a_results_file(test_model_dir, tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("Obama visited Paris.\nMerkel visited Rome.\n")
    base = ["--model", test_model_dir, "--labels", "city", "--max-new-tokens", "6", "--input", src]
    # a file that is something else: refused, untouched
    other = tmp_path / "notes.txt"
    other.write_text("my notes\nmore notes\n")
    code, _, err = cli([*base, "--output", other], capsys)
    assert code == 2
    one_error(err, f"--output {other}:1 is not a result line of this command", "another --output")
    assert other.read_text() == "my notes\nmore notes\n"
    # results for other texts: refused, untouched
    stale = tmp_path / "stale.jsonl"
    stale.write_text(json.dumps({"text": "Something else.", "entities": []}) + "\n")
    code, _, err = cli([*base, "--output", stale], capsys)
    assert code == 2
    one_error(err, f"--output {stale}:1 holds the result for another text than passage 1")
    assert json.loads(stale.read_text())["text"] == "Something else."
    # a folder
    code, _, err = cli([*base, "--output", tmp_path], capsys)
    assert code == 2
    one_error(err, f"--output {tmp_path} is a folder")
    # what a killed run leaves: one whole result and half of the next; the half is redone
    out = tmp_path / "out.jsonl"
    out.write_text(
        json.dumps({"text": "Obama visited Paris.", "entities": []}) + "\n" + '{"text": "Merkel vis'
    )
    code, _, err = cli([*base, "--output", out], capsys)
    assert code == 0, err
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["text"] for r in rows] == ["Obama visited Paris.", "Merkel visited Rome."]


@pytest.mark.slow
def test_cli_a_long_text_is_answered_whole(test_model_dir, tmp_path, capsys):
    """10,000 words: about 25 windows of the test model (100,000 took 6 minutes of a CPU without
    AVX-512, for nothing more to check)."""
    words = "Angela Merkel visited Paris and London with the president of France in the spring".split()
    text = " ".join(words[i % len(words)] for i in range(10_000))
    src = tmp_path / "big.txt"
    src.write_text(text + "\n")
    out = tmp_path / "big.jsonl"
    argv = ["--model", test_model_dir, "--labels", "city", "--max-new-tokens", "4", "--batch-size", "16"]
    code, _, err = cli([*argv, "--input", src, "--output", out], capsys)
    assert code == 0, err
    (line,) = out.read_text().splitlines()
    rec = json.loads(line)
    assert rec["text"] == text  # the whole text, not a truncated one
    # (offsets of mentions found in later windows: test_model.py::test_long_text_is_windowed_not_truncated)


# ================================================================== spaCy
@pytest.fixture(scope="module")
def nlp(test_model_dir):
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("universal_ner", config={"model": str(test_model_dir), "labels": ["city", "city"]})
    return nlp


def test_spacy_empty_whitespace_and_duplicated_labels(nlp):
    assert list(nlp("").ents) == [] and list(nlp("   ").ents) == []
    docs = list(nlp.pipe(["", "  \n ", TEXT]))
    assert [len(d.ents) for d in docs[:2]] == [0, 0]
    comp = nlp.get_pipe("universal_ner")  # what the model finds asking "city" once
    once = comp.ner.extract(TEXT, ["city"], threshold=comp.settings.threshold)
    assert once and [(e.start_char, e.end_char, e.label_) for e in docs[2].ents] == [
        (e.start, e.end, e.label) for e in once
    ]


def test_spacy_refuses_bad_settings_when_added(tmp_path, test_model_dir, orphan_adapter, bad_ggufs, offline):
    import spacy
    from confection import ConfigValidationError

    def add(**config):
        nlp = spacy.blank("en")
        return nlp.add_pipe("universal_ner", config={"labels": ["person"], **config})

    for labels in ([""], ["person", "  "], [], 5):
        with pytest.raises(ConfigValidationError, match="labels"):
            add(model=str(test_model_dir), labels=labels)
    with pytest.raises(ConfigValidationError, match="model not found"):
        add(model=str(tmp_path / "missing"))
    with pytest.raises(ConfigValidationError, match="GGUF file not found"):
        add(model=str(tmp_path / "missing.gguf"))
    # these are found but cannot be loaded: the first document says why, in one error
    for model, match in (
        (bad_ggufs["corrupted"], "could not read .* as a GGUF model"),
        (orphan_adapter, "the adapter .* was trained on"),
        ("nobody/no-such-model", "could not load 'nobody/no-such-model'"),
    ):
        pipe = add(model=str(model))
        with pytest.raises((ValueError, ModelNotFoundError), match=match):
            pipe(spacy.blank("en")("Obama visited Paris."))


# ================================================================== distill
def test_distill_bad_inputs(tmp_path, capsys, offline):
    mod = "universalner.distill.__main__"
    key = ["--base-url", f"http://127.0.0.1:{closed_port()}/v1", "--no-progress"]

    blank = tmp_path / "blank.jsonl"
    blank.write_text(json.dumps({"text": ""}) + "\n" + json.dumps({"text": "   "}) + "\n")
    code, _, err = run_main(mod, ["--input", blank, "--output", tmp_path / "o1", *key, "--dry-run"], capsys)
    assert code == 2
    one_error(err, "no passages in")
    assert not (tmp_path / "o1" / "passages.jsonl").exists()

    latin = tmp_path / "latin.txt"
    latin.write_bytes("Café in Zürich.\n".encode("latin-1"))
    latin_lines = tmp_path / "latin.jsonl"
    latin_lines.write_bytes((json.dumps({"text": "fine"}) + '\n{"text": "Café"}\n').encode("latin-1"))
    for bad, where in ((latin, f"{latin}: not UTF-8"), (latin_lines, f"{latin_lines}:2: not UTF-8")):
        code, _, err = run_main(mod, ["--input", bad, "--output", tmp_path / "o2", *key, "--dry-run"], capsys)
        assert code == 2
        one_error(err, where)
        assert not (tmp_path / "o2" / "passages.jsonl").exists()

    code, _, err = run_main(
        mod, ["--input", tmp_path / "missing.jsonl", "--output", tmp_path / "o3", *key], capsys
    )
    assert code == 2
    one_error(err, "missing.jsonl")

    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"text": TEXT}) + "\n")
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    code, _, err = run_main(mod, ["--input", good, "--output", afile, *key], capsys)
    assert code == 2
    one_error(err, f"--output {afile} is a file; give a folder")
    assert afile.read_text() == "keep me"

    import transformers  # noqa: F401 - only the failure is timed

    t0 = time.monotonic()
    code, _, err = run_main(
        mod,
        ["--input", good, "--output", tmp_path / "o4", "--tokenizer", "nobody/no-such-tokenizer", *key],
        capsys,
    )
    assert code == 2 and time.monotonic() - t0 < 60
    one_error(err, "nobody/no-such-tokenizer")


# ================================================================== tune
def test_tune_bad_inputs(tmp_path, capsys, test_model_dir, conversations, orphan_adapter, bad_ggufs, cache):
    mod = "universalner.tune.__main__"
    ok = ["--base-model", test_model_dir, "--max-steps", "1"]

    def tune(*argv):
        return run_main(mod, [*argv], capsys)

    empty = tmp_path / "empty.json"
    empty.write_text("  \n")
    code, _, err = tune(*ok, "--data", empty, "--output", tmp_path / "t1")
    assert code == 2
    one_error(err, str(empty), "empty")

    latin = tmp_path / "latin.json"
    latin.write_bytes('[{"id": "é"}]'.encode("latin-1"))
    code, _, err = tune(*ok, "--data", latin, "--output", tmp_path / "t2")
    assert code == 2
    one_error(err, f"{latin}:1: not UTF-8 text")

    number = tmp_path / "number.json"
    number.write_text("5")
    code, _, err = tune(*ok, "--data", number, "--output", tmp_path / "t3")
    assert code == 2
    one_error(err, str(number))
    code, _, err = tune(
        *ok,
        "--data",
        conversations,
        "--supervised",
        f"x={latin}",
        "--labels-map",
        number,
        "--output",
        tmp_path / "t5",
    )
    assert code == 2
    one_error(err)

    code, _, err = tune(
        "--base-model", tmp_path / "missing", "--data", conversations, "--output", tmp_path / "t6"
    )
    assert code == 2
    one_error(err, "model not found")
    code, _, err = tune("--base-model", orphan_adapter, "--data", conversations, "--output", tmp_path / "t7")
    assert code == 2
    one_error(err, "LoRA adapter")
    code, _, err = tune(
        "--base-model", bad_ggufs["tensors_cut"], "--data", conversations, "--output", tmp_path / "t8"
    )
    assert code == 2
    one_error(err, "could not read", "as a GGUF model")
    assert not (cache / "gguf").exists() or list((cache / "gguf").iterdir()) == []

    afile = tmp_path / "afile"
    afile.write_text("keep me")
    code, _, err = tune(*ok, "--data", conversations, "--output", afile)
    assert code == 2
    one_error(err, f"--output {afile} is a file; give a folder")
    assert afile.read_text() == "keep me"
    for k in range(1, 9):  # no run started: no folder a --resume would take for a run
        assert not (tmp_path / f"t{k}" / "tune_config.json").exists()


@pytest.mark.parametrize("hub_offline", ["0", "1"])
def test_tune_hub_id_without_network_fails_in_seconds(tmp_path, conversations, hub_offline):
    """A real process: the hub refuses connections (HF_HUB_OFFLINE=0: caught before any import of
    transformers) or is switched off with nothing cached (=1: transformers' own OSError, caught)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("TRANSFORMERS_VERBOSITY", "PYTHONWARNINGS")}
    env |= {
        "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
        "HF_HUB_OFFLINE": hub_offline,
        "HF_HUB_CACHE": str(tmp_path / "hub"),  # nothing cached
    }
    out = tmp_path / "student"
    cmd = [sys.executable, "-m", "universalner.tune", "--base-model", "Universal-NER/UniNER-7B-type"]
    t0 = time.monotonic()
    got = subprocess.run(
        [*cmd, "--data", str(conversations), "--output", str(out)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert time.monotonic() - t0 < 60, "minutes of hub retries are back"
    assert got.returncode == 2, got.stderr
    assert got.stderr.startswith(
        "error: could not load 'Universal-NER/UniNER-7B-type' from the Hugging Face hub"
    )
    one_error(got.stderr, "huggingface-cli download Universal-NER/UniNER-7B-type")
    if hub_offline == "1":  # not "set HF_HUB_OFFLINE=1", which it is
        assert "HF_HUB_OFFLINE is set" in got.stderr, got.stderr
    assert got.stdout == "" and not (out / "tune_config.json").exists()


# ================================================================== evaluate
def test_evaluate_bad_inputs(tmp_path, capsys, test_model_dir, offline, bad_ggufs, orphan_adapter, cache):
    mod = "universalner.evaluate.__main__"
    gold = tmp_path / "gold.txt"
    gold.write_text("Obama\tB-person\nvisited\tO\nParis\tB-location\n.\tO\n")

    def run(*argv):
        return run_main(mod, ["run", *argv], capsys)

    blank = tmp_path / "blank.txt"
    blank.write_text("\n \n")
    code, _, err = run("--model", test_model_dir, "--data", f"x={blank}", "--output", tmp_path / "e1")
    assert code == 2
    one_error(err, str(blank))

    latin = tmp_path / "latin.txt"
    latin.write_bytes("Café\tB-location\n".encode("latin-1"))
    code, _, err = run("--model", test_model_dir, "--data", f"x={latin}", "--output", tmp_path / "e2")
    assert code == 2
    one_error(err, str(latin), "not UTF-8")

    number = tmp_path / "number.json"
    number.write_text("5")
    code, _, err = run(
        "--model", test_model_dir, "--data", f"x={gold}", "--labels-map", number, "--output", tmp_path / "e3"
    )
    assert code == 2
    one_error(err, str(number))

    for model, part in (
        ("nobody/no-such-model", "could not load 'nobody/no-such-model'"),
        (tmp_path / "missing", "model not found"),
        (orphan_adapter, "was trained on"),
        (bad_ggufs["corrupted"], "could not read"),
    ):
        code, _, err = run("--model", model, "--data", f"x={gold}", "--output", tmp_path / "e4")
        assert code == 2, err
        one_error(err, part)
        assert (
            not (tmp_path / "e4" / "x" / "predictions.jsonl").exists()
            or (tmp_path / "e4" / "x" / "predictions.jsonl").read_text() == ""
        )

    afile = tmp_path / "afile"
    afile.write_text("keep me")
    code, _, err = run("--model", test_model_dir, "--data", f"x={gold}", "--output", afile)
    assert code == 2
    one_error(err, f"--output {afile} is a file; give a folder")
    code, _, err = run_main(
        mod, ["convert", "--input", gold, "--name", "x", "--output", afile / "x.json"], capsys
    )
    assert code == 2
    one_error(err, "is a file, not a folder")
    code, _, err = run_main(mod, ["convert", "--input", gold, "--name", "x", "--output", tmp_path], capsys)
    assert code == 2
    one_error(err, "is a folder")
    assert afile.read_text() == "keep me"
    # an existing output file of convert is replaced whole (written beside it, then moved)
    target = tmp_path / "gold.json"
    target.write_text("old")
    code, _, err = run_main(mod, ["convert", "--input", gold, "--name", "x", "--output", target], capsys)
    assert code == 0, err
    assert isinstance(json.loads(target.read_text()), list)
    assert not list(tmp_path.glob(".gold.json.tmp"))
    shutil.rmtree(tmp_path / "e4", ignore_errors=True)


def test_entry_points_never_leave_a_lock_or_temp_file(tmp_path):
    """A sweep of the folders above found nothing half-written; this checks the distill lock too."""
    from universalner.distill.lock import LOCK_FILE, output_lock

    with output_lock(tmp_path / "d"):
        assert (tmp_path / "d" / LOCK_FILE).exists()
    assert not (tmp_path / "d" / LOCK_FILE).exists()
    assert Path(tmp_path / "d").is_dir()
