"""The template module: byte-exact UniNER prompts, the chat layout, tolerant parsing."""

import pytest

from universalner.prompts import (
    ChatTemplate,
    Conversation,
    UniNERTemplate,
    format_answer,
    get_template,
    parse_answer,
    resolve_labels,
    teacher_messages,
)

# The released UniNER prompt, verbatim from DESIGN.md.
DESIGN_PROMPT = (
    "A virtual assistant answers questions from a user based on the provided text. USER: Text: {text} "
    "ASSISTANT: I've read this text.</s>USER: What describes {type} in the text? ASSISTANT:"
)


def test_uniner_prompt_is_byte_exact():
    text = "Barack Obama met Emmanuel Macron in Paris."
    got = UniNERTemplate().prompt(text, "person")
    assert got == DESIGN_PROMPT.format(text=text, type="person")


def test_uniner_multi_turn_continues_the_conversation():
    conv = Conversation("X met Y.", ["person", "location"], ['["X", "Y"]', None])
    got = UniNERTemplate().render(conv)
    assert got == (
        "A virtual assistant answers questions from a user based on the provided text. USER: Text: X met Y. "
        "ASSISTANT: I've read this text.</s>USER: What describes person in the text? ASSISTANT: "
        '["X", "Y"]</s>USER: What describes location in the text? ASSISTANT:'
    )


def test_dataset_specific_and_definition_forms():
    t = UniNERTemplate()
    assert "USER: Dataset: conll2003 \n Text: X ASSISTANT:" in t.prompt("X", "person", dataset="conll2003")
    definition = "a human being mentioned by name"
    assert t.prompt("X", definition).endswith(f"What describes {definition} in the text? ASSISTANT:")


def test_training_segments_put_loss_on_answers_only():
    conv = Conversation("X met Y.", ["person", "location"], ['["X"]', "[]"])
    segs = UniNERTemplate().segments(conv)
    assert [s.text for s in segs if s.target] == ['["X"]</s>', "[]</s>"]
    assert "".join(s.text for s in segs).startswith("A virtual assistant")


def test_chat_layout_renders_through_the_tokenizer(test_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(test_model_dir)
    t = get_template("chat", tok)
    assert isinstance(t, ChatTemplate)
    conv = Conversation("X met Y.", ["person"], ['["X"]'])
    full = tok.apply_chat_template(
        [
            {
                "role": "system",
                "content": "A virtual assistant answers questions from a user based on the provided text.",
            }
        ]
        + conv.messages(),
        tokenize=False,
    )
    segs = t.segments(conv)
    assert "".join(s.text for s in segs) == full
    assert [s.text for s in segs if s.target] == ['["X"]' + tok.eos_token]
    assert t.prompt("X met Y.", "person").endswith(
        "What describes person in the text?<|im_end|>\n<|im_start|>assistant\n"
    )
    with pytest.raises(ValueError, match="chat template"):
        ChatTemplate(type("NoTemplate", (), {"chat_template": None})())


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ('["Barack Obama", "Emmanuel Macron"]', ["Barack Obama", "Emmanuel Macron"]),
        ("[]", []),
        ('["Paris"] and some trailing text [1]', ["Paris"]),
        ("Sure! The answer is ['Paris', 'Rome'].", ["Paris", "Rome"]),
        ("['O\\'Brien', \"Jo's\"]", ["O'Brien", "Jo's"]),
        ('["Paris", "Rome", "Lond', ["Paris", "Rome"]),  # cut at the length limit
        ('["a \\"quoted\\" name"]', ['a "quoted" name']),
        ('[["Paris", "location"]]', ["Paris"]),
        ("no list at all", []),
        ("", []),
        ("[unquoted, words]", []),
        ('["Zürich", "東京"]', ["Zürich", "東京"]),
    ],
)
def test_parse_answer_never_raises(output, expected):
    assert parse_answer(output) == expected


def test_parse_answer_of_non_strings():
    assert parse_answer(None) == []  # type: ignore[arg-type]


def test_format_answer_roundtrips():
    mentions = ["Zürich", 'a "b"', "O'Brien"]
    assert parse_answer(format_answer(mentions)) == mentions


def test_resolve_labels():
    assert resolve_labels(["person", "location", "person"]) == [
        ("person", "person"),
        ("location", "location"),
    ]
    assert resolve_labels({"drug": "a medicine"}) == [("drug", "a medicine")]
    with pytest.raises(TypeError):
        resolve_labels("person")
    with pytest.raises(ValueError):
        resolve_labels([])
    with pytest.raises(ValueError):
        resolve_labels(["person", " "])


def test_teacher_prompt_is_the_papers():
    msgs = teacher_messages("Some passage.")
    assert msgs[0] == {"role": "system", "content": "You are a helpful information extraction system."}
    assert msgs[1]["content"] == (
        "Given a passage, your task is to extract all entities and identify their entity types. "
        'The output should be in a list of tuples of the following format: [("entity 1", "type of entity 1"), ... ].'
        "\n\nPassage: Some passage."
    )
    assert teacher_messages("P", "definition")[1]["content"].endswith("\n\nParagraph: P")
    with pytest.raises(ValueError):
        teacher_messages("P", "other")
