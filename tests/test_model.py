"""UniversalNER on the real 135M test model: loading, prompts, offsets, long texts, 4-bit, bad input."""

from __future__ import annotations

import json

import pytest

from universalner import Entity, UniversalNER
from universalner.model import Prediction
from universalner.weights.errors import ModelNotFoundError

TEXT = "Barack Obama met Emmanuel Macron in Paris on Tuesday."
TEXT2 = "Apple hired Tim Cook in California."
# the untuned test model answers [] to "person" in the chat layout; "city" gets it to copy mentions
LABELS = ["person", "city"]


def assert_offsets(text: str, ents: list[Entity]):
    """Each entity's offsets spell its text in ``text``; sorted by offset; a real (not 0) score."""
    assert ents, "no entities: nothing would be checked"
    for e in ents:
        assert isinstance(e, Entity)
        assert text[e.start : e.end] == e.text
        assert 0.0 < e.score <= 1.0
    assert [e.start for e in ents] == sorted(e.start for e in ents)


def assert_answers_are_the_entities(p: Prediction, labels: list[str]):
    """Constrained answers are JSON lists copied from the text, and the entities are those mentions."""
    assert set(p.raw) == set(labels)
    said = set()
    for label in labels:
        mentions = json.loads(p.raw[label])
        said |= {(m, label) for m in mentions}
    assert {(e.text, e.label) for e in p.entities} == said
    assert p.dropped == 0


def test_template_auto_picks_chat_for_a_chat_model(ner):
    assert ner.template.layout == "chat"
    assert ner.prompt(TEXT, "person") == (  # SmolLM2's ChatML, the UniNER system text as system turn
        "<|im_start|>system\nA virtual assistant answers questions from a user based on the provided "
        f"text.<|im_end|>\n<|im_start|>user\nText: {TEXT}<|im_end|>\n<|im_start|>assistant\nI've read "
        "this text.<|im_end|>\n<|im_start|>user\nWhat describes person in the text?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert f"user\nDataset: conll2003 \n Text: {TEXT}<|im_end|>" in ner.prompt(TEXT, "person", "conll2003")


def test_template_can_be_forced(ner):
    forced = UniversalNER(ner.engine, template="uniner")
    prompt = forced.prompt(TEXT, "person")
    eos = ner.engine.tokenizer.eos_token
    assert prompt == (
        "A virtual assistant answers questions from a user based on the provided text. USER: Text: "
        f"{TEXT} ASSISTANT: I've read this text.{eos}USER: What describes person in the text? ASSISTANT:"
    )
    with pytest.raises(ValueError, match="template"):
        UniversalNER(ner.engine, template="vicuna")


def test_predict_answers_every_label_and_offsets_hold(ner):
    small = UniversalNER(ner.engine, max_new_tokens=24)
    preds = small.predict([TEXT, TEXT2], LABELS, batch_size=2)
    assert [p.text for p in preds] == [TEXT, TEXT2]
    for p in preds:
        assert_answers_are_the_entities(p, LABELS)
        assert_offsets(p.text, p.entities)
    assert [(e.text, e.label, e.start, e.end) for e in preds[1].entities] == [("California", "city", 24, 34)]


def test_batch_equals_one_by_one(ner):
    small = UniversalNER(ner.engine, max_new_tokens=12)
    texts = [TEXT, TEXT2]
    batched = small.predict(texts, LABELS, batch_size=2)
    single = [small.predict([t], LABELS)[0] for t in texts]
    assert [p.raw for p in batched] == [p.raw for p in single]
    assert sum(len(p.entities) for p in batched) >= 2, [p.raw for p in batched]  # not only empty answers
    for b, s in zip(batched, single, strict=True):
        assert [(e.text, e.label, e.start, e.end) for e in b.entities] == [
            (e.text, e.label, e.start, e.end) for e in s.entities
        ]
        assert [e.score for e in b.entities] == pytest.approx([e.score for e in s.entities], abs=1e-4)


def test_long_text_is_windowed_not_truncated(ner):
    words = "Angela Merkel visited Rome in May. The weather was mild and the talks went on for hours. " * 12
    text = words + "Finally Nelson Mandela arrived in Johannesburg."
    small = UniversalNER(ner.engine, max_new_tokens=8, max_passage_tokens=64, window_overlap=8)
    spans = small._windows(text)
    assert all(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False)), "windows overlap"
    assert len(spans) > 4 and spans[-1][1] == len(text)
    calls = []
    real = small.engine.generate

    def counting(requests, **kw):
        calls.append(len(requests))
        return real(requests, **kw)

    small.engine.generate = counting
    try:
        (pred,) = small.predict([text], ["city"], batch_size=4)
    finally:
        del small.engine.generate
    assert sum(calls) == len(spans)  # one question per window: the end of the text was asked about
    answers = pred.raw["city"].split("\n")  # one answer per window, in order
    assert len(answers) == len(spans)
    assert_offsets(text, pred.entities)
    # mentions found in later windows carry offsets in the whole text, not in their window
    assert max(e.start for e in pred.entities) >= spans[1][0]


def test_empty_and_bad_input(ner):
    assert ner.extract("", ["person"]) == []
    assert ner.extract("   \n", ["person"]) == []
    with pytest.raises(TypeError):
        ner.extract(42, ["person"])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ner.extract_batch("one string", ["person"])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ner.extract_batch(["ok", None], ["person"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        ner.extract(TEXT, [])
    with pytest.raises(TypeError):
        ner.extract(TEXT, "person")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ner.extract_batch([TEXT], ["person"], batch_size=0)


def test_bad_model_locations(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not found"):
        UniversalNER.from_pretrained(tmp_path / "nope.gguf")
    with pytest.raises(ModelNotFoundError, match="no model"):
        UniversalNER.from_pretrained(tmp_path)
    (tmp_path / "weights.bin").write_text("x")
    with pytest.raises(ModelNotFoundError, match="not a .gguf"):
        UniversalNER.from_pretrained(tmp_path / "weights.bin")
    with pytest.raises(ModelNotFoundError, match="neither"):
        UniversalNER.from_pretrained("./missing-folder")
    with pytest.raises(ValueError, match="quantization"):
        UniversalNER.from_pretrained(tmp_path, quantization="3bit")


def test_hub_id_offline_gives_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with pytest.raises(ModelNotFoundError, match="huggingface-cli download Universal-NER/UniNER-7B-type"):
        UniversalNER.from_pretrained("Universal-NER/UniNER-7B-type")


def test_4bit_on_cpu_loads_and_answers(test_model_dir):
    import bitsandbytes as bnb

    ner4 = UniversalNER.from_pretrained(test_model_dir, quantization="4bit", device="cpu", max_new_tokens=12)
    linears = [m for m in ner4.engine.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert linears, "the 4-bit path must replace linear layers with bitsandbytes nf4 layers"
    assert linears[0].weight.quant_type == "nf4"
    (pred,) = ner4.predict([TEXT], LABELS)
    assert_answers_are_the_entities(pred, LABELS)
    assert_offsets(TEXT, pred.entities)
