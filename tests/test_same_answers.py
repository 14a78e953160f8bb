"""The same question gets the same answer: whatever the engine answered before, and whatever other
threads ask at the same time, on every CPU path of the transformers engine (float32, bf16, int8).

Equality here is exact (the answer's text and every score, to the last bit): bf16 and int8 round
differently when the shapes of the products change, so any state carried from one call to the next
(a draft learnt from earlier answers, a cache another thread overwrote) shows up as a changed score.
"""

from __future__ import annotations

import threading

import pytest
import torch

from universalner import UniversalNER

TEXT = "Barack Obama met Emmanuel Macron in Paris on Tuesday."
TEXT2 = "Apple hired Tim Cook in California."
TEXT3 = "Angela Merkel flew from Berlin to Rome with Siemens executives."
TEXT4 = "The Louvre in Paris lent a painting to the Prado in Madrid."
LABELS = ["person", "city"]


@pytest.fixture(scope="module")
def engines(ner, test_model_dir):
    """The three CPU paths on the test model: float32 (the session's), bf16 and int8."""
    from universalner.engines.hf import HFEngine

    made = {"float32": ner.engine}
    for name, kw in (("bfloat16", {"dtype": "bfloat16"}), ("int8", {"quantization": "int8"})):
        made[name] = HFEngine.load(test_model_dir, device="cpu", **kw)
    assert made["bfloat16"].model.dtype == torch.bfloat16
    assert any(type(m).__name__ == "Int8Linear" for m in made["int8"].model.modules())
    return made


def _answers(model: UniversalNER, texts: list[str], labels: list[str]):
    """Raw answers and (mention, label, offsets, exact score) of each text, one call."""
    return [
        (p.raw, [(e.text, e.label, e.start, e.end, e.score) for e in p.entities])
        for p in model.predict(texts, labels, batch_size=len(texts))
    ]


PATHS = ("float32", "bfloat16", "int8")


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS)
def test_the_same_call_answers_the_same_whatever_ran_before(engines, path):
    """Before the fix the fast path learnt the usual first tokens of earlier answers and fed them as a
    draft from the third call on: the product shapes changed and bf16/int8 scores with them."""
    model = UniversalNER(engines[path], max_new_tokens=8)
    labels = ["city"] if path == "int8" else LABELS  # int8 is slow on CPUs without VNNI: fewer questions
    first = _answers(model, [TEXT2, TEXT], labels)  # a fresh engine: nothing ran before on bf16/int8
    assert any(ents for _, ents in first), first  # mentions with scores, so the scores are compared
    assert _answers(model, [TEXT2, TEXT], labels) == first


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS)
def test_threads_sharing_one_model_get_the_sequential_answers(engines, path):
    """N threads, each its own texts and types, on one model at once: each gets exactly what it gets
    alone (int8's quantised input and the token trie were shared state before)."""
    model = UniversalNER(engines[path], max_new_tokens=8)
    jobs = [([TEXT], ["city"]), ([TEXT2, TEXT4], ["city"]), ([TEXT3], ["person", "city"])]
    if path == "int8":  # slow on CPUs without VNNI: two threads, one question each
        jobs = [([TEXT], ["city"]), ([TEXT2], ["person"])]
    want = [_answers(model, texts, labels) for texts, labels in jobs]
    got: list = [None] * len(jobs)
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def work(k: int) -> None:
        try:
            start.wait()
            got[k] = _answers(model, *jobs[k])
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for k, w in enumerate(want):
        assert got[k] == w, jobs[k]


def test_a_threads_quantised_input_is_its_own():
    """int8 siblings share the quantised input within a thread; another thread's call never replaces
    it (before: one shared slot, so a thread could read the other's input between check and use)."""
    from universalner.weights.int8 import quantize_linears

    block = torch.nn.Module()
    block.q, block.k = torch.nn.Linear(16, 8), torch.nn.Linear(16, 4)
    quantize_linears(block)
    x1, x2 = torch.randn(3, 16), torch.randn(5, 16)
    block.q(x1)
    other = threading.Thread(target=block.k, args=(x2,))
    other.start()
    other.join()
    assert block.k.shared.x is x1  # this thread's slot still holds this thread's input
    assert block.k.shared.q.shape == (3, 16)


def test_the_token_trie_publishes_a_node_only_when_its_children_are_all_there():
    """A walk in another thread reads ``node[0]``: it must be None (build your own) or complete, never
    an empty dict being filled (before: published first, so a concurrent walk lost allowed tokens)."""
    from universalner.constraints import TokenIndex

    pieces = [b"a", b"ab", b"abc", b"b", b"ba", b"c", b"cd", b"d"]
    index = TokenIndex(pieces, [len(pieces)])
    seen: list = []

    class Watched(list):  # reads of the sorted keys while a node's children are being found
        def __getitem__(self, i):
            seen.append(index.root[0] if index.root[0] is None else dict(index.root[0]))
            return super().__getitem__(i)

    index._keys = Watched(index._keys)
    kids = index.children(index.root)
    assert sorted(kids) == [ord(c) for c in "abcd"]
    assert seen and all(s is None for s in seen), seen
