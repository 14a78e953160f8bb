"""The spaCy component ``universal_ner`` in real spaCy pipelines on the real 135M test model.

The untuned test model answers in prose unless decoding is constrained to JSON lists of passage strings;
the texts and labels below are ones where its constrained answers name mentions, overlapping ones
included ("Apple" inside a whole sentence). Every entity checked here comes from the model: tests record
what the real ``UniversalNER`` returned and check what the component made of it.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import textwrap

import pytest
import spacy
from confection import ConfigValidationError
from spacy.tokens import Doc
from spacy.training import Example

from universalner.spacy_component import UniversalNERComponent

TEXTS = [
    "Apple was founded by Steve Jobs in California.",
    "Marie Curie worked in Paris.",
    "Toyota builds cars in Japan.",
]
# definitions are what the model is asked ("What describes the people named in the text?")
LABELS = {"person": "the people named", "phrase": "the words"}


@pytest.fixture(scope="module")
def cfg(test_model_dir) -> dict:
    return {
        "model": str(test_model_dir),
        "labels": LABELS,
        "device": "cpu",
        "template": "uniner",
        "max_new_tokens": 12,
        "batch_size": 2,
    }


def record(comp: UniversalNERComponent) -> list:
    """Wrap the component's real ``extract_batch`` to keep what it returned (calls pass straight through)."""
    calls: list = []
    real = comp.ner.extract_batch

    @functools.wraps(real)
    def recording(texts, labels, **kw):
        out = real(texts, labels, **kw)
        calls.append((list(texts), out))
        return out

    comp.ner.extract_batch = recording
    return calls


def triples(spans) -> list[tuple[int, int, str]]:
    return [(s.start_char, s.end_char, s.label_) for s in spans]


def expanded(doc: Doc, ents) -> list[tuple[int, int, str]]:
    out = []
    for e in ents:
        span = doc.char_span(e.start, e.end, label=e.label, alignment_mode="expand")
        out.append((span.start_char, span.end_char, e.label))
    return sorted(set(out))


@pytest.fixture(scope="module")
def piped(cfg):
    """One ``nlp.pipe`` over all texts in spans style, with the engine's calls counted."""
    nlp = spacy.blank("en")
    comp = nlp.add_pipe("universal_ner", config={**cfg, "style": "spans"})
    calls = record(comp)
    engine = comp.ner.engine
    generate_calls: list[int] = []
    real_generate = engine.generate

    def counting(requests, **kw):
        generate_calls.append(len(requests))
        return real_generate(requests, **kw)

    engine.generate = counting
    try:
        docs = list(nlp.pipe(TEXTS, batch_size=len(TEXTS)))
    finally:
        del engine.generate  # the instance attribute goes, the class method is back
    return {"nlp": nlp, "comp": comp, "docs": docs, "calls": calls, "generate_calls": generate_calls}


# ------------------------------------------------------------------ without the model
def test_entry_point_works_in_a_fresh_interpreter(test_model_dir, tmp_path):
    """``add_pipe`` and ``spacy.load`` find the factory through the entry point: the script never imports
    universalner (spaCy does, when it reads the ``spacy_factories`` entry points)."""
    script = textwrap.dedent(
        f"""
        import json, sys, spacy
        nlp = spacy.blank("en")
        comp = nlp.add_pipe("universal_ner", config={{"model": {str(test_model_dir)!r}, "labels": ["city"]}})
        nlp.to_disk({str(tmp_path)!r})
        loaded = spacy.load({str(tmp_path)!r})
        print(json.dumps([type(comp).__name__, loaded.pipe_names, list(loaded.get_pipe("universal_ner").labels)]))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [
        "UniversalNERComponent",
        ["universal_ner"],
        ["city"],
    ]


@pytest.mark.parametrize(
    "change, key",
    [
        ({"model": " "}, "model"),  # a blank name (a missing key means the shipped default student)
        ({"lables": ["city"]}, "lables"),
        ({"style": "entities"}, "style"),
        ({"labels": "city"}, "labels"),
        ({"labels": []}, "labels"),
        ({"batch_size": 0}, "batch_size"),
        ({"threshold": 1.5}, "threshold"),
        ({"quantization": "3bit"}, "quantization"),
        ({"overwrite_ents": "yes"}, "overwrite_ents"),
        ({"template": "vicuna"}, "template"),
        ({"model": "/no/such/model.gguf"}, "model"),
    ],
)
def test_bad_config_names_the_key(cfg, change, key):
    config = {**cfg, **change}
    config = {k: v for k, v in config.items() if v is not None}
    with pytest.raises(ConfigValidationError) as err:
        spacy.blank("en").add_pipe("universal_ner", config=config)
    assert key in str(err.value)


def test_model_folder_without_a_model_is_a_config_error(cfg, tmp_path):
    with pytest.raises(ConfigValidationError, match="model"):
        spacy.blank("en").add_pipe("universal_ner", config={**cfg, "model": str(tmp_path)})


def test_no_labels_is_a_clear_error_and_initialize_takes_them_from_examples(cfg):
    nlp = spacy.blank("en")
    comp = nlp.add_pipe("universal_ner", config={**cfg, "labels": None})
    with pytest.raises(ValueError, match="no labels"):
        nlp("Marie Curie worked in Paris.")
    gold = [
        Example.from_dict(nlp.make_doc(t), {"entities": ents})
        for t, ents in [
            ("Marie Curie worked in Paris.", [(0, 11, "PERSON"), (22, 27, "GPE")]),
            ("Toyota builds cars.", [(0, 6, "ORG")]),
        ]
    ]
    nlp.initialize(lambda: gold)
    assert comp.labels == ("GPE", "ORG", "PERSON")
    # labels learned at initialize travel with the pipeline (bytes here; disk in the tests below)
    again = spacy.blank("en")
    again.add_pipe("universal_ner", config={**cfg, "labels": None})
    again.from_bytes(nlp.to_bytes())
    assert again.get_pipe("universal_ner").labels == ("GPE", "ORG", "PERSON")
    assert comp._ner is None  # nothing asked the model: it is loaded on first use only


def test_error_handler_is_honoured(cfg, tmp_path):
    """A model folder that cannot load fails inside the batch; spaCy's error handler decides."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    nlp = spacy.blank("en")
    nlp.add_pipe("universal_ner", config={**cfg, "model": str(tmp_path)})
    with pytest.raises((OSError, ValueError)):  # the default handler raises what loading raised
        list(nlp.pipe(["Marie Curie worked in Paris."]))
    seen = []
    nlp.set_error_handler(lambda name, proc, docs, e: seen.append((name, [d.text for d in docs], type(e))))
    out = list(nlp.pipe(["a b", "c d", "e f"], batch_size=2))
    assert [(name, texts) for name, texts, _ in seen] == [
        ("universal_ner", ["a b", "c d"]),
        ("universal_ner", ["e f"]),
    ]
    assert out == []  # as in spaCy's own components, a failed batch is left out
    seen.clear()
    doc = nlp("g h")
    assert doc.text == "g h" and [s[0] for s in seen] == ["universal_ner"]


# ------------------------------------------------------------------ with the model
def test_pipe_batches_through_extract_batch(piped):
    # one extract_batch call for the whole nlp.pipe batch; one engine call per 2 passages (config batch_size)
    assert len(piped["calls"]) == 1
    assert piped["calls"][0][0] == TEXTS
    assert piped["generate_calls"] == [2 * len(LABELS), 1 * len(LABELS)]


def test_spans_style_keeps_every_mention_with_its_score(piped):
    preds = piped["calls"][0][1]
    assert sum(map(len, preds)) >= 3, "the test model found too little to test with; change TEXTS"
    overlapping = 0
    for doc, ents in zip(piped["docs"], preds, strict=True):
        group = doc.spans["sc"]
        assert sorted(triples(group)) == expanded(doc, ents)
        scores = group.attrs["scores"]
        assert len(scores) == len(group)
        for span, score in zip(group, scores, strict=True):
            match = [
                e.score
                for e in ents
                if (e.start, e.end, e.label) == (span.start_char, span.end_char, span.label_)
            ]
            assert score == pytest.approx(max(match))
            assert span._.score is not None and span._.score >= score
        overlapping += sum(
            a.start < b.end and b.start < a.end for i, a in enumerate(group) for b in list(group)[i + 1 :]
        )
        assert not doc.ents
    assert overlapping >= 1, "no overlapping mentions: the spans style test needs some"


def test_ents_style_keeps_longest_then_best(piped, cfg):
    """The same real answers placed in ents style: no overlaps; a dropped mention lost to a longer or
    equally long, better-scored one."""
    nlp = spacy.blank("en")
    comp = nlp.add_pipe("universal_ner", config={**cfg, "style": "ents"})
    preds = piped["calls"][0][1]
    docs = [nlp.make_doc(t) for t in TEXTS]
    comp.set_annotations(docs, preds)
    dropped = 0
    for doc, ents in zip(docs, preds, strict=True):
        chosen = list(doc.ents)
        for a, b in zip(chosen, chosen[1:], strict=False):
            assert a.end <= b.start
        for e in ents:
            span = doc.char_span(e.start, e.end, label=e.label, alignment_mode="expand")
            if (span.start, span.end, span.label_) in {(c.start, c.end, c.label_) for c in chosen}:
                continue
            dropped += 1
            winner = next(c for c in chosen if c.start < span.end and span.start < c.end)
            assert len(winner) > len(span) or (len(winner) == len(span) and winner._.score >= e.score)
        for c in chosen:
            assert c._.score == pytest.approx(
                max(e.score for e in ents if (e.label, e.start) == (c.label_, c.start_char))
            )
    assert dropped >= 1, "no overlapping mentions: the ents style test needs some"


def test_mentions_inside_tokens_are_widened_not_dropped(piped, cfg):
    """Whitespace tokens keep the full stop on the last word: a mention ending before it covers the token."""
    nlp = spacy.blank("en")
    comp = nlp.add_pipe("universal_ner", config={**cfg, "style": "spans"})
    preds = piped["calls"][0][1]
    docs = [Doc(nlp.vocab, words=t.split(" "), spaces=[True] * (t.count(" ")) + [False]) for t in TEXTS]
    comp.set_annotations(docs, preds)
    cut = 0
    for doc, ents in zip(docs, preds, strict=True):
        group = doc.spans["sc"]
        assert len(group) == len({(s.start, s.end, s.label_) for s in group})
        for e in ents:
            covering = [
                s for s in group if s.label_ == e.label and s.start_char <= e.start and e.end <= s.end_char
            ]
            assert covering, f"{e} was dropped"
            if (covering[0].start_char, covering[0].end_char) != (e.start, e.end):
                cut += 1
                assert covering[0].text.startswith(e.text) or e.text in covering[0].text
    assert cut >= 1 and comp.widened == cut, "no mention inside a token: change TEXTS"


@pytest.mark.parametrize("overwrite", [False, True])
def test_entities_from_an_earlier_component(cfg, overwrite):
    text = "Marie Curie worked in Paris."
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "RULED", "pattern": "Marie Curie"}, {"label": "CITY", "pattern": "Paris"}])
    config = {**cfg, "labels": {"person": LABELS["person"]}, "style": "ents", "overwrite_ents": overwrite}
    comp = nlp.add_pipe("universal_ner", config=config)
    calls = record(comp)
    doc = nlp(text)
    (ents,) = calls[0][1]
    ruled = [(0, 11, "RULED"), (22, 27, "CITY")]
    mine = expanded(doc, ents)
    assert any(s < 11 and 0 < e for s, e, _ in mine), "the model should name Marie Curie here"
    got = triples(doc.ents)
    if not overwrite:
        assert set(ruled) <= set(got)
        assert all(t in mine for t in got if t not in ruled)
        assert all(s._.score is None for s in doc.ents if s.label_ in ("RULED", "CITY"))
    else:
        assert (0, 11, "RULED") not in got
        assert (22, 27, "CITY") in got or any(s < 27 and 22 < e for s, e, _ in mine)
        assert any(t in mine and t[0] < 11 for t in got)
    assert all(s._.score is not None for s in doc.ents if triples([s])[0] in mine)


def test_saved_pipeline_loads_and_gives_the_same_entities(cfg, tmp_path):
    texts = TEXTS[1:2]
    nlp = spacy.blank("en")
    nlp.add_pipe("universal_ner", config={**cfg, "style": "ents", "threshold": 0.05})
    before = list(nlp.pipe(texts))
    assert any(d.ents for d in before)
    nlp.to_disk(tmp_path)
    loaded = spacy.load(tmp_path)
    comp = loaded.get_pipe("universal_ner")
    assert comp.label_definitions == LABELS and comp.labels == ("person", "phrase")
    assert comp.settings == nlp.get_pipe("universal_ner").settings
    assert comp.ner.engine is nlp.get_pipe("universal_ner").ner.engine  # loaded once, shared
    # nlp.evaluate runs the reloaded pipeline against what the original one said: the same entities
    scores = loaded.evaluate([Example(loaded.make_doc(d.text), d) for d in before])
    assert (scores["ents_p"], scores["ents_r"], scores["ents_f"]) == (1.0, 1.0, 1.0)
    assert set(scores["ents_per_type"]) <= set(LABELS) and scores["ents_per_type"]


def test_int8_is_a_quantization_the_config_accepts(cfg):
    nlp = spacy.blank("en")
    comp = nlp.add_pipe("universal_ner", config={**cfg, "quantization": "int8", "max_new_tokens": 6})
    assert comp.settings.quantization == "int8"
    doc = nlp("Marie Curie worked in Paris.")
    assert isinstance(list(doc.ents), list)
    assert any(type(m).__name__ == "Int8Linear" for m in comp.ner.engine.model.modules())


def test_labels_recorded_by_an_adapted_student_are_the_default(cfg, tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "universalner.json").write_text(json.dumps({"labels": ["drug", "symptom"]}))
    comp = spacy.blank("en").add_pipe("universal_ner", config={**cfg, "model": str(tmp_path), "labels": None})
    assert comp.labels == ("drug", "symptom")
    comp = spacy.blank("en").add_pipe(
        "universal_ner", config={**cfg, "model": str(tmp_path), "labels": ["x"]}
    )
    assert comp.labels == ("x",)
