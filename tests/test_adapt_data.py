"""The readers of a user's annotations (DocBin, JSON lines with spans, CoNLL/BIO) and their errors."""

from __future__ import annotations

import json

import pytest

from universalner.corpora.annotated import label_map_from, read_annotated, relabel
from universalner.corpora.conll import DataFormatError


def _jsonl(tmp_path, *records, name="data.jsonl"):
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return p


def test_jsonl_shapes_of_each_tool(tmp_path):
    text = "Aspirin treats headache."
    p = _jsonl(
        tmp_path,
        {"text": text, "spans": [{"start": 0, "end": 7, "label": "DRUG"}]},  # Prodigy / spaCy
        {"text": text, "label": [[15, 24, "SYMPTOM"]]},  # doccano
        {
            "text": text,
            "entities": [{"start_offset": 0, "end_offset": 8, "label": "DRUG"}],
        },  # doccano, space taken along
        {
            "data": {"text": text},
            "annotations": [{"result": [{"value": {"start": 0, "end": 7, "labels": ["DRUG"]}}]}],
        },
    )
    got = read_annotated(p)
    assert [[(e.text, e.label) for e in s.entities] for s in got] == [
        [("Aspirin", "DRUG")],
        [("headache.", "SYMPTOM")],
        [("Aspirin", "DRUG")],
        [("Aspirin", "DRUG")],
    ]
    assert got[1].source == f"{p}:2"


@pytest.mark.parametrize(
    "record, message",
    [
        ({"text": "abc", "spans": [{"start": 1, "end": 9, "label": "X"}]}, "does not fall on the text"),
        ({"text": "abc", "spans": [{"start": 2, "end": 1, "label": "X"}]}, "does not fall on the text"),
        (
            {
                "text": "abc def",
                "spans": [{"start": 0, "end": 5, "label": "X"}, {"start": 4, "end": 7, "label": "Y"}],
            },
            "overlapping spans",
        ),
        ({"text": "abc", "spans": [{"start": 0, "end": 2}]}, "has no label"),
        ({"text": "", "spans": []}, "text is empty"),
        ({"spans": []}, 'no "text"'),
        ({"id": "p1", "conversations": []}, "this is conversation JSON"),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path, record, message):
    p = _jsonl(tmp_path, {"text": "fine", "spans": []}, record)
    with pytest.raises(DataFormatError, match=message) as e:
        read_annotated(p)
    assert str(e.value).startswith(f"{p}:2:")


def test_empty_files(tmp_path):
    for name in ("a.jsonl", "b.txt", "c.spacy"):
        (tmp_path / name).write_text("")
        with pytest.raises(DataFormatError, match="empty"):
            read_annotated(tmp_path / name)


def test_docbin_round_trip_and_spans_key(tmp_path):
    import spacy
    from spacy.tokens import DocBin, Span

    nlp = spacy.blank("en")
    doc = nlp("Aspirin treats headache in adults.")
    doc.ents = [Span(doc, 0, 1, "DRUG"), Span(doc, 2, 3, "SYMPTOM")]
    doc.spans["sc"] = [Span(doc, 0, 1, "DRUG"), Span(doc, 0, 3, "PHRASE")]
    db = DocBin(docs=[doc, nlp("Nothing here.")], store_user_data=True)
    db.to_disk(tmp_path / "d.spacy")
    got = read_annotated(tmp_path / "d.spacy")
    assert [(e.text, e.label, e.start) for e in got[0].entities] == [
        ("Aspirin", "DRUG", 0),
        ("headache", "SYMPTOM", 15),
    ]
    assert got[1].entities == [] and got[1].source.endswith("doc 1")
    with pytest.raises(DataFormatError, match="doc 0: overlapping spans"):
        read_annotated(tmp_path / "d.spacy", spans_key="sc")
    (tmp_path / "bad.spacy").write_bytes(b"not a docbin")
    with pytest.raises(DataFormatError, match="not a spaCy DocBin"):
        read_annotated(tmp_path / "bad.spacy")


def test_conll_and_labels(tmp_path):
    p = tmp_path / "train.bio"
    p.write_text("Aspirin\tB-Chem\ntreats\tO\nflu\tB-Dis\n\nIbuprofen\tB-Chem\nworks\tO\nfine\tB-Odd\n")
    sents = read_annotated(p)
    assert [e.label for e in sents[0].entities] == ["Chem", "Dis"]
    # as written
    rel, labels = relabel(sents, None)
    assert labels == ["Chem", "Dis", "Odd"]
    # a map to natural names; an unknown label stops with file and line
    with pytest.raises(DataFormatError, match=rf"{p}:5: label 'Odd' \('fine'\) is not in --labels"):
        relabel(sents, label_map_from("Chem=chemical,Dis=disease"))
    rel, labels = relabel(sents, label_map_from("Chem=chemical,Dis=disease,Odd=null"))
    assert labels == ["chemical", "disease"]
    assert [(e.text, e.label) for e in rel[1].entities] == [("Ibuprofen", "chemical")]
    m = tmp_path / "map.json"
    m.write_text(json.dumps({"Chem": "chemical", "Dis": "disease", "Odd": None}))
    assert label_map_from(str(m)) == {"Chem": "chemical", "Dis": "disease", "Odd": None}
    assert label_map_from("chemical, disease") == {"chemical": "chemical", "disease": "disease"}
