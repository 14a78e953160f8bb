"""The tokenised training set, kept in the output folder so a resumed run does not tokenise again.

Rendering chat templates costs about 10 ms per conversation on a CPU core (minutes for Pile-NER's
45,889), and every process of a multi-GPU run would pay it. The cache is one ``.npz`` file keyed by
everything that decides its content: the data files (path, size, modification time), the supervised
sets and label map, seed, maximum length, layout and the tokenizer.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

CACHE_FILE = "tokenized.npz"
_FORMAT = 1


def _file_stamp(path: str | os.PathLike | None) -> Any:
    if path is None:
        return None
    p = Path(path).resolve()
    try:
        st = p.stat()
    except OSError:
        return [str(p), None]
    return [str(p), st.st_size, st.st_mtime_ns]


def fingerprint(cfg: Any, layout: str, tokenizer: Any) -> str:
    """A key for the tokenised data of ``cfg`` (a TuneConfig) with this layout and tokenizer."""
    from .. import __version__
    from ..tokens import special_prefix, with_prefix

    # the text's ids as the collator makes them: a BOS-adding tokenizer gets another key (the ids of
    # a tokenizer that adds nothing, and so the key, are what they were before BOS was handled)
    probe = with_prefix(
        special_prefix(tokenizer), tokenizer("Text: Zürich <|x|> 12 ", add_special_tokens=False)["input_ids"]
    )
    parts = {
        "format": _FORMAT,
        "version": __version__,
        "data": [_file_stamp(p) for p in cfg.data],
        "supervised": [[name, _file_stamp(p)] for name, p in cfg.supervised],
        "labels_map": _file_stamp(cfg.labels_map),
        "seed": cfg.seed,
        "max_length": cfg.max_length,
        "layout": layout,
        "tokenizer": [
            getattr(tokenizer, "name_or_path", ""),
            len(tokenizer),
            tokenizer.eos_token,
            getattr(tokenizer, "chat_template", None),
            list(probe),
        ],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def save(path: Path, key: str, feats: list[dict[str, np.ndarray]], stats: dict[str, int]) -> None:
    """Write atomically: a run killed while writing leaves the old file or none, never half of one."""
    lengths = np.array([len(f["input_ids"]) for f in feats], dtype=np.int64)
    ids = np.concatenate([f["input_ids"] for f in feats]).astype(np.int32)
    labels = np.concatenate([f["labels"] for f in feats]).astype(np.int32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(
            f, key=np.array(key), lengths=lengths, ids=ids, labels=labels, stats=np.array(json.dumps(stats))
        )
    tmp.replace(path)


def load(path: Path, key: str) -> tuple[list[dict[str, np.ndarray]], dict[str, int]] | None:
    """The cached features if the file exists and was made with ``key``; else None."""
    try:
        with np.load(path) as z:
            if str(z["key"]) != key:
                return None
            lengths, ids, labels = z["lengths"], z["ids"], z["labels"]
            stats = json.loads(str(z["stats"]))
    except (OSError, KeyError, ValueError):
        return None
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    feats = [
        {"input_ids": ids[a:b], "labels": labels[a:b]} for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    return feats, stats
