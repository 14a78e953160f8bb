"""evaluate: the official metric's edge cases, strict span F1, loaders on real corpora, score/convert."""

from __future__ import annotations

import json
import random
import warnings

import pytest
from conftest import missing

from universalner.corpora.labels import builtin_key
from universalner.evaluate import (
    BUILTIN,
    DataFormatError,
    decode_tags,
    label_map_for,
    load_eval_set,
    load_supervised,
    normalize_answer,
    official_parse,
    official_scores,
    read_conll,
    read_reference_json,
    sentences_to_conversations,
    strict_scores,
)
from universalner.evaluate.__main__ import main
from universalner.evaluate.metrics import official_counts, reference_response
from universalner.prompts import ACK

CROSSNER = {
    "ai": "AI",
    "literature": "literature",
    "music": "music",
    "politics": "politics",
    "science": "science",
}


@pytest.fixture(scope="session")
def zero_shot(shared_data):
    path = shared_data.parent / "benchmarks" / "zero-shot"
    if not path.is_dir():
        missing(f"the reference benchmark files are not at {path}")
    return path


# --- (a) the official metric, rule by rule ----------------------------------------------------------
@pytest.mark.parametrize(
    "output, parsed",
    [
        ('["Barack Obama", "the U.S."]', ["barack obama", "us"]),
        ('["Obama", "obama", "The Obama!"]', ["obama"]),  # normalised, then de-duplicated
        ('["the"]', [""]),  # an article alone normalises to "", which still counts as a mention
        ('["Thea", "An  apple,", "café", "“x”"]', ["thea", "apple", "café", "“x”"]),  # ASCII punctuation only
        ('Answer: ["x"]', []),  # the list must open the answer (re.match, not re.search)
        (' ["x"]', []),  # ... before the reference's strip; reference_response strips it
        ('["x"] ["y"]', ["x"]),  # the first list only
        ('["x]y", "z"]', []),  # non-greedy: cut at the first "]" -> invalid JSON -> []
        ('["x",\n"y"]', []),  # no DOTALL: a list spanning lines is not found
        ('["a", 1]', []),  # a non-string item makes the whole answer []
        ("[null]", []),
        ("['single quotes']", []),  # not JSON
        ('[["Obama", "person"]]', []),  # nested lists end at the first "]" too, so never parse
        ("[]", []),
        ("I could not find any.", []),
    ],
)
def test_official_parse_edge_cases(output, parsed):
    assert official_parse(output) == parsed


def test_official_scores_micro_by_hand():
    preds = [
        '["A B", "c", "c"]',  # 2 distinct: "a b" right, "c" wrong
        "There are none.",  # unparseable: 0 predicted
        '["d"]',  # right
        '["e", "f"] trailing text',  # "f" right
    ]
    golds = ['["a b"]', '["x"]', '["D", "d"]', '["f", "g", "h"]']
    assert [official_counts(p, g) for p, g in zip(preds, golds, strict=True)] == [
        (1, 2, 1),
        (0, 0, 1),
        (1, 1, 1),
        (1, 2, 3),
    ]
    s = official_scores(preds, golds, ["t1", "t2", "t1", "t2"])
    p, r = 3 / (5 + 1e-10), 3 / (6 + 1e-10)  # the reference's smoothing, exactly
    assert (s.micro.precision, s.micro.recall) == (p, r)
    assert s.micro.f1 == 2 * p * r / (p + r + 1e-10)
    assert (s.per_type["t1"].correct, s.per_type["t1"].predicted, s.per_type["t1"].gold) == (2, 3, 2)
    assert official_scores([], []).micro.f1 == 0.0
    assert normalize_answer("  The  Beatles' `White Album`  ") == "beatles white album"
    assert reference_response(' USER: q ASSISTANT: ["x"] ') == '["x"]'
    with pytest.raises(ValueError, match="2 predictions for 1 gold"):
        official_scores(["[]", "[]"], ["[]"])


def test_score_cli_matches_reference_scorer(zero_shot, tmp_path, capsys):
    """Numbers the reference's NEREvaluator gives on these inputs (run once, recorded here)."""
    gold = zero_shot / "CrossNER_AI.json"
    rng = random.Random(1)
    lines = []
    for rec in json.loads(gold.read_text()):
        answer = rec["conversations"][-1]["value"]
        lines.append(json.dumps({"id": rec["id"], "output": answer if rng.random() < 0.7 else '["LREC"]'}))
    pred = tmp_path / "pred.jsonl"
    pred.write_text("\n".join(lines) + "\n")
    assert main(["score", "--gold", str(gold), "--predictions", str(pred)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (result["correct"], result["predicted"], result["gold"], result["n_records"]) == (
        1095,
        2784,
        1603,
        5603,
    )
    assert result["precision"] == pytest.approx(0.3933189655172272, abs=1e-9)
    assert result["recall"] == pytest.approx(0.6830941983779986, abs=1e-9)
    assert result["f1"] == pytest.approx(0.4992021882371658, abs=1e-9)

    # bad input: a clear message naming the file and line, exit status 2
    pred.write_text(lines[0] + "\n{not json\n")
    assert main(["score", "--gold", str(gold), "--predictions", str(pred)]) == 2
    assert f"{pred}:2: not valid JSON" in capsys.readouterr().err
    pred.write_text(lines[0] + "\n")
    assert main(["score", "--gold", str(gold), "--predictions", str(pred)]) == 2
    assert "no answer for 5602 of 5603" in capsys.readouterr().err
    assert main(["score", "--gold", str(gold), "--predictions", str(pred), "--allow-missing"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["predicted"] == 0
    pred.write_text(lines[0] + "\n" + lines[0] + "\n")
    assert main(["score", "--gold", str(gold), "--predictions", str(pred)]) == 2
    assert "appears twice" in capsys.readouterr().err


# --- (b) strict span scores ---------------------------------------------------------------------
def test_strict_scores_by_hand():
    gold = [[(0, 5, "person"), (10, 15, "location")], [(3, 7, "person")], []]
    pred = [
        [(0, 5, "person"), (0, 5, "person"), (10, 15, "person")],  # duplicate counts once; wrong label
        [(3, 8, "person")],  # off by one character
        [(1, 2, "location")],
    ]
    s = strict_scores(pred, gold, ["person", "location"])
    assert (s.micro.correct, s.micro.predicted, s.micro.gold) == (1, 4, 3)
    assert list(s.per_type) == ["person", "location"]
    assert (s.per_type["person"].correct, s.per_type["person"].predicted, s.per_type["person"].gold) == (
        1,
        3,
        2,
    )
    assert (s.per_type["location"].predicted, s.per_type["location"].gold) == (1, 1)
    assert s.micro.f1 == pytest.approx(2 * 0.25 * (1 / 3) / (0.25 + 1 / 3))
    assert s.macro_f1 == pytest.approx((0.4 + 0.0) / 2)


# --- loaders -------------------------------------------------------------------------------------
def test_decode_tags_schemes():
    iob2 = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-ORG"]
    assert decode_tags(iob2) == [(0, 2, "PER"), (3, 4, "LOC"), (4, 5, "LOC"), (5, 6, "ORG")]
    iob1 = ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG"]
    assert decode_tags(iob1) == [(0, 2, "PER"), (2, 3, "PER"), (4, 5, "LOC"), (5, 6, "ORG")]
    bioes = ["S-PER", "B-ORG", "I-ORG", "E-ORG", "E-LOC", "O"]
    assert decode_tags(bioes) == [(0, 1, "PER"), (1, 4, "ORG"), (4, 5, "LOC")]
    with pytest.raises(DataFormatError, match="'PER' is not a BIO tag"):
        decode_tags(["PER"], "f.txt:3")


def test_read_conll_layouts(tmp_path):
    conll03 = tmp_path / "conll03.txt"  # four space-separated columns, -DOCSTART-, IOB1
    conll03.write_text(
        "-DOCSTART- -X- -X- O\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP O\nGerman JJ I-NP I-MISC\n"
        "call NN I-NP O\n. . O O\n\nPeter NNP I-NP I-PER\nBlackburn NNP I-NP I-PER\n"
    )
    s = read_conll(conll03)
    assert [x.text for x in s] == ["EU rejects German call .", "Peter Blackburn"]
    assert [(e.text, e.label, e.start, e.end) for e in s[0].entities] == [
        ("EU", "ORG", 0, 2),
        ("German", "MISC", 11, 17),
    ]
    assert s[1].entities[0].text == "Peter Blackburn" and s[1].source == f"{conll03}:9"

    mit = tmp_path / "mit.bio"  # the tag first, as in the MIT Movie/Restaurant files; CRLF; tab breaks
    mit.write_bytes(
        b"O\tany\r\nB-Cuisine\tthai\r\nI-Cuisine\tfusion\r\nO\tplaces\r\n\t\r\nB-Rating\t5\r\nO\tstar\r\n"
    )
    s = read_conll(mit)
    assert [x.text for x in s] == ["any thai fusion places", "5 star"]
    assert [(e.text, e.label) for x in s for e in x.entities] == [("thai fusion", "Cuisine"), ("5", "Rating")]
    for x in s:
        assert all(x.text[e.start : e.end] == e.text for e in x.entities)

    bad = tmp_path / "bad.txt"
    bad.write_text("Obama\tB-PER\nvisited\nParis\tB-LOC\n")
    with pytest.raises(DataFormatError, match=f"{bad}:2: expected a token and a tag"):
        read_conll(bad)
    bad.write_text("Obama\tB-PER\nvisited\tX\n")
    with pytest.raises(DataFormatError, match=f"{bad}:2: neither the last nor the first column"):
        read_conll(bad)
    with pytest.raises(FileNotFoundError, match="data file not found"):
        read_conll(tmp_path / "nope.txt")


@pytest.mark.parametrize(
    "path, n_sentences, n_mentions",  # sizes from the corpora's README
    [
        ("wnut17/emerging.test.annotated", 1287, 1079),
        ("bc5cdr/test.tsv", 4797, 9809),
        ("ncbi_disease/test.tsv", 940, 960),
    ],
)
def test_real_corpora(shared_data, path, n_sentences, n_mentions):
    sentences = read_conll(shared_data / path)
    assert len(sentences) == n_sentences
    assert sum(len(s.entities) for s in sentences) == n_mentions
    for s in sentences:
        assert s.text == " ".join(s.tokens)
        assert all(s.text[e.start : e.end] == e.text for e in s.entities)


def test_crossner_conll_equals_reference_benchmark(shared_data, zero_shot):
    """Built-in CrossNER maps ask the reference's types; the gold answers are the reference's,
    except that the reference's converter lost mentions that end a sentence (and politics' last
    sentence), which we keep."""
    for domain, ref in CROSSNER.items():
        ours = load_eval_set(shared_data / "crossner" / domain / "test.txt", f"CrossNER_{ref}")
        theirs = load_eval_set(zero_shot / f"CrossNER_{ref}.json", f"CrossNER_{ref}")
        assert ours.labels == [label for label in BUILTIN[f"crossner_{domain}"].values() if label]
        assert set(ours.labels) == set(theirs.labels) and "misc" not in ours.labels
        assert len(ours.sentences) - len(theirs.sentences) == (1 if domain == "politics" else 0)
        mine = {(r.sentence, r.label): json.loads(r.gold) for r in ours.records}
        differ = 0
        for r in theirs.records:
            assert ours.sentences[r.sentence].text == theirs.sentences[r.sentence].text
            gold = json.loads(r.gold)
            if mine[r.sentence, r.label] != gold:
                differ += 1
                assert mine[r.sentence, r.label][:-1] == gold
                assert ours.sentences[r.sentence].text.endswith(" " + mine[r.sentence, r.label][-1])
        assert differ == {"ai": 4, "literature": 2, "music": 2, "politics": 1, "science": 1}[domain]
        assert not theirs.unplaced


def test_reference_json_offsets(zero_shot):
    sentences, records, unplaced = read_reference_json(zero_shot / "mit-restaurant.json")
    assert len(records) == 12160 and len(sentences) == 1520 and not unplaced
    assert {r.label for r in records} == {
        "Amenity",
        "Location",
        "Cuisine",
        "Restaurant Name",
        "Rating",
        "Hours",
        "Price",
        "Dish",
    }
    for s in sentences:
        assert all(s.text[e.start : e.end] == e.text for e in s.entities)
        spans = sorted((e.start, e.end) for e in s.entities)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False)), s.text  # flat: no overlaps


# --- label maps ------------------------------------------------------------------------------------
def test_label_maps(tmp_path):
    assert builtin_key("CrossNER_AI") == builtin_key("crossner-ai") == builtin_key("ai") == "crossner_ai"
    assert builtin_key("wnut17_test") == "wnut17" and builtin_key("my_corpus") is None
    assert label_map_for("CrossNER_politics")["politicalparty"] == "political party"
    m = label_map_for("my_corpus", ["work_of-art", "GPE"])
    assert m == {"GPE": "gpe", "work_of-art": "work of art"}
    override = {
        "CrossNER_AI": {"misc": "miscellaneous", "programlang": "programming language"},
        "field": None,
    }
    m = label_map_for("crossner_ai", [], override)
    assert m["misc"] == "miscellaneous" and m["programlang"] == "programming language" and m["field"] is None
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert label_map_for("bc5cdr", ["Chemical", "Gene"])["Gene"] == "gene"
    assert "not in the built-in 'bc5cdr' map" in str(w[0].message)


# --- conversations and convert -----------------------------------------------------------------------
def test_sentences_to_conversations(shared_data):
    sentences = read_conll(shared_data / "wnut17" / "emerging.dev.conll")[:40]
    convs = sentences_to_conversations(sentences, "wnut17", seed=3)
    again = sentences_to_conversations(sentences, "wnut17", seed=3)
    assert convs == again and len(convs) == 40
    asked = ["person", "location", "group", "creative work", "corporation", "product"]
    orders = set()
    for conv, s in zip(convs, sentences, strict=True):
        turns = conv["conversations"]
        assert turns[0] == {"from": "human", "value": f"Dataset: wnut17 \n Text: {s.text}"}
        assert turns[1] == {"from": "gpt", "value": ACK}
        questions = [t["value"] for t in turns[2::2]]
        assert sorted(questions) == sorted(f"What describes {x} in the text?" for x in asked)
        orders.add(tuple(questions))
        answers = [m for t in turns[3::2] for m in json.loads(t["value"])]
        assert sorted(answers) == sorted(e.text for e in s.entities)
    assert len(orders) > 1  # shuffled per sentence
    plain = sentences_to_conversations(sentences[:1], "wnut17", dataset_specific=False, seed=None)
    assert plain[0]["conversations"][0]["value"] == f"Text: {sentences[0].text}"
    assert plain[0]["conversations"][2]["value"] == "What describes person in the text?"


def test_convert_round_trip(shared_data, tmp_path, capsys):
    out = tmp_path / "ncbi.json"
    src = shared_data / "ncbi_disease" / "test.tsv"
    assert main(["convert", "--input", str(src), "--name", "ncbi_disease", "--output", str(out)]) == 0
    assert "940 records from 940 sentences, 960 mentions; types asked: disease" in capsys.readouterr().out
    back = load_eval_set(out, "ncbi_disease")
    orig = load_eval_set(src, "ncbi_disease")
    assert [s.text for s in back.sentences] == [s.text for s in orig.sentences]
    key = [sorted((e.text, e.label) for e in s.entities) for s in orig.sentences]
    assert [sorted((e.text, e.label) for e in s.entities) for s in back.sentences] == key
    # strings carry no position: a mention that also occurs unannotated may be placed there (3 of 940)
    moved = [i for i, s in enumerate(back.sentences) if set(s.entities) != set(orig.sentences[i].entities)]
    assert len(moved) <= 3
    # the gold scored against itself: every mention right
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps({"id": r.id, "output": r.gold}) + "\n" for r in back.records))
    assert main(["score", "--gold", str(out), "--predictions", str(pred)]) == 0
    res = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert res["correct"] == res["predicted"] == res["gold"] > 900 and res["f1"] == pytest.approx(1, abs=1e-9)
    # the training form, as tune reads it
    convs = load_supervised(src, "ncbi_disease")
    assert len(convs) == 940 and convs[0]["conversations"][0]["value"].startswith(
        "Dataset: ncbi_disease \n Text: "
    )
    assert main(["convert", "--input", str(tmp_path / "x.txt"), "--name", "x", "--output", str(out)]) == 2
    assert "data file not found" in capsys.readouterr().err
