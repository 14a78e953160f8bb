"""What ``list_threshold`` decides, exactly, and the list-opening factor of a mention's score.

No model: a small vocabulary and chosen logits, so each decision can be predicted by hand.
"""

from __future__ import annotations

import math

import pytest
import torch

from universalner.confidence import list_probability, mention_scores
from universalner.constraints import PassageGrammar, TokenIndex, choose, list_penalty
from universalner.engines.base import Generation

PIECES = [b"[", b"]", b"[]", b'["', b'"', b"Paris", b'",', b" ", b'"]']
END = len(PIECES)


def _branch(t: float):
    return PassageGrammar(TokenIndex(PIECES, [END]), "Paris").branch(list_penalty(t))


def _decide(branch, probs: dict[bytes, float], pieces: list[bytes] = PIECES) -> bytes:
    """The token greedy takes among the allowed ones, given each allowed piece's probability."""
    ch = branch.allowed(30)
    logits = torch.tensor([math.log(probs.get(pieces[i], 1e-9)) for i in ch.ids])
    return pieces[ch.ids[choose(logits, branch, ch, torch.argmax)]]


@pytest.mark.parametrize("t", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_two_way_choice_opens_exactly_when_p_at_least_t(t):
    """After ``[`` the choice is ``"`` (a first mention) or ``]`` (empty): the list opens exactly when
    the model gives the mention at least t (probabilities over the allowed tokens)."""
    for p in (t - 0.02, t + 0.02, 0.01, 0.99):
        if not 0 < p < 1:
            continue
        br = _branch(t)
        br.advance(PIECES.index(b"["))
        assert sorted(PIECES[i] for i in br.allowed(20).ids) == [b'"', b"]"]
        got = _decide(br, {b'"': p, b"]": 1 - p})
        assert got == (b'"' if p >= t else b"]"), (t, p)


@pytest.mark.parametrize("t", [0.2, 0.5, 0.8])
def test_many_way_choice_compares_the_best_of_each_side(t):
    """With more than two tokens (``[``, ``[]``, ``["`` ...) the rule is the one the docs state: the best
    committing token wins when its probability is at least t/(1-t) times the best non-committing one's
    (not the total probability of a non-empty list)."""
    odds = t / (1 - t)
    for ratio in (odds * 0.9, odds * 1.1):
        best_empty = 0.5
        commit = best_empty * ratio
        probs = {b"[": best_empty, b"[]": 0.4 * best_empty, b'["': commit}
        total = sum(probs.values())
        probs = {k: v / total for k, v in probs.items()}
        got = _decide(_branch(t), probs)
        assert got == (b'["' if ratio >= odds else b"["), (t, ratio)


def test_it_is_not_the_total_probability_of_a_non_empty_list():
    """P(``["``) = 0.45 < t = 0.6, yet the list opens: 0.45 / 0.28 >= 0.6 / 0.4."""
    assert _decide(_branch(0.6), {b"[": 0.28, b"[]": 0.27, b'["': 0.45}) == b'["'


def _gen(text: str, lps: list[float]) -> Generation:
    """A generation whose tokens are the given characters runs, each with its log-probability."""
    cuts = [0]
    for piece in ('["', "Paris", '",', " ", '"', "Rome", '"]'):
        cuts.append(cuts[-1] + len(piece))
    assert text == '["Paris", "Rome"]' and cuts[-1] == len(text)
    return Generation(text, [(a, b, lp) for a, b, lp in zip(cuts[:-1], cuts[1:], lps, strict=True)])


def test_a_mentions_score_is_the_list_opening_times_its_own_tokens():
    lp = [math.log(x) for x in (0.6, 0.9, 0.8, 1.0, 0.7, 0.5, 0.4)]
    gen = _gen('["Paris", "Rome"]', lp)
    opened = 0.6  # the `["` token spells both the bracket and the first quote
    assert list_probability(gen) == pytest.approx(opened)
    scores = mention_scores(gen)
    # Paris: tokens `["`, `Paris`, `",` (its quotes included); Rome: `"`, `Rome`, `"]`
    assert scores["Paris"] == pytest.approx(opened * (0.6 * 0.9 * 0.8) ** (1 / 3))
    assert scores["Rome"] == pytest.approx(opened * (0.7 * 0.5 * 0.4) ** (1 / 3))
    # the opening factor multiplies every mention: a less sure opening lowers both in proportion
    lp2 = [math.log(0.3), *lp[1:]]
    scores2 = mention_scores(_gen('["Paris", "Rome"]', lp2))
    assert scores2["Rome"] / scores["Rome"] == pytest.approx(0.3 / 0.6)


# ---- continue_threshold: another mention, or close the list ---------------------------------------
MORE = [b"[", b"]", b'["', b'"', b"Paris", b" ", b"Rome", b'",', b'"]', b",", b' "']
MORE_END = len(MORE)


def _continuing(c: float, prefix: list[bytes]):
    """A branch on "Paris Rome" with ``continue_threshold`` c, after the pieces of ``prefix``."""
    br = PassageGrammar(TokenIndex(MORE, [MORE_END]), "Paris Rome").branch(0.0, list_penalty(c))
    for piece in prefix:
        br.advance(MORE.index(piece))
    return br


def _pick(branch, probs: dict[bytes, float]) -> bytes:
    return _decide(branch, probs, MORE)


@pytest.mark.parametrize("c", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_after_a_mention_the_list_goes_on_exactly_when_p_at_least_c(c):
    """After ``["Paris"`` the choice is ``,`` (another mention) or ``]`` (close): the list goes on exactly
    when the model gives that at least c, either side of one half."""
    for p in (c - 0.02, c + 0.02, 0.01, 0.99):
        if not 0 < p < 1:
            continue
        br = _continuing(c, [b'["', b"Paris", b'"'])
        assert sorted(MORE[i] for i in br.allowed(30).ids) == [b",", b"]"]
        assert _pick(br, {b",": p, b"]": 1 - p}) == (b"," if p >= c else b"]"), (c, p)


@pytest.mark.parametrize("c", [0.2, 0.8])
def test_inside_a_mention_only_closing_and_going_on_are_weighed(c):
    """Inside ``["Paris`` the tokens are: extend the mention (`` ``), close it (``"``), close it and go
    on (``",``), close it and the list (``"]``). Only the last two are weighed with the threshold; a lone
    quote or an extension that greedy picks stays picked."""
    odds = c / (1 - c)
    for ratio in (odds * 0.9, odds * 1.1):
        probs = {b'"]': 0.5, b'",': 0.5 * ratio, b'"': 0.01, b" ": 0.01}
        got = _pick(_continuing(c, [b'["', b"Paris"]), probs)
        assert got == (b'",' if ratio >= odds else b'"]'), (c, ratio)
    # greedy's extension or lone quote is never moved, whatever c
    assert _pick(_continuing(c, [b'["', b"Paris"]), {b" ": 0.6, b'"]': 0.3, b'",': 0.1}) == b" "
    assert _pick(_continuing(c, [b'["', b"Paris"]), {b'"': 0.6, b'"]': 0.1, b'",': 0.3}) == b'"'


def test_continue_threshold_leaves_the_first_decision_alone():
    """Before any mention the close penalty does nothing: opening the list is list_threshold's."""
    br = _continuing(0.05, [b"["])
    assert _pick(br, {b'"': 0.3, b"]": 0.7}) == b"]"
    assert br.close_positions(br.allowed(30)) == ((), ())
