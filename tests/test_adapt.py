"""``tune --from``: a shipped student adapted to a user's own annotations, in a few steps."""

from __future__ import annotations

import json

import pytest

from universalner.tune.__main__ import main

pytestmark = pytest.mark.slow

SENTENCES = [
    ("Aspirin relieved the headache of the patient.", [("Aspirin", "DRUG"), ("headache", "SYMPTOM")]),
    ("She took ibuprofen for her fever.", [("ibuprofen", "DRUG"), ("fever", "SYMPTOM")]),
    ("Paracetamol did not help his cough.", [("Paracetamol", "DRUG"), ("cough", "SYMPTOM")]),
    ("Nausea followed the first dose of metformin.", [("Nausea", "SYMPTOM"), ("metformin", "DRUG")]),
    ("The doctor prescribed amoxicillin for the sore throat.", [("amoxicillin", "DRUG"), ("sore throat", "SYMPTOM")]),
    ("Insulin lowered her blood sugar.", [("Insulin", "DRUG")]),
    ("He felt dizzy after taking lisinopril.", [("dizzy", "SYMPTOM"), ("lisinopril", "DRUG")]),
    ("Warfarin thins the blood.", [("Warfarin", "DRUG")]),
    ("A rash appeared after penicillin.", [("rash", "SYMPTOM"), ("penicillin", "DRUG")]),
    ("Codeine eased the cough.", [("Codeine", "DRUG"), ("cough", "SYMPTOM")]),
]  # fmt: skip


def write_jsonl(path, sentences=SENTENCES):
    with open(path, "w", encoding="utf-8") as f:
        for text, ents in sentences:
            spans = [{"start": text.index(m), "end": text.index(m) + len(m), "label": lab} for m, lab in ents]
            f.write(json.dumps({"text": text, "spans": spans}) + "\n")
    return path


TINY = ["--max-steps", "1", "--batch-size", "1", "--grad-accum", "1", "--logging-steps", "1", "--bf16", "off"]


def test_continue_with_dev_thresholds_and_replay(test_gguf, tmp_path, capsys):
    data = write_jsonl(tmp_path / "data.jsonl")
    replay = tmp_path / "replay.bio"  # a Pile-NER-like BIO file: converted as the shipped student's data
    replay.write_text("Barack\tB-person\nObama\tI-person\nvisited\tO\nParis\tB-location\n.\tO\n\n" * 3)
    out = tmp_path / "student"
    rc = main(
        ["--from", "universalner-135m", "--data", str(data), "--output", str(out), "--dev-share", "0.5",
         "--labels", "DRUG=drug,SYMPTOM=symptom", "--replay", str(replay), "--replay-ratio", "0.4",
         "--list-thresholds", "0.3,0.5", "--continue-thresholds", "0.3,0.5", *TINY]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 0, err
    record = json.loads((out / "universalner.json").read_text())
    assert record["labels"] == ["drug", "symptom"]
    assert record["adapted"]["train_sentences"] == 5 and record["adapted"]["dev_sentences"] == 5
    assert record["adapted"]["replay_conversations"] == 2
    assert record["base"]["sha256"]  # found by hash on any machine, as the shipped student's base
    dev = record["dev"]
    assert record["threshold"] == dev["threshold"] and record["list_threshold"] == dev["list_threshold"]
    assert len(dev["trials"]) == 2 * 2 * 10  # list x continue thresholds x score thresholds
    assert {(t["list_threshold"], t["continue_threshold"]) for t in dev["trials"]} == {
        (0.3, 0.3), (0.3, 0.5), (0.5, 0.3), (0.5, 0.5)
    }  # fmt: skip
    # 0.5 (plain greedy) is what no key means; any other choice is written
    assert record.get("continue_threshold", 0.5) == dev["continue_threshold"]
    convs = json.loads((out / "adapt" / "train.json").read_text())
    users = [c for c in convs if c["id"].startswith("user_")]
    # every label asked of every sentence, in the plain form inference uses
    assert all(
        len(c["conversations"]) == 6 and c["conversations"][0]["value"].startswith("Text: ") for c in users
    )
    from universalner import UniversalNER

    ner = UniversalNER.from_pretrained(str(out))
    assert ner.threshold == dev["threshold"] and ner.list_threshold == dev["list_threshold"]
    assert ner.continue_threshold == dev["continue_threshold"]
    ents = ner.extract("Morphine eased the pain.", ["drug"])
    assert all(e.label == "drug" for e in ents)


def test_stack_folds_both_adapters_into_one(test_gguf, tmp_path, capsys):
    data = write_jsonl(tmp_path / "data.jsonl", SENTENCES[:3])
    out = tmp_path / "stacked"
    rc = main(["--from", "universalner-135m", "--data", str(data), "--output", str(out), "--adapter", "stack",
               "--lora-r", "2", "--lora-alpha", "4", *TINY])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    config = json.loads((out / "adapter_config.json").read_text())
    from universalner.weights.shipped import DEFAULT_STUDENT, STUDENTS_DIR

    shipped_r = json.loads((STUDENTS_DIR / DEFAULT_STUDENT / "adapter_config.json").read_text())["r"]
    assert config["r"] == shipped_r + 2 and config["lora_alpha"] == shipped_r + 2  # folded: scale 1
    # the command line loads it like any student, and asks the labels it records when given none
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "universalner", "--model", str(out), "Aspirin helps."],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["text"] == "Aspirin helps."


def test_stack_adapters_is_the_sum(tmp_path):
    import torch
    from safetensors.torch import save_file

    from universalner.tune.adapt import stack_adapters
    from universalner.weights.lora import plain_factors

    def adapter(folder, r, alpha, modules):
        folder.mkdir()
        cfg = {"peft_type": "LORA", "r": r, "lora_alpha": alpha, "bias": "none", "target_modules": modules}
        (folder / "adapter_config.json").write_text(json.dumps(cfg))
        t = {}
        for m in modules:
            t[f"base_model.model.layer.{m}.lora_A.weight"] = torch.randn(r, 6)
            t[f"base_model.model.layer.{m}.lora_B.weight"] = torch.randn(5, r)
        save_file(t, str(folder / "adapter_model.safetensors"))
        return plain_factors(folder)

    s1, _, f1 = adapter(tmp_path / "p", 4, 8, ["q", "k"])
    s2, _, f2 = adapter(tmp_path / "c", 2, 8, ["q", "v"])
    stack_adapters(tmp_path / "p", tmp_path / "c")
    s, r, f = plain_factors(tmp_path / "c")
    assert r == 6 and s == 1.0
    for m in ("q", "k", "v"):
        name = f"layer.{m}"
        want = torch.zeros(5, 6)
        for scale, fac in ((s1, f1), (s2, f2)):
            if name in fac:
                want += scale * fac[name]["B"] @ fac[name]["A"]
        assert torch.allclose(f[name]["B"] @ f[name]["A"], want, atol=1e-5)


def test_bad_data_fails_before_anything_is_written(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "abc", "spans": [{"start": 0, "end": 9, "label": "X"}]}) + "\n")
    out = tmp_path / "never"
    assert main(["--from", "universalner-135m", "--data", str(bad), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:1: the span 0-9 ('X') does not fall on the text" in err and err.count("\n") == 1
    assert not out.exists()
    data = write_jsonl(tmp_path / "d.jsonl", SENTENCES[:2])
    assert (
        main(["--from", "universalner-135m", "--data", str(data), "--labels", "DRUG", "--output", str(out)])
        == 2
    )
    assert "label 'SYMPTOM' ('headache') is not in --labels ('DRUG')" in capsys.readouterr().err
    assert not out.exists()
    dev = write_jsonl(tmp_path / "dev.jsonl", [("Aspirin is a drug.", [("Aspirin", "MEDICINE")])])
    assert (
        main(["--from", "universalner-135m", "--data", str(data), "--dev", str(dev), "--output", str(out)])
        == 2
    )
    assert f"{dev}:1: label 'MEDICINE' ('Aspirin') is not in --labels" in capsys.readouterr().err
    assert not out.exists()
    args = ["--from", "universalner-135m", "--data", str(data), "--output", str(out)]
    assert main([*args, "--continue-thresholds", "0.3,1.5"]) == 2
    assert "continue thresholds must be between 0 and 1 (exclusive), not 1.5" in capsys.readouterr().err
    assert not out.exists()


def test_replay_from_conversation_json_is_a_seeded_sample(tmp_path):
    from universalner.tune.adapt import replay_examples

    convs = [
        {"id": f"p{i}", "conversations": [
            {"from": "human", "value": f"Text: Person {i} lives in Rome."}, {"from": "gpt", "value": "I've read this text."},
            {"from": "human", "value": "What describes city in the text?"}, {"from": "gpt", "value": '["Rome"]'}]}
        for i in range(10)
    ]  # fmt: skip
    path = tmp_path / "replay.json"
    path.write_text(json.dumps(convs))
    got, what = replay_examples(str(path), tmp_path, 4, seed=0)
    again, _ = replay_examples(str(path), tmp_path, 4, seed=0)
    assert got == again and len(got) == 4 and "conversation JSON" in what
    assert all(r["id"].startswith("replay_p") and r["conversations"][3]["value"] == '["Rome"]' for r in got)
    assert replay_examples("none", tmp_path, 4, seed=0) == ([], "none")
    assert replay_examples(None, tmp_path, 4, seed=0) == ([], "none")


def test_an_output_holding_a_run_is_refused_without_resume(tmp_path, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", SENTENCES[:2])
    out = tmp_path / "taken"
    out.mkdir()
    (out / "tune_config.json").write_text("{}")
    assert main(["--from", "universalner-135m", "--data", str(data), "--output", str(out)]) == 2
    assert "already holds a training run; pass --resume" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["tune_config.json"]
