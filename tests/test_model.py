"""UniversalNER on the real 135M test model: loading, prompts, offsets, long texts, 4-bit, bad input."""

from __future__ import annotations

import pytest

from universalner import Entity, UniversalNER
from universalner.loading import ModelNotFoundError

TEXT = "Barack Obama met Emmanuel Macron in Paris on Tuesday."


def assert_offsets(text: str, ents: list[Entity]):
    for e in ents:
        assert isinstance(e, Entity)
        assert text[e.start : e.end] == e.text
        assert 0.0 <= e.score <= 1.0


def test_template_auto_picks_chat_for_a_chat_model(ner):
    assert ner.template.layout == "chat"
    assert ner.prompt(TEXT, "person") == ner.template.prompt(TEXT, "person")
    assert "Text: " + TEXT in ner.prompt(TEXT, "person")


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
    preds = small.predict([TEXT, "Apple hired Tim Cook in California."], ["person", "location"], batch_size=2)
    assert len(preds) == 2
    for p in preds:
        assert set(p.raw) == {"person", "location"}
        assert all(isinstance(v, str) and v for v in p.raw.values())
        assert_offsets(p.text, p.entities)


def test_batch_equals_one_by_one(ner):
    small = UniversalNER(ner.engine, max_new_tokens=12)
    texts = [TEXT, "The Nile flows through Egypt."]
    batched = small.predict(texts, ["person"], batch_size=2)
    single = [small.predict([t], ["person"])[0] for t in texts]
    assert [p.raw for p in batched] == [p.raw for p in single]


def test_long_text_is_windowed_not_truncated(ner):
    words = "Angela Merkel visited Rome in May. The weather was mild and the talks went on for hours. " * 12
    text = words + "Finally Nelson Mandela arrived in Johannesburg."
    small = UniversalNER(ner.engine, max_new_tokens=8, max_passage_tokens=64, window_overlap=8)
    spans = small._windows(text)
    assert len(spans) > 4 and spans[-1][1] == len(text)
    calls = []
    real = small.engine.generate

    def counting(requests, **kw):
        calls.append(len(requests))
        return real(requests, **kw)

    small.engine.generate = counting
    try:
        (pred,) = small.predict([text], ["person"], batch_size=4)
    finally:
        del small.engine.generate
    assert sum(calls) == len(spans)  # one question per window: the end of the text was asked about
    assert pred.raw["person"].count("\n") >= len(spans) - 1
    assert_offsets(text, pred.entities)


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
    (pred,) = ner4.predict([TEXT], ["person"])
    assert pred.raw["person"].strip()
    assert_offsets(TEXT, pred.entities)
