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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..corpora.conversations import records_to_reference
from .dataset import EvalSet
from .metrics import official_scores, reference_response, strict_scores
from .report import summary_table, type_table, write_json


class ResumeMismatch(RuntimeError):
    """The output folder holds predictions made with other settings."""


@dataclass
class ModelSpec:
    """What ``UniversalNER.from_pretrained`` needs; loaded only when there is work to do."""

    model: str
    quantization: str | None = None
    device: str | None = "auto"
    adapter: str | None = None
    template: str = "auto"
    engine: str = "transformers"
    options: dict[str, Any] = field(default_factory=dict)

    def load(self):
        from .. import UniversalNER  # torch is imported here, never for score/convert

        return UniversalNER.from_pretrained(
            self.model,
            quantization=self.quantization,
            device=self.device,
            adapter=self.adapter,
            template=self.template,
            engine=self.engine,
            **self.options,
        )

    def fingerprint(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "device"}


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
        diff = sorted(k for k in config.keys() | old.keys() if config.get(k) != old.get(k))
        if diff:
            raise ResumeMismatch(
                f"{folder} holds predictions made with other settings ({', '.join(diff)} differ); "
                "use another --output folder or delete this one"
            )
    else:
        write_json(path, config)


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
        for b in range(0, len(todo), batch_size):
            idx = todo[b : b + batch_size]
            t0 = time.perf_counter()
            preds = model.predict(
                [ds.sentences[i].text for i in idx],
                ds.labels,
                dataset=ds.name if dataset_prompt else None,
                batch_size=batch_size,
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


def score_set(ds: EvalSet, done: Mapping[int, dict]) -> dict:
    """Both metrics for one data set from its stored answers."""
    outputs = [done[r.sentence]["raw"].get(r.label, "") for r in ds.records]
    official = official_scores(
        [reference_response(o) for o in outputs], [r.gold for r in ds.records], [r.label for r in ds.records]
    )
    pred_spans = [
        [(e["start"], e["end"], e["label"]) for e in done[i]["entities"]] for i in range(len(ds.sentences))
    ]
    strict = strict_scores(pred_spans, ds.gold_spans(), ds.labels)
    seconds = sum(done[i]["seconds"] for i in range(len(ds.sentences)))
    return {
        "data": str(ds.path),
        "n_sentences": len(ds.sentences),
        "n_records": len(ds.records),
        "labels": ds.labels,
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
) -> dict[str, dict]:
    """Predict (or resume), score and report every data set; returns the metrics per set."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    loaded: list = []

    def get_model():
        if not loaded:
            loaded.append(spec.load())
        return loaded[0]

    results: dict[str, dict] = {}
    report = [f"# Benchmark: `{spec.model}`", ""]
    for ds in sets:
        folder = output / ds.name
        folder.mkdir(exist_ok=True)
        _check_config(
            folder,
            {
                "model": spec.fingerprint(),
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
                out = done[r.sentence]["raw"].get(r.label, "")
                f.write(json.dumps({"id": r.id, "output": out}, ensure_ascii=False) + "\n")
        res = score_set(ds, done)
        official, strict = res.pop("_tables")
        write_json(folder / "metrics.json", res)
        results[ds.name] = res
        report += [f"## {ds.name}", "", type_table(official, strict, ds.labels), ""]
    summary = summary_table(results)
    report[2:2] = [summary, ""]
    write_json(output / "metrics.json", {"model": spec.model, "sets": results})
    (output / "report.md").write_text("\n".join(report), encoding="utf-8")
    return results
