"""How a training question names its type: the name, a definition, or a variant spelling of the name.

Users write ``Person``, ``people`` or ``organisation`` where the data says ``person`` and
``organization``, and the library's definition form (``labels`` as a dict) asks a sentence instead
of a name. A student that only ever saw lower-case singular names answers those worse, so a share
of questions is asked each other way. The same phrasing applies to a type's positive and negative
questions alike, so the phrasing itself never hints at the answer.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping

# a few spellings users write for the commonest types; never a narrower or broader type
SYNONYMS: dict[str, tuple[str, ...]] = {
    "organization": ("organisation",),
    "location": ("place",),
    "person": ("people", "human"),
    "country": ("nation",),
    "date": ("calendar date",),
    "city": ("town or city",),
    "company": ("firm",),
    "disease": ("illness",),
    "programming language": ("programming languages",),
}


def plural(name: str) -> str:
    """English plural of the last word: ``political party`` -> ``political parties``."""
    head, _, last = name.rpartition(" ")
    low = last.lower()
    if not last or low.endswith("s"):
        return name
    if low.endswith("y") and len(low) > 1 and low[-2] not in "aeiou":
        last = last[:-1] + "ies"
    elif low.endswith(("x", "ch", "sh", "z")):
        last += "es"
    elif low == "person":
        last = "people" if last.islower() else "People"
    else:
        last += "s"
    return f"{head} {last}" if head else last


def variants(name: str) -> list[str]:
    """Other spellings of ``name`` a user may write (capitalised, title case, plural, synonyms)."""
    out = [name[:1].upper() + name[1:], name.title(), plural(name), *SYNONYMS.get(name.lower(), ())]
    return [v for v in dict.fromkeys(out) if v != name]


def phrasing(
    definitions: Mapping[str, str], definition_share: float, variant_share: float
) -> Callable[[str, random.Random], str]:
    """``ask(type, rng)``: a definition with ``definition_share``, a variant with ``variant_share``."""
    if not 0 <= definition_share <= 1 or not 0 <= variant_share <= 1 or definition_share + variant_share > 1:
        raise ValueError("definition and variant shares must be in [0, 1] and sum to at most 1")

    def ask(label: str, rng: random.Random) -> str:
        x = rng.random()
        if x < definition_share and label in definitions:
            return definitions[label]
        if definition_share <= x < definition_share + variant_share:
            other = variants(label)
            if other:
                return rng.choice(other)
        return label

    return ask
