"""A student's model card (``README.md``), written from its record (``universalner.json``) alone.

Every number a card states comes from the record that the recipe's commands wrote (dev scores,
thresholds, learning curve, data sources with their sha256 and licences, the CPU path), so the card
cannot drift from the student it describes: rerun this after anything rewrites the record.

    python -m universalner.tune.card STUDENT_FOLDER      # rewrites STUDENT_FOLDER/README.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..weights.record import TEMPLATE_RECORD, read_template_record

NON_COMMERCIAL = ("NC", "not for commercial", "non-commercial")


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}"


def _sources(record: dict) -> list[tuple[str, dict]]:
    return sorted((record.get("data") or {}).get("sources", {}).items())


def non_commercial(record: dict) -> list[str]:
    """The training sources whose licence forbids or does not allow commercial use."""
    return [name for name, s in _sources(record) if any(k in s.get("licence", "") for k in NON_COMMERCIAL)]


def model_card(record: dict, name: str) -> str:
    """The card of the student whose record is ``record``, as Markdown."""
    base = record.get("base", {})
    out = [f"# {name}", ""]
    out += [
        f"A zero-shot named entity recogniser: a LoRA adapter on **{base.get('name', 'its base model')}**, "
        f"trained by this library (`{record.get('trained_with', 'universalner.tune')}`). Ask it any entity "
        "types in plain words; it answers each with the mentions it finds.",
        "",
        "```python",
        "from universalner import UniversalNER",
        "",
        f'ner = UniversalNER.from_pretrained("{name}")',
        'ner.extract("Barack Obama met Emmanuel Macron in Paris.", ["person", "location"])',
        "```",
        "",
        f"Base weights: `{base.get('file', '?')}` (sha256 `{base.get('sha256', '?')}`), checked before use; "
        "never shipped here.",
        "",
        "## Licence",
        "",
    ]
    nc = non_commercial(record)
    if not _sources(record):
        out += ["The record names no training sources: check where this student's data came from before any "
                "commercial use.", ""]  # fmt: skip
        return "\n".join(out + _rest(record))
    if nc:
        out.append(
            f"**Research and non-commercial use only**: trained on {', '.join(nc)}, whose licences do not "
            "allow commercial use (table below). The library's code is Apache-2.0."
        )
    else:
        out.append("Every training source below allows commercial use with attribution.")
    out += ["", "## Training data", "", "| source | trained on (conversations) | licence | sha256 |",
            "|---|---:|---|---|"]  # fmt: skip
    counts = (record.get("data") or {}).get("train_parts", {})
    for src, s in _sources(record):
        sha = s.get("sha256") or s.get("train_sha256") or ""
        used = counts.get(src, {}).get("conversations", "")
        out.append(f"| {src} | {used} | {s.get('licence', 'not recorded')} | `{sha[:12]}` |")
    train = (record.get("data") or {}).get("train")
    if train:
        out += ["", f"In all: {train['conversations']:,} conversations, {train['questions']:,} questions "
                f"({train['empty_answers']:,} answered `[]`)."]  # fmt: skip
    return "\n".join(out + [""] + _rest(record))


def _rest(record: dict) -> list[str]:
    """Everything after the data: training, curve, thresholds, CPU path, benchmark, limits."""
    out = ["## Training", ""]
    if record.get("stage1"):
        sha = record.get("stage1_sha256")
        out.append(
            f"Stage 2 of training, on top of `{Path(record['stage1']).name}`"
            + (f" (adapter sha256 `{sha[:12]}`)" if sha else "")
            + " merged into its base. "
        )
    out.append(
        f"Method {record.get('method', 'lora')}, maximum length {record.get('max_length', '?')} tokens, "
        f"the chosen checkpoint `{(record.get('dev') or {}).get('checkpoint') or record.get('checkpoint', '?')}`."
    )
    if record.get("training_note"):
        out += ["", record["training_note"]]
    curve = record.get("curve") or []
    if curve:
        out += ["", "Learning curve on dev (mean official F1 over the dev sets, list threshold of the curve):",
                "", "| step | tokens | precision | recall | F1 |", "|---:|---:|---:|---:|---:|"]  # fmt: skip
        out += [f"| {p['step']} | {p['tokens']:,} | {_pct(p['precision'])} | {_pct(p['recall'])} | {_pct(p['f1'])} |"
                for p in curve]  # fmt: skip
    if record.get("curve_image"):
        out += ["", f"![learning curve on dev]({record['curve_image']})"]
    dev = record.get("dev") or {}
    out += ["", "## Thresholds, chosen on dev", ""]
    out.append(
        f"List threshold {record.get('list_threshold', 0.5)}, continue threshold "
        f"{record.get('continue_threshold', 0.5)}, score threshold {record.get('threshold', 0.0)}"
        + (f": mean official F1 **{_pct(dev['f1'])}** on the dev sets" if "f1" in dev else "")
        + (f" (first {dev['limit']} sentences of each)" if dev.get("limit") else "")
        + "."
    )
    if dev.get("per_set"):
        out += ["", "| dev set | F1 at score threshold 0 |", "|---|---:|"]
        out += [f"| {k} | {_pct(v)} |" for k, v in sorted(dev["per_set"].items())]
    cpu = record.get("cpu")
    if cpu:
        out += ["", "## On a CPU", "", f"Loads in **{cpu.get('quantization') or cpu.get('dtype')}** by default: "
                f"{cpu.get('measured', '')}. `dtype=` or `quantization=` overrides it."]  # fmt: skip
    bench = record.get("benchmark")
    if bench:
        out += ["", "## Zero-shot benchmark", "", bench.get("note", ""), "",
                "| set | F1 |", "|---|---:|"]  # fmt: skip
        out += [f"| {k} | {_pct(v)} |" for k, v in bench.get("sets", {}).items()]
        if "average" in bench:
            out.append(f"| **average** | **{_pct(bench['average'])}** |")
    if record.get("recipe"):
        out += ["", "## Reproduce", "", f"`{record['recipe']}` rebuilds this student, from the library's "
                "repository and the data sources above, with the library's own commands (every step resumes)."]  # fmt: skip
    out += ["", "## Limits", "",
            "- A 135M-parameter student: it misses mentions a larger model finds and sometimes answers a type "
            "with the wrong kind of mention; measure it on your own sentences (`python -m universalner.evaluate`).",
            "- English only; trained on passages of at most the maximum length above (longer texts are cut "
            "into windows).", ""]  # fmt: skip
    return out


def write_card(folder: str | Path, name: str | None = None) -> Path:
    """Rewrite ``folder/README.md`` from ``folder``'s record; returns the card's path."""
    folder = Path(folder)
    record = read_template_record(folder)
    if not record:
        raise FileNotFoundError(f"{folder} has no {TEMPLATE_RECORD}: not a student folder")
    path = folder / "README.md"
    tmp = path.with_name("README.md.tmp")
    tmp.write_text(model_card(record, name or folder.name), encoding="utf-8")
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m universalner.tune.card", description=__doc__.split("\n")[0])
    ap.add_argument("folder", help="a student folder (universalner.json inside)")
    ap.add_argument("--name", help="the student's name in the card (default: the folder's name)")
    a = ap.parse_args(argv)
    try:
        print(write_card(a.folder, a.name))
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
