"""Passages from real corpora: limits, boundaries, exact substrings, dedupe, seeded sampling, inputs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from universalner.distill.passages import (
    CorpusError,
    HFTokenCounter,
    PassageStats,
    TokenCounter,
    iter_documents,
    sample_passages,
    split_document,
)


@pytest.fixture(scope="module")
def corpus(shared_data):
    files = sorted((shared_data / "passages").glob("*.jsonl"))
    docs = {}
    for f in files:
        for lineno, line in enumerate(f.open(encoding="utf-8"), 1):
            docs[f"{f.name}:{lineno}"] = json.loads(line)["text"]
    return files, docs


_BOUNDARY_END = re.compile(r"[.!?][\"')\]\u201d\u2019]*(?:\[\d+\]|\[[a-z]\])*$")


def test_real_corpus_passages_fit_and_end_at_boundaries(corpus):
    files, docs = corpus
    stats = PassageStats()
    ps = sample_passages(files, passage_tokens=128, stats=stats)
    counter = TokenCounter()
    assert stats.documents == len(docs) == 470
    assert stats.sampled == len(ps) == stats.passages - stats.duplicates
    assert stats.duplicates > 0  # the Wikipedia dump repeats boilerplate paragraphs
    assert len({p.text for p in ps}) == len(ps)
    ends_at_boundary = 0
    for p in ps:
        doc = docs[p.doc]
        assert p.tokens == counter.count(p.text) <= 128
        start, end = p.start, p.start + len(p.text)
        assert doc[start:end] == p.text  # an exact substring: mentions can be checked and placed
        if (
            start and not doc[start - 1].isspace()
        ):  # inside a word only when that word alone is over the limit
            word = doc[:start].split()[-1] + doc[start:].split()[0]
            assert counter.count(word) > 128, word
        after_paragraph = end == len(doc) or doc[end] == "\n"
        ends_at_boundary += after_paragraph or bool(_BOUNDARY_END.search(p.text))
    # only sentences over the limit on their own (here: wiki tables drawn with +---+) are cut between words
    assert ends_at_boundary / len(ps) > 0.95, ends_at_boundary / len(ps)


def test_split_prefers_paragraphs_then_sentences_then_words():
    para1 = "Ada Lovelace was born in London. She worked with Charles Babbage."
    para2 = "Mr. Babbage designed the Analytical Engine. It was never built."
    text = f"{para1}\n\n{para2}"
    spans = split_document(text, 100)
    assert [text[s:e] for s, e, _ in spans] == [text]  # everything fits: one passage
    spans = split_document(text, 14)
    assert [text[s:e] for s, e, _ in spans] == [para1, para2]
    spans = split_document(text, 8)  # "Mr." does not end a sentence
    assert [text[s:e] for s, e, _ in spans] == [
        "Ada Lovelace was born in London.",
        "She worked with Charles Babbage.",
        "Mr. Babbage designed the Analytical Engine.",
        "It was never built.",
    ]
    spans = split_document("one two three four five six seven", 3)
    assert [n for *_, n in spans] == [3, 3, 1]
    with pytest.raises(ValueError, match=">= 1"):
        split_document(text, 0)


def test_sampling_is_seeded_and_in_corpus_order(corpus):
    files = [f for f in corpus[0] if f.name.startswith("cc_")]
    everything = sample_passages(files, passage_tokens=64)
    order = {p.id: i for i, p in enumerate(everything)}
    a = sample_passages(files, passage_tokens=64, max_passages=40, seed=0)
    b = sample_passages(files, passage_tokens=64, max_passages=40, seed=0)
    c = sample_passages(files, passage_tokens=64, max_passages=40, seed=1)
    assert len(everything) > 40
    assert [p.id for p in a] == [p.id for p in b]
    assert [p.id for p in a] != [p.id for p in c]
    assert [order[p.id] for p in a] == sorted(order[p.id] for p in a)
    assert {p.text for p in a} <= {p.text for p in everything}


def test_tokenizer_option_counts_real_tokens(corpus, test_model_dir):
    files, docs = corpus
    counter = HFTokenCounter(str(test_model_dir))
    doc = docs["wikipedia_2019.jsonl:1"][:6000]
    spans = split_document(doc, 96, counter)
    assert len(spans) > 3
    for s, e, n in spans:
        assert n == counter.count(doc[s:e]) <= 96
    with pytest.raises(CorpusError, match="cannot load tokenizer"):
        HFTokenCounter(str(test_model_dir / "no-such-tokenizer"))


def test_txt_jsonl_and_datasets_inputs(tmp_path):
    import datasets

    (tmp_path / "a.txt").write_text("First paragraph here.\n\nSecond paragraph here.\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text(
        json.dumps({"body": "Jsonl text one."}) + "\n\n" + json.dumps({"body": "Jsonl text two."}) + "\n"
    )
    ds = datasets.Dataset.from_dict({"body": ["Saved data set row.", "Another saved row."]})
    ds.save_to_disk(str(tmp_path / "saved"))
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "part.jsonl").write_text(json.dumps({"body": "Data folder row."}) + "\n")
    got = list(
        iter_documents(
            [tmp_path / "a.txt", tmp_path / "b.jsonl", tmp_path / "saved", tmp_path / "folder"],
            text_field="body",
        )
    )
    assert [(d.id, d.text) for d in got] == [
        ("a.txt", "First paragraph here.\n\nSecond paragraph here.\n"),
        ("b.jsonl:1", "Jsonl text one."),
        ("b.jsonl:3", "Jsonl text two."),
        ("saved:0", "Saved data set row."),
        ("saved:1", "Another saved row."),
        ("folder:0", "Data folder row."),
    ]
    with pytest.raises(CorpusError, match="no column 'text'"):
        list(iter_documents([tmp_path / "saved"]))


def test_bad_inputs_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": "fine"}\n{"text": oops}\n')
    with pytest.raises(CorpusError, match=r"bad\.jsonl:3: not valid JSON"):
        list(iter_documents([bad]))
    bad.write_text('{"text": "fine"}\n{"content": "x", "id": 2}\n')
    with pytest.raises(CorpusError, match=r"bad\.jsonl:2: no field 'text' \(fields: content, id\)"):
        list(iter_documents([bad]))
    bad.write_text('{"text": 5}\n')
    with pytest.raises(CorpusError, match=r"bad\.jsonl:1: field 'text' is int"):
        list(iter_documents([bad]))
    with pytest.raises(CorpusError, match="input not found"):
        list(iter_documents([tmp_path / "missing.jsonl"]))
    (tmp_path / "x.docx").write_bytes(b"PK")
    with pytest.raises(CorpusError, match="unsupported input type .docx"):
        list(iter_documents([tmp_path / "x.docx"]))


def test_hub_name_offline_says_what_to_do(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "universalner.distill",
            "--input",
            "EleutherAI/pile",
            "--output",
            str(tmp_path / "o"),
        ]
        + ["--dry-run", "--no-progress"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    assert "cannot reach the Hugging Face hub for data set 'EleutherAI/pile'" in r.stderr
    assert "save_to_disk" in r.stderr and "Traceback" not in r.stderr
