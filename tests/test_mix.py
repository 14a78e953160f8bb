"""distill.mix and its parts on the real shared corpora: label maps, phrasing, the held-out check."""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter

import pytest

from universalner.checksums import sha256_file
from universalner.corpora import read_conll, read_reference_json
from universalner.corpora.labels import BUILTIN
from universalner.corpora.pilener import read_definitions, read_typed_examples
from universalner.corpora.supervised import CORPORA, read_split, split_path
from universalner.distill.heldout import HeldOut, check_conversations, held_out_files, normalise
from universalner.distill.mix import MixConfig, main, mix, sample_sentences
from universalner.distill.phrasing import phrasing, plural, variants
from universalner.tune.data import load_examples


@pytest.mark.parametrize("corpus", CORPORA, ids=lambda c: c.name)
def test_every_tag_of_every_corpus_is_asked_in_natural_language(shared_data, corpus):
    root = shared_data / "supervised"
    tags = {t[2:] for s in read_conll(split_path(root, corpus, "dev")) for t in s.tags if t != "O"}
    label_map = BUILTIN[corpus.key]
    assert tags <= set(label_map), f"unmapped tags {tags - set(label_map)}"
    for label in corpus.labels:  # no codes, no underscores: what a user would type
        assert label == label.lower() and "_" not in label and len(label) > 3, label
    sentences = read_split(root, corpus, "dev")
    found = {e.label for s in sentences for e in s.entities}
    assert found and found <= set(corpus.labels)
    assert all(s.text[e.start : e.end] == e.text for s in sentences[:200] for e in s.entities)


def test_wikineural_misc_is_not_asked(shared_data):
    wikineural = next(c for c in CORPORA if c.name == "WikiNeural")
    assert "MISC" in BUILTIN["wikineural"] and "miscellaneous" not in wikineural.labels
    raw = read_conll(split_path(shared_data / "supervised", wikineural, "dev"))[:300]
    relabelled = read_split(shared_data / "supervised", wikineural, "dev")[:300]
    misc = sum(e.label == "MISC" for s in raw for e in s.entities)
    assert misc > 0
    assert sum(len(s.entities) for s in relabelled) == sum(len(s.entities) for s in raw) - misc


def test_pilener_side_files(shared_data):
    examples = read_typed_examples(shared_data / "pilener" / "pilener_391_examples.json")
    assert len(examples) > 1900
    assert {len(e.mentions) > 0 for e in examples} == {True, False}
    assert all(m in e.text for e in examples for m in e.mentions)
    definitions = read_definitions(shared_data / "pilener" / "pilener_391_definitions.json")
    assert len(definitions) == 391 and "individuals" in definitions["person"]


@pytest.mark.parametrize(
    "name, expected",
    [("person", "people"), ("political party", "political parties"), ("city", "cities"), ("day", "days"),
     ("virus", "virus"), ("box", "boxes"), ("programming language", "programming languages")],
)  # fmt: skip
def test_plural(name, expected):
    assert plural(name) == expected


def test_phrasing_shares():
    defs = {"person": "a human being"}
    assert "organisation" in variants("organization") and "Political Party" in variants("political party")
    never = phrasing(defs, 0.0, 0.0)
    assert {never("person", random.Random(i)) for i in range(50)} == {"person"}
    always_def = phrasing(defs, 1.0, 0.0)
    assert always_def("person", random.Random(0)) == "a human being"
    assert always_def("city", random.Random(0)) == "city"  # no definition: its name
    ask = phrasing(defs, 0.2, 0.3)
    rng = random.Random(0)
    got = Counter(ask("person", rng) for _ in range(4000))
    assert abs(got["a human being"] / 4000 - 0.2) < 0.03
    assert abs(sum(v for k, v in got.items() if k in variants("person")) / 4000 - 0.3) < 0.03
    with pytest.raises(ValueError):
        phrasing(defs, 0.7, 0.5)


def test_heldout_finds_a_benchmark_sentence_however_spaced(shared_data):
    bench = shared_data.parent / "benchmarks" / "zero-shot" / "CrossNER_politics.json"
    sentences, _, _ = read_reference_json(bench)
    held = HeldOut.load([bench])
    tokenised = next(s.text for s in sentences if len(normalise(s.text)) > 80 and " , " in s.text)
    natural = tokenised.replace(" , ", ", ").replace(" .", ".")
    assert natural != tokenised
    assert held.found_in(f"Some words before it. {natural} And after.") == [normalise(tokenised)]
    assert held.found_in("A sentence no benchmark holds, about the weather in Ghent.") == []
    assert held.found_in(natural[: len(natural) // 2]) == []  # half a sentence is not the sentence
    convs = [{"id": "a", "conversations": [{"from": "human", "value": "Text: " + natural}]},
             {"id": "b", "conversations": [{"from": "human", "value": "Text: nothing held out here at all"}]}]  # fmt: skip
    assert [cid for cid, _ in check_conversations(held, convs)] == ["a"]


def test_held_out_files_cover_every_evaluation_set(shared_data):
    names = {str(p.relative_to(shared_data.parent)) for p in held_out_files(shared_data.parent)}
    assert {"benchmarks/zero-shot/CrossNER_AI.json", "benchmarks/zero-shot/mit-restaurant.json",
            "data/crossner/politics/train.txt", "data/bc5cdr/test.tsv", "data/ncbi_disease/train.tsv",
            "data/wnut17/emerging.test.annotated"} <= names  # fmt: skip
    assert not any("supervised" in n or "pilener" in n for n in names)


def test_sample_sentences_caps_the_empty_share(shared_data):
    harvey = next(c for c in CORPORA if c.name == "HarveyNER")
    sentences = read_split(shared_data / "supervised", harvey, "train")
    picked = sample_sentences(sentences, 100, 0.2, random.Random(0))
    assert len(picked) == 100 and sum(not s.entities for s in picked) == 20


@pytest.fixture(scope="module")
def small_shared(shared_data, tmp_path_factory):
    """A shared folder with the real Pile-NER files, two real corpora, and one corpus whose training
    file holds a sentence of the politics benchmark (which the mix must drop)."""
    root = tmp_path_factory.mktemp("shared")
    (root / "data" / "supervised").mkdir(parents=True)
    (root / "data" / "pilener").symlink_to(shared_data / "pilener")
    for name in ("WikiANN-en", "HarveyNER"):
        (root / "data" / "supervised" / name).symlink_to(shared_data / "supervised" / name)
    (root / "benchmarks" / "zero-shot").mkdir(parents=True)
    bench = shared_data.parent / "benchmarks" / "zero-shot" / "CrossNER_politics.json"
    shutil.copy(bench, root / "benchmarks" / "zero-shot" / bench.name)
    leaked = next(s for s in read_reference_json(bench)[0] if len(s.text.split()) > 12)
    bt = root / "data" / "supervised" / "broad_twitter_corpus"
    bt.mkdir()
    src = shared_data / "supervised" / "broad_twitter_corpus"
    shutil.copy(src / "dev.txt", bt / "dev.txt")
    blocks = [b for b in (src / "train.txt").read_text(encoding="utf-8").split("\n\n") if "\tB-" in b][:9]
    rows = "".join(f"{tok}\tO\n" for tok in leaked.text.split())
    (bt / "train.txt").write_text("\n\n".join([rows.rstrip("\n"), *blocks]) + "\n", encoding="utf-8")
    return root, leaked.text


@pytest.fixture(scope="module")
def mixed(small_shared, tmp_path_factory):
    root, leaked = small_shared
    out = tmp_path_factory.mktemp("mix")
    cfg = MixConfig(str(root), str(out), examples=20, per_corpus=40, empty_share=0.2, dev_pile=5,
                    dev_per_corpus=4, definition_share=0.2, variant_share=0.2,
                    corpora=["WikiANN-en", "HarveyNER", "broad_twitter_corpus"])  # fmt: skip
    return out, mix(cfg), leaked


def test_mix_drops_what_a_benchmark_holds(mixed):
    out, stats, leaked = mixed
    train = json.loads((out / "train.json").read_text())
    assert stats["held_out"]["found_in_output"] == 0
    assert not any(normalise(leaked) in normalise(c["conversations"][0]["value"]) for c in train)
    # the corpus has 10 sentences, all drawn: the leaked one (its only sentence without a mention) goes
    assert stats["held_out"]["dropped_conversations"]["broad_twitter_corpus"] == 1
    assert stats["train"]["broad_twitter_corpus"]["conversations"] == 9
    assert stats["held_out"]["files"]  # every held-out file, with its sha256
    for f, info in stats["held_out"]["files"].items():
        assert info["sha256"] == sha256_file(f)


def test_mix_sources_counts_and_phrasing(mixed):
    out, stats, _ = mixed
    train = json.loads((out / "train.json").read_text())
    assert stats["sources"]["WikiANN-en"]["train_sha256"] == sha256_file(
        stats["sources"]["WikiANN-en"]["train_file"]
    )
    assert stats["train"]["pilener_examples"]["conversations"] == 20
    assert stats["train"]["WikiANN-en"]["conversations"] == 40
    assert stats["train"]["WikiANN-en"]["questions"] == 120  # every type of the corpus, each sentence
    assert stats["train_total"]["conversations"] == len(train)
    questions = Counter(t["value"] for c in train for t in c["conversations"][2::2])
    asked_by_definition = sum(v for q, v in questions.items() if "refers to" in q or "signifies" in q)
    assert asked_by_definition > 0
    assert any("Location" in q or "place" in q for q in questions)
    # what tune reads, answers copied from their passages
    examples = load_examples([str(out / "train.json")], [], seed=0)
    assert len(examples) == len(train)
    for c in train[:200]:
        text = c["conversations"][0]["value"]
        for answer in c["conversations"][3::2]:
            assert all(m in text for m in json.loads(answer["value"]))


def test_mix_dev_sets_ask_every_type(mixed):
    out, stats, _ = mixed
    assert set(stats["dev"]) == {"pilener", "WikiANN-en", "HarveyNER", "broad_twitter_corpus"}
    sentences, records, unplaced = read_reference_json(out / "dev" / "HarveyNER.json")
    assert len(sentences) == 4 and len(records) == 4 * 4 and not unplaced
    assert {r.label for r in records} == {"point of interest", "area", "road", "river"}
    pile_sentences, pile_records, _ = read_reference_json(out / "dev" / "pilener.json")
    assert len(pile_sentences) == 5 and len(pile_records) > 5 * 12


def test_mix_cli_errors(tmp_path, capsys):
    assert main(["--shared", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    assert "data/pilener" in capsys.readouterr().err
    assert main(["--shared", str(tmp_path), "--output", str(tmp_path / "o"), "--corpora", "nope"]) == 2
    assert "unknown supervised corpus" in capsys.readouterr().err
