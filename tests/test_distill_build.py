"""Teacher answers -> training conversations: tolerant parsing, counted filtering, negatives, format."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from universalner.distill.build import (
    DROP_REASONS,
    Annotation,
    BuildReport,
    NegativeSampler,
    annotate,
    conversations,
    filter_pairs,
    parse_tuples,
)
from universalner.distill.passages import Passage
from universalner.prompts import ACK, format_answer, parse_answer, passage_turn, question_turn

PAIRS = [("Barack Obama", "person"), ("Paris", "city")]


@pytest.mark.parametrize(
    "answer",
    [
        '[("Barack Obama", "person"), ("Paris", "city")]',
        "[('Barack Obama', 'person'), ('Paris', 'city')]",
        '[["Barack Obama", "person"], ["Paris", "city"]]',
        '[{"entity": "Barack Obama", "type": "person"}, {"entity": "Paris", "type": "city"}]',
        'Sure! Here they are:\n```python\n[("Barack Obama", "person"), ("Paris", "city")]\n```',
        '1. ("Barack Obama", "person")\n2. ("Paris", "city")',
        '[("Barack Obama", "person"), ("Paris", "city"), ("Fra',  # cut off at max_tokens
        '[("Barack Obama", "person"),\n ("Paris", "city"),]',  # trailing comma
    ],
)
def test_parse_tuples_tolerates_the_teachers_styles(answer):
    assert parse_tuples(answer) == PAIRS


def test_parse_tuples_edge_cases():
    assert parse_tuples("[]") == []
    assert parse_tuples("[(\"O'Brien\", 'person')]") == [("O'Brien", "person")]
    assert parse_tuples("[('O'Brien', 'person')]") == [("O'Brien", "person")]  # not valid Python, still read
    assert parse_tuples("I'm sorry, I cannot find entities in this passage.") is None
    assert parse_tuples("Entities: none found.") is None
    assert parse_tuples('[("unterminated, "person"), (') is None
    assert parse_tuples(None) is None


def test_filter_counts_every_drop_by_reason():
    text = "Barack Obama met Emmanuel Macron in Paris (巴黎) in 2017."
    dropped = dict.fromkeys(DROP_REASONS, 0)
    kept = filter_pairs(
        text,
        [
            ("Barack Obama", "Person"),
            (" Emmanuel Macron ", "PERSON."),
            ("Paris", "city"),
            ("Paris", "City"),  # same after normalising: a duplicate
            ("Paris", "MISC"),
            ("2017", "n/a"),
            ("something", "Other"),
            ("Angela Merkel", "person"),  # not in the passage
            ("巴黎", "city"),  # in the passage, not English
            ("", "person"),
        ],
        "type",
        dropped,
    )
    assert kept == {"person": ["Barack Obama", "Emmanuel Macron"], "city": ["Paris"]}
    assert dropped == {"empty": 1, "else_type": 3, "not_in_passage": 1, "non_english": 1, "duplicate": 1}
    kept = filter_pairs(text, [("巴黎", "city"), ("Zürich", "city")], "type", dropped, keep_non_english=True)
    assert kept == {"city": ["巴黎"]}


def test_annotate_counts_passage_level_outcomes():
    ps = [Passage(f"p{i}", f"Ada Lovelace lived in London, passage {i}.", 8, "d") for i in range(5)]
    records = {
        "k0": {"answer": '[("Ada Lovelace", "person"), ("London", "city")]'},
        "k1": {"answer": "No entities."},
        "k2": {"error": "400: too long"},
        "k3": {"answer": '[("Charles Babbage", "person")]'},  # nothing survives filtering
    }
    report = BuildReport()
    anns = annotate(ps, records, {p.id: f"k{i}" for i, p in enumerate(ps)}, report=report)
    assert [a.passage.id for a in anns] == ["p0"]
    assert (report.unparseable, report.rejected, report.without_entities, report.unanswered) == (1, 1, 1, 1)
    assert report.dropped["not_in_passage"] == 1


def test_negatives_follow_type_frequency():
    sampler = NegativeSampler(Counter({"person": 60, "location": 30, "award": 10, "date": 5}))
    rng = random.Random(0)
    draws = Counter(t for _ in range(20000) for t in sampler.sample(rng, {"date"}, 1))
    assert set(draws) == {"person", "location", "award"}
    total = sum(draws.values())
    for t, p in (("person", 60 / 100), ("location", 30 / 100), ("award", 10 / 100)):
        assert abs(draws[t] / total - p) < 0.015, (t, draws[t] / total)
    two = sampler.sample(rng, {"person"}, 2)
    assert len(set(two)) == 2 and "person" not in two
    assert sorted(sampler.sample(rng, {"person", "location"}, 5)) == ["award", "date"]  # all that is absent


def test_conversations_use_the_template_and_shuffle_with_the_seed():
    anns = [
        Annotation(
            Passage(f"p{i}", f"Ada Lovelace and Charles Babbage met in London in 1833 ({i}).", 15, "d"),
            {"person": ["Ada Lovelace", "Charles Babbage"], "city": ["London"], "date": ["1833"]},
        )
        for i in range(6)
    ]
    anns.append(Annotation(Passage("q", "Paris, 1900.", 4, "d"), {"exhibition": ["Paris"], "year": ["1900"]}))
    report = BuildReport()
    data = conversations(anns, negatives=2, seed=0, report=report)
    again = conversations(anns, negatives=2, seed=0)
    other = conversations(anns, negatives=2, seed=1)
    assert data == again and data != other
    assert json.loads(json.dumps(data, ensure_ascii=False)) == data
    orders = set()
    for rec, ann in zip(data, anns, strict=True):
        turns = rec["conversations"]
        assert rec["id"] == ann.passage.id
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
        assert turns[0]["value"] == passage_turn(ann.passage.text) and turns[1]["value"] == ACK
        asked = {}
        for q, a in zip(turns[2::2], turns[3::2], strict=True):
            label = q["value"].removeprefix("What describes ").removesuffix(" in the text?")
            assert q["value"] == question_turn(label)
            asked[label] = a["value"]
        positives = {t: format_answer(m) for t, m in ann.types.items()}
        negatives = {t: a for t, a in asked.items() if t not in positives}
        assert {t: asked[t] for t in positives} == positives
        assert len(negatives) == 2 and set(negatives.values()) == {"[]"}
        assert all(parse_answer(a) == ann.types.get(t, []) for t, a in asked.items())
        orders.add(tuple(asked))
    assert len(orders) > 1  # query order is shuffled, not fixed
    assert report.conversations == 7 and report.negatives == 14
    assert report.entities == 6 * 4 + 2 and report.questions == 6 * (3 + 2) + (2 + 2)
