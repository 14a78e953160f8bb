"""Loss masking token by token, for both layouts, on the test model's real tokenizer."""

from __future__ import annotations

import pytest

from universalner.prompts import Conversation, get_template
from universalner.tune.collate import (
    IGNORE,
    Collator,
    Encoder,
    label_by_offsets,
    label_by_pieces,
    render_with_pairs,
    target_spans,
)

CONV = Conversation(
    "Barack Obama met Emmanuel Macron in Paris.",
    ["person", "location", "date"],
    ['["Barack Obama", "Emmanuel Macron"]', '["Paris"]', "[]"],
)


@pytest.fixture(scope="module")
def tok(test_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(test_model_dir))


def encode(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def runs(labels):
    """(start, end) of each run of target labels."""
    out, start = [], None
    for i, x in enumerate([*labels, IGNORE]):
        if x != IGNORE and start is None:
            start = i
        elif x == IGNORE and start is not None:
            out.append((start, i))
            start = None
    return out


@pytest.mark.parametrize("layout", ["chat", "uniner"])
def test_loss_only_on_answers_and_end_of_turn(tok, layout):
    template = get_template(layout, tok)
    enc = Encoder(tok, template, max_length=1024).encode(CONV)
    ids, labels = enc.input_ids, enc.labels
    assert len(ids) == len(labels) and enc.pairs == 3
    assert all(lab in (IGNORE, i) for i, lab in zip(ids, labels, strict=True))
    spans = runs(labels)
    assert len(spans) == 3  # one run per answer; the acknowledgement carries no loss
    eos = tok.eos_token
    lead = (
        " " if layout == "uniner" else ""
    )  # uniner prompts end in "ASSISTANT:", the answer brings the space
    for k, (s, e) in enumerate(spans):
        assert tok.decode(ids[s:e]) == lead + CONV.answers[k] + eos
        assert ids[e - 1] == tok.eos_token_id  # the end-of-turn token is learnt
        # everything before the answer is exactly the prompt inference would send for that question
        asked = Conversation(CONV.text, CONV.questions[: k + 1], [*CONV.answers[:k], None], CONV.dataset)
        assert ids[:s] == encode(tok, template.render(asked))
    if layout == "uniner":
        assert template.eos == eos == "<|im_end|>"  # the tokenizer's eos string, a single token
        assert tok.decode(ids[: spans[0][0]]).endswith("ASSISTANT:")
    else:
        assert tok.decode(ids[: spans[0][0]]).endswith("<|im_start|>assistant\n")
    # tokens outside the runs are all ignored
    inside = {i for s, e in spans for i in range(s, e)}
    assert all(labels[i] == IGNORE for i in range(len(ids)) if i not in inside)
    # the first question is asked the way UniversalNER.prompt asks it
    assert ids[: spans[0][0]] == encode(tok, template.prompt(CONV.text, "person"))


@pytest.mark.parametrize("layout", ["chat", "uniner"])
def test_whole_string_equals_pieces(tok, layout):
    """Tokenising the whole conversation and tokenising the pieces between answer boundaries agree
    on this tokenizer (the fallback for tokenizers without offsets), datasets included."""
    template = get_template(layout, tok)
    shift = Encoder(tok, template).shift
    for conv in (CONV, Conversation("Aspirin , 2 mg .", ["chemical"], ['["Aspirin"]'], "bc5cdr")):
        text, spans = target_spans(template, conv, shift)
        assert label_by_offsets(tok, text, spans) == label_by_pieces(tok, text, spans)
        assert label_by_offsets(tok, text, spans)[0] == encode(tok, text)


@pytest.mark.parametrize("layout", ["chat", "uniner"])
def test_truncation_drops_whole_trailing_pairs(tok, layout):
    template = get_template(layout, tok)
    text, _, ends = render_with_pairs(template, CONV, Encoder(tok, template).shift)
    for k in (1, 2, 3):  # a prefix of the rendering is the rendering of the first k pairs
        assert text[: ends[k - 1]] == template.render(
            Conversation(CONV.text, CONV.questions[:k], CONV.answers[:k])
        )
    full = Encoder(tok, template).encode(CONV)
    two = Encoder(tok, template).encode(Conversation(CONV.text, CONV.questions[:2], CONV.answers[:2]))
    one = Encoder(tok, template).encode(Conversation(CONV.text, CONV.questions[:1], CONV.answers[:1]))
    cut = Encoder(tok, template, max_length=len(full) - 1).encode(CONV)
    assert (cut.pairs, cut.input_ids, cut.labels) == (2, two.input_ids, two.labels)
    cut = Encoder(tok, template, max_length=len(two) - 1).encode(CONV)
    assert (cut.pairs, cut.input_ids) == (1, one.input_ids)
    assert Encoder(tok, template, max_length=len(one) - 1).encode(CONV) is None


def test_collator_pads_ids_and_ignores_padding(tok):
    enc = Encoder(tok, get_template("chat", tok))
    a = enc.encode(CONV)
    b = enc.encode(Conversation("Rome.", ["city"], ['["Rome"]']))
    feats = [{"input_ids": e.input_ids, "labels": e.labels} for e in (a, b)]
    batch = Collator(tok.pad_token_id)(feats)
    n = batch["input_ids"].shape[1]
    assert n % 8 == 0 and n >= len(a)
    assert batch["attention_mask"][1].sum() == len(b)
    assert batch["labels"][1, len(b) :].eq(IGNORE).all()
    assert batch["input_ids"][1, len(b) :].eq(tok.pad_token_id).all()
    assert batch["labels"][0, : len(a)].tolist() == a.labels


def test_tokenized_cache_round_trip_and_key(tok, tmp_path):
    from universalner.tune import cache
    from universalner.tune.train import TuneConfig

    data = tmp_path / "c.json"
    data.write_text("[]")
    cfg = TuneConfig("base", str(tmp_path / "out"), data=[str(data)], max_length=256)
    enc = Encoder(tok, get_template("chat", tok), 256)
    feats = [{"input_ids": e.input_ids, "labels": e.labels} for e in (enc.encode(CONV),) * 2]
    key = cache.fingerprint(cfg, "chat", tok)
    path = tmp_path / cache.CACHE_FILE
    cache.save(path, key, feats, {"truncated": 0, "dropped": 1, "conversations": 3})
    back, stats = cache.load(path, key)
    assert [f["input_ids"].tolist() for f in back] == [f["input_ids"] for f in feats]
    assert [f["labels"].tolist() for f in back] == [f["labels"] for f in feats] and stats["dropped"] == 1
    # anything that changes the tokens changes the key: layout, length, seed, the data file itself
    assert cache.fingerprint(cfg, "uniner", tok) != key
    assert cache.fingerprint(TuneConfig("base", "o", data=[str(data)], max_length=128), "chat", tok) != key
    data.write_text("[ ]")
    assert cache.fingerprint(cfg, "chat", tok) != key and cache.load(path, "other") is None
