"""The model card is written from the student's record alone: every number and licence in it is the
record's, and a non-commercial source makes the card say so."""

from __future__ import annotations

import json
import subprocess
import sys

from universalner.tune.card import model_card, non_commercial, write_card

RECORD = {
    "template": "chat",
    "method": "lora",
    "max_length": 512,
    "trained_with": "universalner.tune 0.2.0",
    "threshold": 0.2,
    "list_threshold": 0.3,
    "continue_threshold": 0.4,
    "checkpoint": "checkpoint-700",
    "base": {"name": "SmolLM2", "file": "base.gguf", "sha256": "ab" * 32},
    "dev": {"checkpoint": "checkpoint-700", "limit": 0, "f1": 0.4123, "per_set": {"pilener": 0.5, "AnatEM": 0.3246}},
    "curve": [{"step": 100, "tokens": 250000, "f1": 0.3, "precision": 0.31, "recall": 0.29},
              {"step": 700, "tokens": 1750000, "f1": 0.41, "precision": 0.4, "recall": 0.42}],
    "data": {
        "sources": {"pilener": {"sha256": "cd" * 32, "licence": "CC BY-NC 4.0"},
                    "broad_twitter_corpus": {"train_sha256": "ef" * 32, "licence": "CC BY 4.0"}},
        "train": {"conversations": 1234, "questions": 5678, "empty_answers": 3000},
        "train_parts": {"pilener": {"conversations": 1000}, "broad_twitter_corpus": {"conversations": 234}},
    },
    "cpu": {"dtype": "float32", "measured": "bench_cpu on dev"},
    "curve_image": "curve.png",
    "training_note": "Shortened from 700 to 600 steps at step 270.",
    "benchmark": {"note": "bench_zero_shot on all sentences", "sets": {"CrossNER_AI": 0.371, "mit-restaurant": 0.18},
                  "average": 0.2755},
    "recipe": "python recipes/universalner_135m_v2.py --export DIR",
}  # fmt: skip


def test_card_states_what_the_record_holds():
    card = model_card(RECORD, "universalner-135m")
    assert card.startswith("# universalner-135m")
    assert "Research and non-commercial use only" in card and "pilener" in card
    assert "| pilener | 1000 | CC BY-NC 4.0 | `cdcdcdcdcdcd` |" in card
    assert "| broad_twitter_corpus | 234 | CC BY 4.0 | `efefefefefef` |" in card
    assert "1,234 conversations, 5,678 questions" in card
    assert "| 700 | 1,750,000 | 40.0 | 42.0 | 41.0 |" in card
    assert "List threshold 0.3, continue threshold 0.4, score threshold 0.2" in card and "**41.2**" in card
    assert "| AnatEM | 32.5 |" in card
    assert "**float32**" in card and "bench_cpu on dev" in card
    assert "![learning curve on dev](curve.png)" in card
    assert "\nShortened from 700 to 600 steps at step 270.\n" in card
    assert "bench_zero_shot on all sentences" in card and "| CrossNER_AI | 37.1 |" in card
    assert "| **average** | **27.6** |" in card
    assert "`python recipes/universalner_135m_v2.py --export DIR` rebuilds this student" in card


def test_commercial_sources_only():
    rec = json.loads(json.dumps(RECORD))
    del rec["data"]["sources"]["pilener"]
    assert non_commercial(rec) == []
    assert "allows commercial use" in model_card(rec, "x") and "non-commercial use only" not in model_card(
        rec, "x"
    )


def test_write_card_and_its_command(tmp_path):
    (tmp_path / "universalner.json").write_text(json.dumps(RECORD))
    (tmp_path / "README.md").write_text("an old card by hand")
    assert write_card(tmp_path, "s").read_text() == model_card(RECORD, "s")
    r = subprocess.run([sys.executable, "-m", "universalner.tune.card", str(tmp_path / "none")],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and "not a student folder" in r.stderr


def test_no_recorded_sources_claims_nothing():
    rec = {k: v for k, v in RECORD.items() if k != "data"}
    card = model_card(rec, "s")
    assert "names no training sources" in card and "allows commercial use" not in card
    assert "## Thresholds, chosen on dev" in card and "| 700 | 1,750,000 |" in card
