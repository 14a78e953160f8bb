"""Answer strings to offsets, and windows for long texts."""

import pytest

from universalner.chunking import merge, windows
from universalner.entity import Entity
from universalner.spans import SpanStats, find_mention, locate


def check(text, ents):
    for e in ents:
        assert text[e.start : e.end] == e.text


def test_all_occurrences_of_a_repeated_mention():
    text = "Paris is big. I love Paris, and paris loves me."
    ents = locate(text, "location", ["Paris"])
    assert [(e.start, e.end) for e in ents] == [(0, 5), (21, 26)]  # exact case wins over the fallback
    check(text, ents)


def test_whole_words_first_then_case_insensitive_then_inside_words():
    assert find_mention("Tom and Tomas", "Tom") == [(0, 3)]
    assert find_mention("the APPLE store", "apple") == [(4, 9)]
    assert find_mention("superman", "man") == [(5, 8)]
    assert find_mention("New   York\nCity", "New York City") == [(0, 15)]


def test_missing_mentions_are_dropped_and_counted():
    stats = SpanStats()
    ents = locate("Obama met Macron.", "person", ["Obama", "Merkel", ""], stats=stats)
    assert [e.text for e in ents] == ["Obama"]
    assert (stats.found, stats.dropped) == (1, 1)


def test_overlapping_mentions():
    text = "New York City is in New York State, and New York is big."
    ents = locate(text, "location", ["New York City", "New York"], scores={"New York": 0.5})
    spans = {(e.text, e.start) for e in ents}
    # "New York" inside "New York City" is the same mention; its standalone occurrences stay
    assert ("New York City", 0) in spans
    assert ("New York", 0) not in spans
    assert ("New York", 20) in spans and ("New York", 40) in spans
    check(text, ents)
    # a string that only ever occurs inside a longer one is a nested entity: kept
    nested = locate("Bank of America", "org", ["Bank of America", "America"])
    assert {e.text for e in nested} == {"Bank of America", "America"}


def test_offsets_shift_into_the_document():
    doc = "Intro. Barack Obama spoke."
    ents = locate(doc[7:], "person", ["Barack Obama"], offset=7)
    assert doc[ents[0].start : ents[0].end] == "Barack Obama"


def _word_offsets(text):
    import re

    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def test_windows_cover_a_100k_word_text():
    text = " ".join(f"Word{i % 97}." if i % 13 == 12 else f"word{i % 89}" for i in range(100_000))
    ws = windows(text, _word_offsets, max_tokens=400, overlap=32)
    assert ws[0][0] == 0 and ws[-1][1] == len(text)
    for (s1, e1), (s2, _e2) in zip(ws, ws[1:], strict=False):
        assert s2 < e1, "consecutive windows overlap so no mention is cut in both"
        assert s2 > s1
    assert max(len(text[s:e].split()) for s, e in ws) <= 400


def test_windows_prefer_sentence_ends():
    text = " ".join([f"This is sentence number {i}." for i in range(60)])
    ws = windows(text, _word_offsets, max_tokens=40, overlap=5)
    assert all(text[e - 1] == "." for _, e in ws)


def test_short_text_is_one_window_and_bad_size_is_refused():
    assert windows("a b c", _word_offsets, 10) == [(0, 5)]
    with pytest.raises(ValueError):
        windows("a b c", _word_offsets, 2)


def test_merge_keeps_one_entity_per_span_and_label():
    a = Entity("Paris", "loc", 0, 5, 0.4)
    b = Entity("Paris", "loc", 0, 5, 0.9)
    c = Entity("Paris", "city", 0, 5, 0.1)
    assert merge([a, b, c]) == [b, c] or merge([a, b, c]) == [c, b]
