"""The nine human-annotated training corpora of ``../shared/data/supervised``: which file is which split.

MultiNERD and WikiNeural have no train file there, so their dev files train and their test files
serve as dev (as ``../shared/data/README.md`` allows). Tags are read with each corpus's built-in
label map (``labels.BUILTIN``), so every sentence carries natural-language types (``PER`` -> ``person``);
tags mapped to ``None`` (WikiNeural's ``MISC``) are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from .conll import Sentence, read_conll
from .labels import asked_labels, builtin_key, label_map_for


@dataclass(frozen=True)
class Corpus:
    """One supervised corpus: its folder name, the files that train and choose, and its licence note."""

    name: str
    train: str = "train.txt"
    dev: str = "dev.txt"
    licence: str = ""

    @property
    def key(self) -> str:
        key = builtin_key(self.name)
        if key is None:  # every registered corpus has a map: a missing one is a bug, not user input
            raise KeyError(f"no built-in label map for {self.name}")
        return key

    @property
    def labels(self) -> list[str]:
        """The natural-language types this corpus annotates, all asked of each of its sentences."""
        return asked_labels(label_map_for(self.key))


CORPORA: tuple[Corpus, ...] = (  # licences as docs/data_sources.md found them published, with its URLs
    Corpus("AnatEM", licence="CC BY-SA 3.0"),
    Corpus("FabNER", licence="none stated by the publisher"),
    Corpus("HarveyNER", licence="none stated by the publisher; X/Twitter terms for the tweets"),
    Corpus("TweetNER7", licence="none stated; its author: not for commercial use"),
    Corpus("WikiANN-en", licence="none stated by the publisher; the text is Wikipedia's (CC BY-SA)"),
    Corpus("bc2gm", licence="none stated by the publisher"),
    Corpus("broad_twitter_corpus", licence="CC BY 4.0"),
    Corpus("MultiNERD", train="dev.txt", dev="test.txt", licence="CC BY-NC-SA 4.0"),
    Corpus("WikiNeural", train="dev.txt", dev="test.txt", licence="CC BY-NC-SA 4.0"),
)
BY_NAME = {c.name: c for c in CORPORA}


def corpus(name: str) -> Corpus:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown supervised corpus {name!r}; known: {', '.join(BY_NAME)}") from None


def split_path(root: str | Path, c: Corpus, split: str) -> Path:
    """``root`` is ``.../data/supervised``; ``split`` is ``train`` or ``dev`` (the roles above)."""
    if split not in ("train", "dev"):
        raise ValueError(f"split must be 'train' or 'dev', not {split!r}")
    return Path(root) / c.name / (c.train if split == "train" else c.dev)


def read_split(root: str | Path, c: Corpus, split: str) -> list[Sentence]:
    """The split's sentences, their mentions relabelled to natural-language types (unmapped tags dropped)."""
    label_map = label_map_for(c.key)
    out = []
    for s in read_conll(split_path(root, c, split)):
        ents = []
        for e in s.entities:
            if e.label not in label_map:
                raise ValueError(f"{s.source}: tag {e.label!r} is not in the {c.name} label map")
            if label_map[e.label]:
                ents.append(replace(e, label=label_map[e.label]))
        out.append(Sentence(s.text, ents, s.tokens, s.tags, s.source))
    return out
