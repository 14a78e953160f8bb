"""The spaCy component: ``nlp.pipe`` (batched) against ``nlp(text)`` per doc, in one run, ratio printed.

The two paths, on the same pipeline, texts and real test model:

* ``nlp(text)`` per doc: one engine call per doc (that passage's questions, all labels, together);
* ``nlp.pipe(texts)``: one engine call per ``batch_size`` docs (all their questions together).

Also timed: the model alone (``UniversalNER.extract_batch`` on the same batch) and the component's own
work (placing the returned mentions on tokens), so its overhead is visible next to the model's time.

Both paths are warmed up first (one-off costs: the constrained-decoding index, the cached system-text
prefix, the engine's learned answer opening), then timed ``--repeat`` times each, in alternating order
(a drift in the machine's load falls on both alike); each path's median run counts.

    python benchmarks/bench_spacy.py [--docs 16] [--repeat 3] [--labels person=... phrase=...] [--template uniner] [--max-new-tokens 16] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import spacy

from universalner.weights.shipped import test_model_gguf

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
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each path (the median counts)")
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

    paths = {
        "single": lambda: [nlp(t) for t in texts],
        "pipe": lambda: list(nlp.pipe(texts, batch_size=1000)),
        "model": lambda: comp.ner.extract_batch(texts, labels, batch_size=args.batch_size),
    }
    warm = texts[: max(2, args.batch_size)]
    for t in warm[:2]:  # warm-up of both paths, outside the timings
        nlp(t)
    list(nlp.pipe(warm, batch_size=1000))
    times: dict[str, list[float]] = {k: [] for k in paths}
    out: dict[str, object] = {}
    for r in range(max(1, args.repeat)):
        for name in paths if r % 2 == 0 else reversed(list(paths)):
            t0 = time.perf_counter()
            out[name] = paths[name]()
            times[name].append(time.perf_counter() - t0)
    t_single, t_pipe, t_model = (statistics.median(times[k]) for k in ("single", "pipe", "model"))
    single, piped, preds = out["single"], out["pipe"], out["model"]

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

    def runs(name: str) -> str:
        return ", ".join(f"{t:.2f}" for t in times[name])

    print(f"median of {len(times['pipe'])} runs each, after a warm-up of both paths")
    print(f"nlp(text) per doc : {t_single:7.2f} s  ({n / t_single:6.2f} docs/s; runs {runs('single')} s)")
    print(f"nlp.pipe          : {t_pipe:7.2f} s  ({n / t_pipe:6.2f} docs/s; runs {runs('pipe')} s)")
    print(f"extract_batch only: {t_model:7.2f} s  (the model's share of nlp.pipe; runs {runs('model')} s)")
    print(f"placing mentions  : {1e6 * t_place / n:7.0f} us per doc (tokenizing included)")
    print(f"speed-up of nlp.pipe over per-doc calls: {t_single / t_pipe:.2f}x")
    print(f"docs with the same entities on both paths: {same}/{n}")
    print(
        f"mentions: {sum(map(len, preds))}, entities after overlaps: {sum(len(d.ents) for d in piped)}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
