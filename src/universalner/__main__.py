"""``python -m universalner``: extract entities from a sentence or a file.

One JSON object per passage: ``{"text": ..., "entities": [{"text","label","start","end","score"}]}``.
With ``--output``, passages already written by an earlier run are skipped, so an interrupted
run over a large file resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from .weights.shipped import DEFAULT_STUDENT


class InputError(ValueError):
    """A problem with the user's input file, naming the file and line."""


def parse_labels(spec: str) -> list[str] | dict[str, str]:
    """``person,location`` or a JSON file holding a list of names or a {label: definition} dict."""
    path = Path(spec)
    if spec.endswith(".json") or path.is_file():
        if not path.is_file():
            raise InputError(f"--labels: no such file {spec}")
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise InputError(
                f"--labels: {spec} is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8"
            ) from e
        except json.JSONDecodeError as e:
            raise InputError(f"--labels: {spec} is not valid JSON ({e})") from e
        if isinstance(value, (list, dict)):
            return value
        raise InputError(f"--labels: {spec} must hold a JSON list of names or an object of definitions")
    labels = [x.strip() for x in spec.split(",") if x.strip()]
    if not labels:
        raise InputError("--labels: give at least one entity type, e.g. --labels person,location")
    return labels


def read_passages(path: Path, field: str = "text") -> Iterator[str]:
    """Plain text (one passage per line) or JSON lines with a ``field`` (by extension or content)."""
    if not path.is_file():
        raise InputError(f"--input: no such file {path}")
    jsonl = path.suffix.lower() in (".jsonl", ".ndjson")
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").removeprefix("\ufeff" if n == 1 else "").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise InputError(
                    f"{path}:{n}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                    "save the file as UTF-8, e.g. iconv -f latin1 -t utf-8"
                ) from None
            if not line.strip():
                continue
            if jsonl or (n == 1 and line.lstrip().startswith("{")):
                jsonl = True
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputError(f"{path}:{n}: not valid JSON ({e.msg})") from e
                if not isinstance(record, dict) or not isinstance(record.get(field), str):
                    raise InputError(f"{path}:{n}: expected an object with a string field {field!r}")
                yield record[field]
            else:
                yield line


def finished_results(path: Path, passages: list[str]) -> int:
    """How many passages an earlier run wrote to ``path`` (to resume after them).

    A last line cut short by a crash is removed; a file that holds anything but this command's
    results for these passages, in order, is refused rather than appended to."""
    data = path.read_bytes()
    good = done = 0
    for n, raw in enumerate(data.splitlines(keepends=True), 1):
        if not raw.endswith(b"\n"):
            break  # torn by a crash: asked again
        if raw.strip():
            try:
                rec = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                rec = None
            if not (isinstance(rec, dict) and isinstance(rec.get("text"), str) and "entities" in rec):
                raise InputError(
                    f"--output {path}:{n} is not a result line of this command; give another --output, "
                    "or delete the file to start over"
                )
            if done >= len(passages) or rec["text"] != passages[done]:
                raise InputError(
                    f"--output {path}:{n} holds the result for another text than passage {done + 1} of the "
                    "input; the input changed since that run: give another --output, or delete the file"
                )
            done += 1
        good += len(raw)
    if good < len(data):
        with open(path, "r+b") as f:
            f.truncate(good)
    return done


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m universalner",
        description="Open-type named entity recognition with a UniversalNER student model.",
        epilog="other jobs: universalner distill|tune|evaluate ... (or python -m universalner.JOB)",
    )
    p.add_argument("text", nargs="*", help="text to analyse (or use --input)")
    p.add_argument(
        "--model", default=DEFAULT_STUDENT,
        help=f"hub id, model folder, .gguf file or shipped student (default: {DEFAULT_STUDENT}, the library's own)",
    )  # fmt: skip
    p.add_argument(
        "--labels",
        help="comma-separated types, or a JSON file (list or dict); default: the labels an adapted student records",
    )
    p.add_argument("--input", type=Path, help="plain text (one passage per line) or .jsonl with a text field")
    p.add_argument("--text-field", default="text", help="field of --input JSON lines (default: text)")
    p.add_argument("--output", type=Path, help="write JSON lines here (resumes) instead of stdout")
    p.add_argument("--adapter", help="LoRA adapter folder made by universalner.tune")
    p.add_argument(
        "--quantization", choices=["4bit", "8bit", "int8"], default=None,
        help="4bit/8bit: bitsandbytes; int8: the CPU's own int8 layers (docs/performance.md)",
    )  # fmt: skip
    p.add_argument(
        "--dtype", choices=["float32", "bfloat16", "float16"], default=None,
        help="weights' dtype (default: bf16 on a GPU, on a CPU what the student records)",
    )  # fmt: skip
    p.add_argument("--device", default="auto")
    p.add_argument("--engine", default="transformers")
    p.add_argument("--template", default="auto", choices=["auto", "uniner", "chat"])
    p.add_argument("--dataset", default=None, help="data set name for dataset-specific students")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument(
        "--threshold", type=float, default=None,
        help="drop mentions scored lower (default: the student's own, chosen on its dev split; else 0)",
    )  # fmt: skip
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument(
        "--verbose", action="store_true", help="also show other libraries' logs, progress bars and warnings"
    )
    return p


JOBS = {"distill", "tune", "evaluate"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in JOBS:  # `universalner tune ...` is `python -m universalner.tune ...`
        import importlib

        job = importlib.import_module(f"universalner.{argv[0]}.__main__")
        return job.main(argv[1:])
    args = build_parser().parse_args(argv)
    from .quiet import setup

    setup(verbose=args.verbose)
    try:
        return run(args)
    except (InputError, FileNotFoundError, TypeError, ValueError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    from .prompts import resolve_labels

    if args.labels is None:  # a student adapted with `tune --from` records its label set
        from .weights.shipped import recorded_labels

        labels = recorded_labels(args.model) or []
        if not labels:
            raise InputError("--labels: give the entity types to find, e.g. --labels person,location")
    else:
        labels = parse_labels(args.labels)
    resolve_labels(labels)  # empty names and the like fail here, before the model is loaded
    if args.text and args.input:
        raise InputError("give text arguments or --input, not both")
    if not args.text and not args.input:
        raise InputError("nothing to analyse: give a text argument or --input FILE")
    if args.batch_size < 1:
        raise InputError("--batch-size must be at least 1")
    passages = [" ".join(args.text)] if args.text else list(read_passages(args.input, args.text_field))
    if args.text and not passages[0].strip():
        raise InputError("nothing to analyse: the text is empty")
    if not passages:
        raise InputError(f"--input {args.input} holds no text (every line is empty)")

    done = 0
    if args.output and args.output.is_dir():
        raise InputError(f"--output {args.output} is a folder; give the path of a JSON lines file")
    if args.output and args.output.is_file():
        done = finished_results(args.output, passages)

    from .model import ModelSpec

    ner = ModelSpec(
        args.model, args.quantization, args.device, args.adapter, args.template, args.engine,
        {"max_new_tokens": args.max_new_tokens, **({"dtype": args.dtype} if args.dtype else {})},
    ).load()  # fmt: skip
    out = args.output.open("a", encoding="utf-8") if args.output else sys.stdout
    bar = None
    if args.input:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(passages), initial=done, desc="passages", unit="passage")
    try:
        for b in range(done, len(passages), args.batch_size):
            batch = passages[b : b + args.batch_size]
            results = ner.extract_batch(
                batch, labels, batch_size=args.batch_size, dataset=args.dataset, threshold=args.threshold
            )
            for text, ents in zip(batch, results, strict=True):
                out.write(
                    json.dumps({"text": text, "entities": [e.to_dict() for e in ents]}, ensure_ascii=False)
                )
                out.write("\n")
            out.flush()
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
        if out is not sys.stdout:
            out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
