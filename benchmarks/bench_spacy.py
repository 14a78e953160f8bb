"""The spaCy component: ``nlp.pipe`` (batched) against ``nlp(text)`` per doc, in one run, ratio printed.

Both paths run the same pipeline on the same texts with the real test model; also timed: the model
alone (``UniversalNER.extract_batch`` on the same batch) and the component's own work (placing the
returned mentions on tokens), so the component's overhead is visible next to the model's time.

    python benchmarks/bench_spacy.py [--docs 16] [--labels person=... phrase=...] [--template uniner] [--max-new-tokens 16] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import os
import time

import spacy

from universalner.loading import test_model_gguf

SENTENCES = [
    "Apple was founded by Steve Jobs in California.",
    "Marie Curie worked in Paris.",
    "Toyota builds cars in Japan.",
    "Mount Everest lies in Nepal.",
    "Barack Obama met Angela Merkel in Berlin.",
    "Lionel Messi joined Inter Miami in 2023.",
    "Amazon opened an office in Seattle.",
    "The Nile flows through Egypt and Sudan.",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="default: the 135M test model")
    ap.add_argument("--docs", type=int, default=16)
    ap.add_argument(
        "--labels",
        nargs="+",
        default=["person=the people named", "phrase=the words"],
        help="NAME or NAME=DEFINITION (the defaults make the untuned test model name overlapping mentions)",
    )
    ap.add_argument("--template", default="uniner")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8, help="passages per engine call (config batch_size)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    model = args.model or str(test_model_gguf())
    texts = [SENTENCES[i % len(SENTENCES)] for i in range(args.docs)]
    labels = dict(x.split("=", 1) if "=" in x else (x, x) for x in args.labels)

    nlp = spacy.blank("en")
    comp = nlp.add_pipe(
        "universal_ner",
        config={
            "model": model,
            "labels": labels,
            "template": args.template,
            "device": args.device,
            "max_new_tokens": args.max_new_tokens,
            "batch_size": args.batch_size,
        },
    )
    t0 = time.perf_counter()
    comp.ner  # noqa: B018 - load once, outside the timings
    print(f"model loaded in {time.perf_counter() - t0:.1f} s; {args.docs} docs x {len(labels)} labels")

    t0 = time.perf_counter()
    single = [nlp(t) for t in texts]
    t_single = time.perf_counter() - t0

    t0 = time.perf_counter()
    piped = list(nlp.pipe(texts, batch_size=1000))
    t_pipe = time.perf_counter() - t0

    t0 = time.perf_counter()
    preds = comp.ner.extract_batch(texts, labels, batch_size=args.batch_size)
    t_model = time.perf_counter() - t0

    docs = [nlp.make_doc(t) for t in texts]
    t0 = time.perf_counter()
    for _ in range(20):
        docs = [nlp.make_doc(t) for t in texts]
        comp.set_annotations(docs, preds)
    t_place = (time.perf_counter() - t0) / 20

    same = sum(
        [(e.start_char, e.end_char, e.label_) for e in a.ents]
        == [(e.start_char, e.end_char, e.label_) for e in b.ents]
        for a, b in zip(single, piped, strict=True)
    )
    n = args.docs
    print(f"nlp(text) per doc : {t_single:7.2f} s  ({n / t_single:6.2f} docs/s)")
    print(f"nlp.pipe          : {t_pipe:7.2f} s  ({n / t_pipe:6.2f} docs/s)")
    print(f"extract_batch only: {t_model:7.2f} s  (the model's share of nlp.pipe)")
    print(f"placing mentions  : {1e6 * t_place / n:7.0f} us per doc (tokenizing included)")
    print(f"speed-up of nlp.pipe over per-doc calls: {t_single / t_pipe:.2f}x")
    print(f"docs with the same entities on both paths: {same}/{n}")
    print(
        f"mentions: {sum(map(len, preds))}, entities after overlaps: {sum(len(d.ents) for d in piped)}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
