"""Reading training conversations: the reference's JSON, supervised CoNLL sets, clear errors."""

from __future__ import annotations

import json

import pytest

from universalner.prompts import ACK, format_answer, passage_turn, question_turn
from universalner.tune.data import (
    DataError,
    load_examples,
    parse_supervised_arg,
    read_conversations,
    shuffle_queries,
    supervised_examples,
)


def record(rid, text, qa, dataset=None):
    turns = [{"from": "human", "value": passage_turn(text, dataset)}, {"from": "gpt", "value": ACK}]
    for q, a in qa:
        turns += [{"from": "human", "value": question_turn(q)}, {"from": "gpt", "value": a}]
    return {"id": rid, "conversations": turns}


GOOD = [
    record("a", "Obama visited Paris.", [("person", '["Obama"]'), ("location", '["Paris"]')]),
    record("b", "Aspirin cures headache.", [("chemical", '["Aspirin"]')], dataset="bc5cdr"),
]


def test_reads_json_list_and_json_lines_alike(tmp_path):
    as_list = tmp_path / "conv.json"
    as_list.write_text(json.dumps(GOOD, indent=1))
    as_lines = tmp_path / "conv.jsonl"
    as_lines.write_text("\n".join(json.dumps(r) for r in GOOD) + "\n")
    for path in (as_list, as_lines):
        a, b = read_conversations(path)
        assert (a.id, a.conversation.text, a.conversation.dataset) == ("a", "Obama visited Paris.", None)
        assert a.conversation.questions == ["person", "location"]
        assert a.conversation.answers == ['["Obama"]', '["Paris"]']
        assert (b.conversation.dataset, b.conversation.text) == ("bc5cdr", "Aspirin cures headache.")
        # the template module renders every human turn back byte for byte
        msgs = a.conversation.messages()
        assert [m["content"] for m in msgs] == [t["value"] for t in GOOD[0]["conversations"]]


def test_reads_the_reference_benchmark_file(shared_data):
    path = shared_data.parent / "benchmarks" / "zero-shot" / "CrossNER_politics.json"
    examples = read_conversations(path)
    raw = json.loads(path.read_text())
    assert len(examples) == len(raw)
    for ex, rec in zip(examples[:50], raw[:50], strict=True):
        assert ex.id == rec["id"]
        assert [m["content"] for m in ex.conversation.messages()] == [
            t["value"] for t in rec["conversations"]
        ]


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda r: r.pop("conversations"), ["no 'conversations'"]),
        (
            lambda r: r["conversations"][2].update(value="Which persons?"),
            ["conversations[2]", "What describes"],
        ),
        (lambda r: r["conversations"][0].update(value="Passage: x"), ["conversations[0]", "Text: "]),
        (lambda r: r["conversations"].pop(), ["no answer"]),
        (lambda r: r["conversations"][1].update({"from": "system"}), ["conversations[1]", "'system'"]),
        (lambda r: r["conversations"][3].update({"from": "human"}), ["conversations[3]", "alternate"]),
    ],
)
def test_a_bad_record_names_file_line_and_record(tmp_path, mutate, words):
    records = json.loads(json.dumps(GOOD + GOOD))
    mutate(records[2])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(records, indent=1))
    starts = [i + 1 for i, x in enumerate(json.dumps(records, indent=1).splitlines()) if x == " {"]
    with pytest.raises(DataError) as err:
        read_conversations(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:{starts[2]}: record 2 (id 'a')"), msg
    for w in words:
        assert w in msg


def test_broken_json_names_the_line(tmp_path):
    text = json.dumps(GOOD, indent=1).splitlines()
    text[6] = text[6].replace('"value"', "value")  # an unquoted key on line 7
    path = tmp_path / "broken.json"
    path.write_text("\n".join(text))
    with pytest.raises(DataError, match=rf"^{path}:7:\d+: not valid JSON"):
        read_conversations(path)
    lines = tmp_path / "broken.jsonl"
    lines.write_text(json.dumps(GOOD[0]) + "\n" + json.dumps(GOOD[1])[:-3] + "\n")
    with pytest.raises(DataError, match=rf"^{lines}:2:\d+: not valid JSON"):
        read_conversations(lines)
    with pytest.raises(DataError, match="not found"):
        read_conversations(tmp_path / "missing.json")
    (tmp_path / "empty.json").write_text("  \n")
    with pytest.raises(DataError, match="empty"):
        read_conversations(tmp_path / "empty.json")


def test_query_order_is_shuffled_with_the_seed_and_pairs_stay_together(tmp_path):
    labels = [f"type {i}" for i in range(12)]
    rec = record("r", "Some text.", [(q, format_answer([q.upper()])) for q in labels])
    path = tmp_path / "c.json"
    path.write_text(json.dumps([rec]))
    (ex,) = read_conversations(path)
    one = shuffle_queries([ex], seed=0)[0].conversation
    again = shuffle_queries([ex], seed=0)[0].conversation
    other = shuffle_queries([ex], seed=1)[0].conversation
    assert one.questions == again.questions
    assert one.questions != other.questions and one.questions != labels
    assert sorted(one.questions) == sorted(labels)
    for q, a in zip(one.questions, one.answers, strict=True):
        assert a == format_answer([q.upper()])


def test_supervised_conll_becomes_dataset_specific_conversations(shared_data):
    path = shared_data / "crossner" / "politics" / "train.txt"
    examples = supervised_examples("crossner_politics", path)
    asked = {
        "political party",
        "election",
        "politician",
        "location",
        "organization",
        "country",
        "event",
        "person",
    }
    assert len(examples) == 200
    for ex in examples:
        conv = ex.conversation
        assert conv.dataset == "crossner_politics"
        assert set(conv.questions) == asked  # every type of the data set, misc never asked
        assert conv.messages()[0]["content"].startswith("Dataset: crossner_politics \n Text: ")
    # a sentence's gold mentions come back under their natural-language type
    sentence = next(ex.conversation for ex in examples if "Brexit Party" in ex.conversation.text)
    answers = dict(zip(sentence.questions, sentence.answers, strict=True))
    assert json.loads(answers["political party"]) == ["Brexit Party", "UK Independence Party"]
    assert json.loads(answers["politician"]) == ["Nigel Farage"]
    assert answers["election"] == "[]"


def test_supervised_errors_and_mixing(tmp_path, shared_data):
    bad = tmp_path / "bad.txt"
    bad.write_text("Obama\tB-person\nvisited\nParis\tB-location\n")
    with pytest.raises(DataError, match=rf"crossner_ai={bad}: {bad}:2"):
        supervised_examples("crossner_ai", bad)
    with pytest.raises(DataError, match="NAME=PATH"):
        parse_supervised_arg("just/a/path.txt")
    assert parse_supervised_arg(" wnut17 = a/b.conll ") == ("wnut17", __import__("pathlib").Path("a/b.conll"))
    conv = tmp_path / "c.json"
    conv.write_text(json.dumps(GOOD + [record("empty", "No questions here.", [])]))
    mixed = load_examples([conv], [("bc5cdr", shared_data / "bc5cdr" / "devel.tsv")], seed=0)
    assert [ex.id for ex in mixed[:2]] == ["a", "b"]  # the record without a question is left out
    assert all(ex.conversation.dataset == "bc5cdr" for ex in mixed[2:]) and len(mixed) > 100


def test_labels_map_file_overrides_the_builtin_names(tmp_path, shared_data):
    path = shared_data / "crossner" / "politics" / "train.txt"
    override = tmp_path / "labels.json"
    override.write_text(json.dumps({"crossner_politics": {"politicalparty": "party", "event": None}}))
    (first, *_) = supervised_examples("crossner_politics", path, override)
    assert "party" in first.conversation.questions
    assert (
        "political party" not in first.conversation.questions and "event" not in first.conversation.questions
    )


def test_cli_reports_bad_data_in_one_line(tmp_path, test_model_dir, capsys):
    from universalner.tune.__main__ import main

    records = json.loads(json.dumps(GOOD))
    records[1]["conversations"][2]["value"] = "List the chemicals."
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(records, indent=1))
    code = main(["--base-model", str(test_model_dir), "--data", str(bad), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    line = (
        next(i for i, x in enumerate(json.dumps(records, indent=1).splitlines(), 1) if '"id": "b"' in x) - 1
    )
    assert f"error: {bad}:{line}: record 1 (id 'b'): conversations[2]" in err, err
    assert "Traceback" not in err and not (tmp_path / "out" / "tune_config.json").exists()
