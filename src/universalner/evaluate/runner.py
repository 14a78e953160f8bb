"""``evaluate run``: a model on benchmark data sets, raw answers kept, both metrics reported.

Per data set ``NAME`` the output folder holds ``NAME/predictions.jsonl`` (one line per sentence,
appended and flushed as batches finish, so a killed run resumes where it stopped),
``NAME/gold.json`` and ``NAME/outputs.jsonl`` (the records and answers in the form ``score``
reads), ``NAME/metrics.json``; and at the top ``metrics.json`` and ``report.md`` for all sets.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..corpora.conversations import records_to_reference
from ..model import ModelSpec
from ..prompts import format_answer
from .dataset import EvalSet
from .fingerprint import answer_fingerprint
from .metrics import official_scores, reference_response, strict_scores
from .report import summary_table, type_table, write_json


class ResumeMismatch(RuntimeError):
    """The output folder holds predictions made with other settings."""


def read_predictions(path: Path) -> dict[int, dict]:
    """Finished sentences of a predictions file; a line cut short by a crash is removed."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    done: dict[int, dict] = {}
    good = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            rec = json.loads(line)
            done[int(rec["sentence"])] = rec
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            break
        good += len(line)
    if good < len(data):
        with open(path, "r+b") as f:
            f.truncate(good)
    return done


def _check_config(folder: Path, config: dict) -> None:
    path = folder / "run.json"
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        diff = _differences(old, config)
        preds = folder / "predictions.jsonl"
        if diff and (not preds.exists() or preds.stat().st_size == 0):
            # the earlier run answered nothing (say, its model failed to load): nothing to conflict with
            write_json(path, config)
        elif diff:
            raise ResumeMismatch(
                f"{folder} holds predictions made with other settings or weights ({', '.join(diff)} "
                "differ); its answers are not mixed with new ones: use another --output folder or delete this one"
            )
    else:
        write_json(path, config)


def _differences(old: Any, new: Any, where: str = "") -> list[str]:
    """The keys (``answers.adapter_files``) whose values differ between two configs."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(old.keys() | new.keys()):
            out += _differences(old.get(k), new.get(k), f"{where}.{k}" if where else str(k))
        return out
    return [] if old == new else [where]


def predict_set(
    ds: EvalSet,
    folder: Path,
    get_model,
    batch_size: int = 8,
    dataset_prompt: bool = False,
    progress: bool = True,
) -> dict[int, dict]:
    """Answers for every sentence of ``ds``, computing only those not already in the folder."""
    path = folder / "predictions.jsonl"
    done = read_predictions(path)
    for i, rec in done.items():
        if i < len(ds.sentences) and rec.get("text") != ds.sentences[i].text:
            raise ResumeMismatch(
                f"{path}: sentence {i} was predicted for another text; the data changed since that run. "
                "Use another --output folder or delete this one"
            )
    todo = [i for i in range(len(ds.sentences)) if i not in done]
    if not todo:
        return done
    from tqdm.auto import tqdm

    model = get_model()
    bar = tqdm(
        total=len(ds.sentences),
        initial=len(ds.sentences) - len(todo),
        desc=ds.name,
        unit="sent",
        disable=not progress,
    )
    with open(path, "a", encoding="utf-8") as out:
        for idx in _batches(ds, todo, batch_size):
            t0 = time.perf_counter()
            preds = model.predict(
                [ds.sentences[i].text for i in idx],
                ds.labels_of(idx[0]),
                dataset=ds.name if dataset_prompt else None,
                batch_size=batch_size,
                threshold=0.0,  # every mention is stored with its score; a threshold applies when scoring
            )
            per = (time.perf_counter() - t0) / len(idx)
            for i, p in zip(idx, preds, strict=True):
                rec = {
                    "sentence": i,
                    "text": ds.sentences[i].text,
                    "raw": p.raw,
                    "entities": [e.to_dict() for e in p.entities],
                    "seconds": per,
                }
                out.write(json.dumps(rec, ensure_ascii=False) + "\n")
                done[i] = rec
            out.flush()
            os.fsync(out.fileno())
            bar.update(len(idx))
    bar.close()
    return done


def thresholded_answer(rec: dict, label: str, threshold: float) -> str:
    """The answer the official metric scores: the raw one at 0, else the mentions scored at least ``threshold``.

    The kept mentions are those placed in the passage (constrained answers always are), in order.
    """
    if threshold <= 0:
        return rec["raw"].get(label, "")
    kept: list[str] = []
    for e in sorted(rec["entities"], key=lambda e: e["start"]):
        if e["label"] == label and e.get("score", 1.0) >= threshold and e["text"] not in kept:
            kept.append(e["text"])
    return format_answer(kept)


def _batches(ds: EvalSet, todo: list[int], size: int) -> list[list[int]]:
    """Runs of up to ``size`` sentences asked the same types (one ``predict`` call each)."""
    out: list[list[int]] = []
    for i in todo:
        if out and len(out[-1]) < size and ds.labels_of(out[-1][0]) == ds.labels_of(i):
            out[-1].append(i)
        else:
            out.append([i])
    return out


def score_set(ds: EvalSet, done: Mapping[int, dict], threshold: float = 0.0) -> dict:
    """Both metrics for one data set from its stored answers, mentions scored below ``threshold`` dropped."""
    outputs = [thresholded_answer(done[r.sentence], r.label, threshold) for r in ds.records]
    official = official_scores(
        [reference_response(o) for o in outputs], [r.gold for r in ds.records], [r.label for r in ds.records]
    )
    pred_spans = [
        [(e["start"], e["end"], e["label"]) for e in done[i]["entities"] if e.get("score", 1.0) >= threshold]
        for i in range(len(ds.sentences))
    ]
    strict = strict_scores(pred_spans, ds.gold_spans(), ds.labels)
    seconds = sum(done[i]["seconds"] for i in range(len(ds.sentences)))
    return {
        "data": str(ds.path),
        "n_sentences": len(ds.sentences),
        "n_records": len(ds.records),
        "labels": ds.labels,
        "threshold": threshold,
        "official": official.to_dict(),
        "strict": strict.to_dict(),
        "seconds": seconds,
        "sentences_per_second": len(ds.sentences) / seconds if seconds > 0 else 0.0,
        "unplaced_gold": len(ds.unplaced),
        "_tables": (official, strict),
    }


def run_benchmark(
    sets: list[EvalSet],
    spec: ModelSpec,
    output: str | Path,
    batch_size: int = 8,
    dataset_prompt: bool = False,
    progress: bool = True,
    threshold: float | None = None,
) -> dict[str, dict]:
    """Predict (or resume), score and report every data set; returns the metrics per set.

    ``threshold`` None: the one the student records (``spec.default_threshold()``).
    """
    if threshold is None:
        threshold = spec.default_threshold()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    loaded: list = []

    def get_model():
        if not loaded:
            loaded.append(spec.load())
        return loaded[0]

    # weights, adapter, the student's record, the CPU path loading will take, the library's version:
    # stored answers made with anything else are never mixed with new ones (evaluate/fingerprint.py)
    answers = answer_fingerprint(spec)
    results: dict[str, dict] = {}
    report = [f"# Benchmark: `{spec.model}`", ""]
    for ds in sets:
        folder = output / ds.name
        folder.mkdir(exist_ok=True)
        _check_config(
            folder,
            {
                "model": spec.fingerprint(),
                "answers": answers,
                "data": str(ds.path),
                "labels": ds.labels,
                "dataset_prompt": dataset_prompt,
            },
        )
        done = predict_set(ds, folder, get_model, batch_size, dataset_prompt, progress)
        gold = json.dumps(records_to_reference(ds.records, ds.sentences), ensure_ascii=False)
        (folder / "gold.json").write_text(gold + "\n", encoding="utf-8")
        with open(folder / "outputs.jsonl", "w", encoding="utf-8") as f:
            for r in ds.records:
                out = thresholded_answer(done[r.sentence], r.label, threshold)
                f.write(json.dumps({"id": r.id, "output": out}, ensure_ascii=False) + "\n")
        res = score_set(ds, done, threshold)
        official, strict = res.pop("_tables")
        write_json(folder / "metrics.json", res)
        results[ds.name] = res
        report += [f"## {ds.name}", "", type_table(official, strict, ds.labels), ""]
    summary = summary_table(results)
    report[2:2] = [summary, ""]
    write_json(output / "metrics.json", {"model": spec.model, "sets": results})
    (output / "report.md").write_text("\n".join(report), encoding="utf-8")
    return results


def sweep_thresholds(sets: list[EvalSet], output: str | Path, thresholds: list[float]) -> dict:
    """Official micro F1 over all ``sets`` (pooled records) at each threshold, from a finished ``run``.

    Chooses a student's default threshold on a dev split: the stored answers carry every mention's
    score, so no model is loaded. Writes ``sweep.json`` in ``output``.
    """
    output = Path(output)
    done_by_set = {}
    for ds in sets:
        done = read_predictions(output / ds.name / "predictions.jsonl")
        missing = [i for i in range(len(ds.sentences)) if i not in done]
        if missing:
            raise ValueError(
                f"{output / ds.name}: {len(missing)} of {len(ds.sentences)} sentences have no stored answer; "
                "finish `evaluate run` with the same --data and --limit first"
            )
        done_by_set[ds.name] = done
    rows = []
    for t in thresholds:
        preds, golds, labels = [], [], []
        for ds in sets:
            for r in ds.records:
                preds.append(
                    reference_response(thresholded_answer(done_by_set[ds.name][r.sentence], r.label, t))
                )
                golds.append(r.gold)
                labels.append(r.label)
        m = official_scores(preds, golds, labels).micro
        rows.append({"threshold": t, "precision": m.precision, "recall": m.recall, "f1": m.f1})
    best = max(rows, key=lambda r: (round(r["f1"], 6), -r["threshold"]))
    result = {"sets": [ds.name for ds in sets], "rows": rows, "best": best}
    write_json(output / "sweep.json", result)
    return result
