"""Constrained decoding on the real test tokenizer: every walk through the allowed tokens is a JSON list
of passage strings that closes in time, the allowed sets are exactly the viable tokens, and the token
bytes spell what the tokenizer decodes."""

from __future__ import annotations

import json
import random

import pytest

from universalner.constraints import (
    DONE,
    MENTION,
    START,
    Branch,
    PassageGrammar,
    TokenIndex,
    hf_token_bytes,
)

TRICKY = 'Dr. O\'Neil said "Zürich\\Basel" is 3.5km away,\nthen left; Ann met Ann-Marie in Zürich.'


@pytest.fixture(scope="module")
def tokenizer(test_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(test_model_dir))


@pytest.fixture(scope="module")
def index(tokenizer) -> TokenIndex:
    return TokenIndex.for_hf_tokenizer(tokenizer, [tokenizer.eos_token_id])


def crossner(shared_data, n=3):
    out = []
    for domain in ("music", "politics", "science"):
        cur, sents = [], []
        for line in (shared_data / "crossner" / domain / "test.txt").read_text().splitlines():
            if not line.strip():
                if cur:
                    sents.append(" ".join(cur))
                    cur = []
                if len(sents) == n:
                    break
            else:
                cur.append(line.split("\t")[0])
        out.extend(sents[:1])
    return out


def walk(grammar: PassageGrammar, rng: random.Random, budget: int) -> tuple[bytes, Branch]:
    br = grammar.branch()
    out = b""
    for step in range(budget):
        ch = br.allowed(budget - step - 1)
        assert ch.ids, "allowed() must never be empty"
        if br.complete:
            assert set(ch.ids) == set(grammar.end_ids)
            tid = rng.choice(ch.ids)
            br.advance(tid)
            assert br.ended
            break
        # prefer opening mentions and long tokens, so walks go deep into the passage
        tid = rng.choice(ch.ids[-8:] if rng.random() < 0.5 else ch.ids)
        br.advance(tid)
        out += grammar.index.pieces[tid]
    return out, br


def test_hf_token_bytes_spell_what_the_tokenizer_decodes(tokenizer, index):
    pieces = hf_token_bytes(tokenizer)
    assert len(pieces) == len(tokenizer)
    assert pieces[tokenizer.eos_token_id] is None  # special tokens never appear inside an answer
    rng = random.Random(0)
    normal = [i for i, p in enumerate(pieces) if p]
    for _ in range(200):
        ids = rng.sample(normal, 6)
        assert b"".join(pieces[i] for i in ids).decode("utf-8", errors="replace") == tokenizer.decode(ids)
    text = 'A "quoted" naïve café, 3.5 km'
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert b"".join(pieces[i] for i in ids) == text.encode()
    assert TokenIndex.for_hf_tokenizer(tokenizer, [tokenizer.eos_token_id]) is index  # built once


def test_the_lazy_trie_holds_every_token_once_at_its_bytes(tokenizer, index):
    """Grown node by node as walks reach it, the trie is the whole vocabulary: every usable token under
    its bytes, nothing else, and a node has children exactly where a longer token starts with it."""
    want: dict[bytes, list[int]] = {}
    for tid, piece in enumerate(index.pieces):
        if piece and tid not in index.end_ids:
            want.setdefault(piece, []).append(tid)
    prefixes = {p[:k] for p in want for k in range(len(p))}
    got: dict[bytes, list[int]] = {}
    fresh = TokenIndex(index.pieces, index.end_ids)  # nothing grown yet
    stack = [(fresh.root, b"")]
    while stack:
        node, path = stack.pop()
        if node[1]:
            got[path] = node[1]
        assert TokenIndex.has_children(node) == (path in prefixes), path
        for b, child in fresh.children(node).items():
            stack.append((child, path + bytes([b])))
    assert got == want


@pytest.mark.parametrize("which", ["crossner", "tricky"])
def test_every_walk_is_a_closed_json_list_of_passage_words(index, shared_data, which):
    passages = crossner(shared_data) if which == "crossner" else [TRICKY]
    rng = random.Random(1)
    for passage in passages:
        grammar = PassageGrammar(index, passage)
        for _ in range(40):
            budget = rng.choice([6, 12, 40])
            out, br = walk(grammar, rng, budget)
            assert br.complete, f"budget {budget}: the list must close in time: {out!r}"
            mentions = json.loads(out.decode("utf-8"))
            assert isinstance(mentions, list) and all(isinstance(m, str) for m in mentions)
            assert len(set(mentions)) == len(mentions), "a mention is never repeated"
            assert mentions == br.mentions
            for m in mentions:
                assert m in passage and m == m.strip()
                assert not any(c in m for c in '"\\\n')
                at = [i for i in range(len(passage)) if passage.startswith(m, i)]
                assert any(  # starts at a word start and ends at a word end somewhere
                    (i == 0 or not (passage[i - 1].isalnum() and m[0].isalnum()))
                    and (
                        i + len(m) == len(passage) or not (m[-1].isalnum() and passage[i + len(m)].isalnum())
                    )
                    for i in at
                ), m


def test_allowed_sets_are_exactly_the_viable_tokens(index):
    """Brute force over the whole vocabulary: a token is allowed iff its bytes keep the answer
    completable (within the budget); checked in states reached by random walks."""
    grammar = PassageGrammar(index, TRICKY)
    rng = random.Random(2)
    pieces = index.pieces
    checked = 0
    for _ in range(6):
        br = grammar.branch()
        for _ in range(rng.randint(0, 8)):
            if br.complete:
                break
            br.advance(rng.choice(br.allowed().ids))
        if br.complete:
            continue
        remaining = rng.choice([None, 2, 5])
        expect = set()
        for tid, piece in enumerate(pieces):
            if not piece or tid in index.end_ids:
                continue
            st = br.state
            for b in piece:
                if b == ord('"') and st[0] == MENTION and grammar.mention(st) in br.used:
                    st = None  # a repeat
                    break
                st = grammar.moves(st).get(b)
                if st is None:
                    break
            if st is not None and (remaining is None or grammar.dist(st) <= remaining):
                expect.add(tid)
        got = set(grammar.choices(br.state, remaining, frozenset(br.used)).ids)
        assert got == expect, (br.state[0], remaining)
        checked += 1
    assert checked >= 3


def test_word_boundaries_quotes_lines_and_the_end_token(tokenizer, index):
    grammar = PassageGrammar(index, TRICKY)
    tid = tokenizer.convert_tokens_to_ids

    def allowed_after(text: str) -> set[int]:
        br = grammar.branch()
        for t in tokenizer(text, add_special_tokens=False)["input_ids"]:
            br.advance(t)
        return set(br.allowed().ids)

    start = set(grammar.branch().allowed().ids)
    assert tid("[") in start and tid("]") not in start and tokenizer.eos_token_id not in start
    opened = allowed_after('["')
    assert tid("Ann") in opened and tid("Z") in opened
    assert tid("nn") not in opened, "a mention starts at a word start"
    assert tid("then") not in allowed_after('["left;'), "no mention crosses ';' then a line break"
    with pytest.raises(ValueError):  # the passage's quote and backslash are never inside a mention
        br = grammar.branch()
        for t in tokenizer('["Zürich\\', add_special_tokens=False)["input_ids"]:
            br.advance(t)
    after_ann = allowed_after('["Ann')
    assert tid('"') in after_ann and tid('",') in after_ann
    assert tid('"]') in allowed_after('["Ann", "Zürich')
    assert tid('"') not in allowed_after('["Ann", "Ann'), "a repeated mention cannot close"
    done = grammar.branch()
    for t in tokenizer("[]", add_special_tokens=False)["input_ids"]:
        done.advance(t)
    assert done.complete and done.state[0] == DONE
    assert set(done.allowed().ids) == {tokenizer.eos_token_id}
    with pytest.raises(ValueError, match="after the closed list"):
        done.advance(tid("]"))
    with pytest.raises(ValueError, match="cannot appear inside an answer"):
        grammar.branch().advance(tokenizer.eos_token_id)
    assert grammar.branch().state[0] == START


def test_a_passage_without_any_mention_only_allows_the_empty_list(index, tokenizer):
    grammar = PassageGrammar(index, " ... ,, ")
    br = grammar.branch()
    out = b""
    while not br.complete:
        t = br.allowed().ids[-1]
        br.advance(t)
        out += index.pieces[t]
    assert json.loads(out) == []
    with pytest.raises(ValueError, match="end-of-answer"):
        TokenIndex([b"a"], [])
