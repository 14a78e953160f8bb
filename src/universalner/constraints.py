"""Constrained decoding: answers that are JSON lists of strings copied verbatim from the passage.

Engine-independent (transformers, llama.cpp, ...): it works on the bytes of the tokenizer's tokens
and the bytes of the passage, and tells the engine which token ids may come next.

Use::

    index = TokenIndex.for_hf_tokenizer(tok)      # once per tokenizer (cached); any engine:
                                                  # TokenIndex(pieces, end_ids), pieces[i] = bytes of token i
    grammar = PassageGrammar(index, passage)      # once per passage, shared by its questions
    branch = grammar.branch()                     # one per question
    while not branch.complete:
        choices = branch.allowed(remaining)       # Choices: .ids (list[int]); remaining = tokens left after this one
        tok = <greedy among choices.ids>
        branch.advance(tok)
    # the list is closed; the only token left is an end id (grammar.end_ids), which the engine may skip

The language, byte for byte: an optional single space, ``[``, then ``]`` or ``"m"`` (``, "m"``)* ``]``,
then an end token: ``json.dumps`` layout, which is what ``prompts.format_answer`` teaches a student.
Each mention ``m`` is a substring of the passage that starts at a word start (a letter, digit or one of
``$€£¥#@(+-~'`` after a non-word character) and ends at a word end (not inside a word, not on
whitespace or ``,;:``), holds no ``"``, ``\\`` or control character (so it is valid JSON without
escapes and never crosses a line break), is at most ``max_mention_bytes`` long, and is not a repeat of
a mention already in the list (where another way on exists; repeats are how greedy decoding loops).

Why bytes: byte-level BPE tokens may hold part of a UTF-8 character, so matching works on bytes and the
passage's word boundaries are mapped onto byte offsets.

Cost: ``TokenIndex`` sorts the vocabulary's bytes once (tens of milliseconds for 50k tokens) and
grows a byte trie over them as walks reach its nodes. A state's allowed set is found by walking the
trie along the bytes the grammar allows next (inside a mention: the few passage bytes that continue
it), and is cached per passage and state, so most steps are a dictionary look-up.

Budget: given ``remaining`` (tokens that may still follow), ``allowed`` keeps only tokens after which
the list can still be closed in time, counting one token per byte (a safe bound when single-byte
tokens exist, as in byte-level BPE and byte-fallback SentencePiece). An answer never ends cut off.
"""

from __future__ import annotations

import bisect
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

# ---- grammar states: (kind, ends, n) -----------------------------------------------------------
START, START_SPACE, OPEN, MENTION0, MENTION, AFTER, COMMA, SPACE, DONE = range(9)
State = tuple[int, tuple[int, ...], int]
_INF = 1 << 30
QUOTE, BACKSLASH, LBRACKET, RBRACKET, COMMA_B, SPACE_B = (ord(c) for c in '"\\[], ')
START_SYMBOLS = "$€£¥#@(+-~'"
END_FORBIDDEN = ",;:"


def _forbidden(b: int) -> bool:
    """Bytes a mention may not hold: they would need JSON escapes (or break the line)."""
    return b == QUOTE or b == BACKSLASH or b < 0x20 or b == 0x7F


# ---- the vocabulary ----------------------------------------------------------------------------
class TokenIndex:
    """Every usable token's bytes in a byte trie, plus the ids that end an answer.

    ``pieces[i]`` is the bytes token ``i`` stands for, or None for tokens that must never be generated
    inside an answer (special and control tokens). ``end_ids`` are the tokens that end the answer.

    The trie is built lazily over the pieces sorted as bytes: a node is a range of that order, and its
    children are found (by bisection) the first time a walk reaches it. A passage's answers visit a
    few thousand nodes of a 50k-token vocabulary's ~100k, so building the whole trie up front (0.6 s
    on a CPU core, paid before every process's first answer) bought nothing.
    """

    def __init__(self, pieces: Sequence[bytes | None], end_ids: Iterable[int]):
        self.pieces = list(pieces)
        self.end_ids = sorted({int(i) for i in end_ids})
        if not self.end_ids:
            raise ValueError("constrained decoding needs at least one end-of-answer token id")
        ends = set(self.end_ids)
        order = sorted(
            (tid for tid, piece in enumerate(self.pieces) if piece and tid not in ends),
            key=self.pieces.__getitem__,
        )  # stable: equal pieces keep their id order
        self._keys: list[bytes] = [self.pieces[t] for t in order]  # type: ignore[misc]
        self._ids = order
        # node = [children: dict[byte, node] | None until looked up, ids: list[int], lo, hi, depth]
        self.root: list[Any] = [None, [], 0, len(order), 0]

    def children(self, node: list[Any]) -> dict[int, list[Any]]:
        """A node's children by next byte (found once, then kept)."""
        kids = node[0]
        if kids is not None:
            return kids
        # filled first, published last: a thread walking the same node meanwhile finds None and builds
        # its own equal dict, never a half-filled one that would lose allowed tokens
        kids = {}
        keys, depth, hi = self._keys, node[4], node[3]
        start = node[2] + len(node[1])  # past the pieces that end here
        while start < hi:
            b = keys[start][depth]
            end = bisect.bisect_left(keys, keys[start][:depth] + bytes([b + 1]), start, hi) if b < 255 else hi
            n = start
            while n < end and len(keys[n]) == depth + 1:
                n += 1
            kids[b] = [None, self._ids[start:n], start, end, depth + 1]
            start = end
        node[0] = kids
        return kids

    @staticmethod
    def has_children(node: list[Any]) -> bool:
        return node[3] > node[2] + len(node[1])

    _cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    @classmethod
    def for_hf_tokenizer(cls, tokenizer: Any, end_ids: Iterable[int] | None = None) -> TokenIndex:
        """The index of a transformers tokenizer, built once per tokenizer object and cached."""
        ends = tuple(sorted(set(end_ids))) if end_ids is not None else (tokenizer.eos_token_id,)
        try:
            per_tok = cls._cache.setdefault(tokenizer, {})
        except TypeError:  # not weak-referenceable: build every time
            per_tok = {}
        if ends not in per_tok:
            per_tok[ends] = cls(hf_token_bytes(tokenizer), ends)
        return per_tok[ends]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte <-> printable character table (byte-level BPE vocabularies are spelled in it)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def hf_token_bytes(tokenizer: Any) -> list[bytes | None]:
    """The bytes of every token of a transformers tokenizer (None for special/added control tokens).

    Handles byte-level BPE (GPT-2, LLaMA-3, SmolLM: ``Ġ`` for space, one character per byte),
    SentencePiece (``▁`` for space, ``<0xAB>`` byte-fallback tokens) and plain-text vocabularies.
    """
    n = len(tokenizer)
    toks = tokenizer.convert_ids_to_tokens(list(range(n)))
    special: set[int] = set(getattr(tokenizer, "all_special_ids", []) or [])
    added: dict[int, Any] = dict(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    for tid, tok in added.items():
        if getattr(tok, "special", True):
            special.add(int(tid))
    decoder = {c: b for b, c in _bytes_to_unicode().items()}
    regular = [t for i, t in enumerate(toks) if t and i not in special and i not in added]
    byte_level = sum(("Ġ" in t or "Ċ" in t) for t in regular) > 0.01 * max(1, len(regular)) and all(
        all(c in decoder for c in t) for t in regular[:2000]
    )
    sentencepiece = not byte_level and sum("▁" in t for t in regular) > 0.01 * max(1, len(regular))
    out: list[bytes | None] = []
    for i, t in enumerate(toks):
        if t is None or i in special:
            out.append(None)
        elif i in added:
            out.append(str(getattr(added[i], "content", t)).encode("utf-8"))
        elif byte_level:
            try:
                out.append(bytes(decoder[c] for c in t))
            except KeyError:
                out.append(t.encode("utf-8"))
        elif sentencepiece:
            if len(t) == 6 and t.startswith("<0x") and t.endswith(">"):
                out.append(bytes([int(t[3:5], 16)]))
            else:
                out.append(t.replace("▁", " ").encode("utf-8"))
        else:
            out.append(t.encode("utf-8"))
    return out


# ---- one passage ---------------------------------------------------------------------------------
@dataclass
class Choices:
    """The tokens allowed in one state: ``ids[i]`` leads to ``states[i]``.

    ``memo`` is free for the engine, e.g. to keep the ids as a device tensor across steps.
    """

    ids: list[int]
    states: list[State]
    max_dist: int = 0
    #: position in ``ids`` -> the mention that token closes (to refuse repeats), and the set of them
    closes: dict[int, bytes] = field(default_factory=dict)
    memo: dict[str, Any] = field(default_factory=dict)

    @property
    def closing(self) -> set[bytes]:
        got = self.memo.get("_closing")
        if got is None:
            got = self.memo["_closing"] = set(self.closes.values())
        return got


class PassageGrammar:
    """The answer language for one passage; caches the allowed tokens of every state it meets."""

    def __init__(self, index: TokenIndex, passage: str, max_mention_bytes: int = 160):
        self.index = index
        self.end_ids = index.end_ids
        self.max_mention = int(max_mention_bytes)
        self.text = passage.encode("utf-8")
        n = len(self.text)
        starts_ok = bytearray(n + 1)
        ends_ok = bytearray(n + 1)
        pos = 0
        for ci, ch in enumerate(passage):
            prev = passage[ci - 1] if ci else ""
            if (ch.isalnum() or ch in START_SYMBOLS) and not (prev.isalnum() and ch.isalnum()):
                starts_ok[pos] = 1
            pos += len(ch.encode("utf-8"))
            nxt = passage[ci + 1] if ci + 1 < len(passage) else ""
            if not ch.isspace() and ch not in END_FORBIDDEN and not (ch.isalnum() and nxt.isalnum()):
                ends_ok[pos] = 1
        for p in range(n):  # a mention cannot start on a byte it may not hold
            if _forbidden(self.text[p]):
                starts_ok[p] = 0
        self.ends_ok = ends_ok
        # next_end[e]: the first e' >= e where a mention at e can close, over allowed bytes only
        nxt_end = [_INF] * (n + 1)
        nxt_end[n] = n if ends_ok[n] else _INF
        for e in range(n - 1, -1, -1):
            if ends_ok[e]:
                nxt_end[e] = e
            elif not _forbidden(self.text[e]):
                nxt_end[e] = nxt_end[e + 1]
        self.next_end = nxt_end
        self.starts = tuple(p for p in range(n) if starts_ok[p])
        m0 = [nxt_end[p + 1] - p for p in self.starts if nxt_end[p + 1] < _INF]
        m0 = [g for g in m0 if g <= self.max_mention]
        self._m0_dist = (min(m0) + 2) if m0 else _INF
        self._moves: dict[State, dict[int, State]] = {}
        self._choices: dict[tuple, Choices] = {}
        self.end_choices = Choices(list(self.end_ids), [(DONE, (), 0)] * len(self.end_ids), 0)

    # -- the byte automaton
    def dist(self, st: State) -> int:
        """Bytes (an upper bound on tokens) needed from ``st`` to a closed list; _INF if impossible."""
        kind = st[0]
        if kind == DONE:
            return 0
        if kind in (OPEN, AFTER):
            return 1
        if kind in (START, START_SPACE):
            return 2
        if kind == MENTION0:
            return self._m0_dist
        if kind == SPACE:
            return 1 + self._m0_dist
        if kind == COMMA:
            return 2 + self._m0_dist
        best = _INF
        room = self.max_mention - st[2]
        for e in st[1]:
            g = self.next_end[e] - e
            if g <= room and g < best:
                best = g
        return best + 2 if best < _INF else _INF

    def moves(self, st: State) -> dict[int, State]:
        """byte -> next state, for every byte that keeps the answer completable."""
        got = self._moves.get(st)
        if got is not None:
            return got
        kind, ends, n = st
        out: dict[int, State] = {}
        if kind == START:
            out[SPACE_B] = (START_SPACE, (), 0)
            out[LBRACKET] = (OPEN, (), 0)
        elif kind == START_SPACE:
            out[LBRACKET] = (OPEN, (), 0)
        elif kind == OPEN:
            out[QUOTE] = (MENTION0, (), 0)
            out[RBRACKET] = (DONE, (), 0)
        elif kind == AFTER:
            out[COMMA_B] = (COMMA, (), 0)
            out[RBRACKET] = (DONE, (), 0)
        elif kind == COMMA:
            out[SPACE_B] = (SPACE, (), 0)
        elif kind == SPACE:
            out[QUOTE] = (MENTION0, (), 0)
        elif kind in (MENTION0, MENTION):
            cands = self.starts if kind == MENTION0 else ends
            if n < self.max_mention:
                by_byte: dict[int, list[int]] = {}
                for e in cands:
                    if e < len(self.text) and not _forbidden(self.text[e]):
                        by_byte.setdefault(self.text[e], []).append(e + 1)
                for b, nxt in by_byte.items():
                    out[b] = (MENTION, tuple(nxt), n + 1)
            if kind == MENTION and any(self.ends_ok[e] for e in ends):
                out[QUOTE] = (AFTER, (), 0)
        out = {b: s for b, s in out.items() if self.dist(s) < _INF}
        self._moves[st] = out
        return out

    def mention(self, st: State) -> bytes:
        """The bytes of the mention being written in a MENTION state."""
        e = st[1][0]
        return self.text[e - st[2] : e]

    # -- tokens
    def choices(
        self, st: State, remaining: int | None = None, refused: frozenset[bytes] = frozenset()
    ) -> Choices:
        """Tokens allowed in ``st``: none that closes a mention in ``refused`` (repeats), and with
        ``remaining``, only those after which the list can still close within that many tokens."""
        if st[0] == DONE:
            return self.end_choices
        ch = self._choices.get((st,))
        if ch is None:
            ch = self._choices[(st,)] = self._walk(st)
        refused = frozenset(m for m in refused if m in ch.closing) if refused else refused
        if refused or (remaining is not None and remaining < ch.max_dist):
            rem = remaining if remaining is not None and remaining < ch.max_dist else None
            key = (st, rem, refused)
            fch = self._choices.get(key)
            if fch is None:
                keep = [
                    i
                    for i, s in enumerate(ch.states)
                    if (rem is None or self.dist(s) <= rem) and ch.closes.get(i) not in refused
                ]
                fch = Choices([ch.ids[i] for i in keep], [ch.states[i] for i in keep])
                fch.closes = {j: ch.closes[i] for j, i in enumerate(keep) if i in ch.closes}
                fch.max_dist = max((self.dist(s) for s in fch.states), default=0)
                self._choices[key] = fch
            ch = fch
        return ch

    def _walk(self, st: State) -> Choices:
        found: dict[int, tuple[State, bytes | None]] = {}
        index = self.index
        stack: list[tuple[Any, State, bytes | None]] = [(index.root, st, None)]
        while stack:
            node, cur, closed = stack.pop()
            children = index.children(node)
            for b, nxt in self.moves(cur).items():
                child = children.get(b)
                if child is None:
                    continue
                now = self.mention(cur) if b == QUOTE and cur[0] == MENTION else closed
                for tid in child[1]:
                    found[tid] = (nxt, now)
                if index.has_children(child):
                    stack.append((child, nxt, now))
        ids = sorted(found)
        states = [found[i][0] for i in ids]
        closes = {j: found[i][1] for j, i in enumerate(ids) if found[i][1] is not None}
        return Choices(ids, states, max((self.dist(s) for s in states), default=0), closes)

    def branch(self, empty_penalty: float = 0.0, close_penalty: float = 0.0) -> Branch:
        """A new answer to this passage (``Penalties`` unpack into the two penalties)."""
        return Branch(self, empty_penalty, close_penalty)


class Penalties(NamedTuple):
    """Logit shifts that move greedy's two list decisions, both 0.0 for plain greedy.

    ``empty``: ``list_penalty(list_threshold)``, taken off the tokens that leave the list empty;
    ``close``: ``list_penalty(continue_threshold)``, taken off the tokens that close a list after a
    mention when greedy weighs them against another mention."""

    empty: float = 0.0
    close: float = 0.0


NO_PENALTIES = Penalties()  # plain greedy


def list_penalty(list_threshold: float) -> float:
    """The logit penalty on empty-list tokens that makes greedy open a list at ``list_threshold``.

    Subtracted from the tokens that do not commit to a first mention, at each step before one does:
    the best committing token then wins when its probability is at least ``t / (1 - t)`` times the
    best non-committing one's; between two tokens (``"`` or ``]`` after ``[``) that is exactly
    "the list opens when the model gives it at least ``t``". Not the total probability of a
    non-empty list (docs/inference.md). The same formula turns ``continue_threshold`` into
    ``Penalties.close`` (see ``choose``).
    """
    import math

    if not 0.0 < list_threshold < 1.0:
        raise ValueError(f"list_threshold must be between 0 and 1 (exclusive), not {list_threshold!r}")
    return math.log((1.0 - list_threshold) / list_threshold)


def choose(logits: Any, branch: Branch, choices: Choices, argmax: Any) -> int:
    """Index into ``choices.ids`` that greedy takes, with the branch's penalties applied.

    ``logits`` are those of ``choices.ids`` (a torch or numpy vector); ``argmax`` the library's.
    Before a first mention, the empty-list penalty is subtracted from the non-committing tokens.
    After a mention (or while closing one), when greedy's pick closes the list or starts another
    mention, the two best such tokens are weighed with the close penalty subtracted from the closing
    one: another mention wins when its probability is at least ``c / (1 - c)`` times the closing
    token's (``c``: ``continue_threshold``). Tokens that extend the current mention are never moved.
    The penalties only move the decision: the engine reports log-probabilities of the unpenalised
    logits, so scores still say what the model thought.
    """
    empties = branch.empty_positions(choices) if branch.empty_penalty else ()
    if empties:
        biased = logits.copy() if hasattr(logits, "copy") and not hasattr(logits, "clone") else logits.clone()
        for j in empties:
            biased[j] -= branch.empty_penalty
        return int(argmax(biased))
    j = int(argmax(logits))
    if not branch.close_penalty:
        return j
    closing, going_on = branch.close_positions(choices)
    if not closing or not going_on or (j not in closing and j not in going_on):
        return j
    best_close = max(closing, key=lambda k: float(logits[k]))
    best_more = max(going_on, key=lambda k: float(logits[k]))
    return (
        best_more
        if float(logits[best_more]) > float(logits[best_close]) - branch.close_penalty
        else best_close
    )


class Branch:
    """One answer being written: its state, the mentions it has closed, and the next allowed tokens.

    ``empty_penalty`` and ``close_penalty`` (see ``Penalties``) move greedy's decisions to open and to
    continue the list; engines apply them through ``choose``.
    """

    def __init__(self, grammar: PassageGrammar, empty_penalty: float = 0.0, close_penalty: float = 0.0):
        self.grammar = grammar
        self.empty_penalty = float(empty_penalty)
        self.close_penalty = float(close_penalty)
        self.state: State = (START, (), 0)
        self.used: set[bytes] = set()
        self.mentions: list[str] = []
        self.ended = False  # an end token was taken

    @property
    def complete(self) -> bool:
        """The list is closed: only an end token may follow."""
        return self.state[0] == DONE

    def empty_positions(self, choices: Choices) -> tuple[int, ...]:
        """Positions in ``choices.ids`` that do not commit the answer to a first mention.

        Before the list opens these are ``[]`` and a bare ``[`` or space (a tokenizer that spells
        ``[]`` as ``[`` ``]`` teaches the model that a bare ``[`` means empty); after ``[`` it is ``]``.
        """
        if self.state[0] not in (START, START_SPACE, OPEN):
            return ()
        got = choices.memo.get("_empties")
        if got is None:
            waiting = (START_SPACE, OPEN, DONE)
            got = choices.memo["_empties"] = tuple(j for j, s in enumerate(choices.states) if s[0] in waiting)
        return got

    def close_positions(self, choices: Choices) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Positions in ``choices.ids`` that close the list after a mention, and those that go on to
        another one (a comma, or a token that closes the mention and starts the next); ``((), ())``
        before any mention has begun. A lone closing quote is neither: the choice comes a step later.
        """
        if self.state[0] not in (MENTION, AFTER):
            return (), ()
        got = choices.memo.get("_closes")
        if got is None:
            closing = tuple(j for j, s in enumerate(choices.states) if s[0] == DONE)
            more = tuple(
                j
                for j, s in enumerate(choices.states)
                if s[0] in (COMMA, SPACE, MENTION0) or (s[0] == MENTION and j in choices.closes)
            )
            got = choices.memo["_closes"] = (closing, more)
        return got

    def allowed(self, remaining: int | None = None) -> Choices:
        """Tokens that may come next (never empty: falls back to closing rules, then to the end ids)."""
        g = self.grammar
        refused = frozenset(self.used)
        for rem, ref in ((remaining, refused), (remaining, frozenset()), (None, frozenset())):
            ch = g.choices(self.state, rem, ref)
            if ch.ids:
                return ch
        return g.end_choices

    def advance(self, token_id: int) -> None:
        """Take a token (any token: one outside ``allowed`` raises ValueError)."""
        g = self.grammar
        if self.state[0] == DONE:
            if token_id not in g.end_ids:
                raise ValueError(
                    f"token {token_id} after the closed list; only end ids {g.end_ids} may follow"
                )
            self.ended = True
            return
        piece = g.index.pieces[token_id] if 0 <= token_id < len(g.index.pieces) else None
        if not piece or token_id in g.end_ids:
            raise ValueError(f"token {token_id} cannot appear inside an answer (state {self.state[0]})")
        st = self.state
        for b in piece:
            nxt = g.moves(st).get(b)
            if nxt is None:
                raise ValueError(f"token {token_id} ({piece!r}) breaks the answer language")
            if st[0] == MENTION and b == QUOTE:
                m = g.mention(st)
                self.used.add(m)
                self.mentions.append(m.decode("utf-8", errors="replace"))
            st = nxt
        self.state = st


# --- the same language as a GBNF grammar, for servers that take one (llama.cpp's server, vLLM) ---
def _forbidden_char(ch: str) -> bool:
    """A character no mention may hold (the text form of ``_forbidden``)."""
    return ch in '"\\' or ord(ch) < 0x20 or ord(ch) == 0x7F


def passage_grammar(passage: str) -> str:
    """A GBNF grammar for ``["m1", "m2"]`` where each mention is copied from ``passage``.

    The language of ``universalner.constraints`` (mentions start at a word start, end at a word end,
    hold no quote, backslash or control character), less its length cap and repeat rule. Linear in
    the passage: one rule per character, ``c{i} ::= <char i> c{i+1} | <char i>``, plus one rule per
    distinct first character, so a server's grammar engine keeps few parse stacks alive.
    """
    n = len(passage)
    ends_after = [False] * n  # a mention may end with character i
    for i, ch in enumerate(passage):
        nxt = passage[i + 1] if i + 1 < n else ""
        ends_after[i] = not ch.isspace() and ch not in END_FORBIDDEN and not (ch.isalnum() and nxt.isalnum())
    # reach[i]: a mention running through character i can still end somewhere
    reach = [False] * (n + 1)
    for i in range(n - 1, -1, -1):
        reach[i] = not _forbidden_char(passage[i]) and (ends_after[i] or reach[i + 1])
    starts: dict[str, list[int]] = {}
    for i, ch in enumerate(passage):
        prev = passage[i - 1] if i else ""
        if (ch.isalnum() or ch in START_SYMBOLS) and not (prev.isalnum() and ch.isalnum()) and reach[i]:
            starts.setdefault(ch, []).append(i)
    if not starts:
        return 'root ::= " "? "[" "]"\n'
    lines = [
        'root ::= " "? "[" ( mention ( ", " mention )* )? "]"',
        'mention ::= "\\"" first "\\""',
        "first ::= " + " | ".join(f"f{k}" for k in range(len(starts))),
    ]
    needed = [False] * (n + 1)  # c{i} is referenced by some rule
    for k, (ch, where) in enumerate(sorted(starts.items())):
        alts = []
        for i in where:
            if i + 1 < n and reach[i + 1]:
                alts.append(f"c{i + 1}")
                needed[i + 1] = True
        if any(ends_after[i] for i in where):
            alts.append('""')
        lines.append(f"f{k} ::= {_lit(ch)} ( {' | '.join(alts)} )")
    for i in range(n):
        if not needed[i]:
            continue
        alts = []
        if i + 1 < n and reach[i + 1]:
            alts.append(f"{_lit(passage[i])} c{i + 1}")
            needed[i + 1] = True
        if ends_after[i]:
            alts.append(_lit(passage[i]))
        lines.append(f"c{i} ::= " + " | ".join(alts))
    return "\n".join(lines) + "\n"


def _lit(ch: str) -> str:
    """A GBNF string literal for one character (never a quote or backslash: those are not in mentions)."""
    return '"' + ch + '"'
