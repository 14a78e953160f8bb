"""Data-set tags -> the natural-language entity types a UniversalNER student is asked about.

The CrossNER maps (names and order) are the ones of the reference's zero-shot benchmark files
(``src/eval/test_data/CrossNER_*.json``): squashed tags are spelled out (``politicalparty`` ->
``political party``; note ``programlang`` -> ``program language``), ``organisation`` becomes
``organization``, and ``misc`` is not asked (``None``). Tags mapped to ``None`` are dropped from
the gold data as well, so they count neither for nor against a model.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

from .jsonfile import read_json

LabelMap = dict[str, str | None]

BUILTIN: dict[str, LabelMap] = {
    "crossner_ai": {
        "organisation": "organization",
        "university": "university",
        "location": "location",
        "person": "person",
        "conference": "conference",
        "country": "country",
        "researcher": "researcher",
        "task": "task",
        "product": "product",
        "algorithm": "algorithm",
        "programlang": "program language",
        "field": "field",
        "metrics": "metrics",
        "misc": None,
    },
    "crossner_literature": {
        "poem": "poem",
        "book": "book",
        "award": "award",
        "event": "event",
        "organisation": "organization",
        "literarygenre": "literary genre",
        "magazine": "magazine",
        "writer": "writer",
        "person": "person",
        "country": "country",
        "location": "location",
        "misc": None,
    },
    "crossner_music": {
        "country": "country",
        "location": "location",
        "musicalartist": "musical artist",
        "musicalinstrument": "musical instrument",
        "person": "person",
        "song": "song",
        "album": "album",
        "band": "band",
        "organisation": "organization",
        "musicgenre": "music genre",
        "event": "event",
        "award": "award",
        "misc": None,
    },
    "crossner_politics": {
        "politicalparty": "political party",
        "election": "election",
        "politician": "politician",
        "location": "location",
        "organisation": "organization",
        "country": "country",
        "event": "event",
        "person": "person",
        "misc": None,
    },
    "crossner_science": {
        "university": "university",
        "event": "event",
        "astronomicalobject": "astronomical object",
        "person": "person",
        "protein": "protein",
        "enzyme": "enzyme",
        "scientist": "scientist",
        "chemicalelement": "chemical element",
        "discipline": "discipline",
        "award": "award",
        "organisation": "organization",
        "location": "location",
        "chemicalcompound": "chemical compound",
        "country": "country",
        "academicjournal": "academic journal",
        "theory": "theory",
        "misc": None,
    },
    "conll2003": {"PER": "person", "ORG": "organization", "LOC": "location", "MISC": "miscellaneous"},
    "wnut17": {
        "person": "person",
        "location": "location",
        "group": "group",
        "creative-work": "creative work",
        "corporation": "corporation",
        "product": "product",
    },
    "bc5cdr": {"Chemical": "chemical", "Disease": "disease"},
    "ncbi_disease": {"Disease": "disease"},
    # the "eng" MIT Movie corpus (upper-case tags); the trivia10k13 variant is not mapped
    "mit_movie": {
        "ACTOR": "actor",
        "CHARACTER": "character",
        "DIRECTOR": "director",
        "GENRE": "genre",
        "PLOT": "plot",
        "RATING": "rating",
        "RATINGS_AVERAGE": "ratings average",
        "REVIEW": "review",
        "SONG": "song",
        "TITLE": "title",
        "TRAILER": "trailer",
        "YEAR": "year",
    },
    # names and order of the reference's mit-restaurant.json
    "mit_restaurant": {
        "Amenity": "Amenity",
        "Location": "Location",
        "Cuisine": "Cuisine",
        "Restaurant_Name": "Restaurant Name",
        "Rating": "Rating",
        "Hours": "Hours",
        "Price": "Price",
        "Dish": "Dish",
    },
    # --- the supervised training corpora of ../shared/data/supervised (never evaluation sets) ---
    # each corpus's own codes asked in natural language; FabNER's codes by their meaning in its paper
    # (Kumar & Starly 2021, "FabNER: information extraction from manufacturing process science ...")
    "anatem": {
        "Anatomical_system": "anatomical system",
        "Cancer": "cancer",
        "Cell": "cell",
        "Cellular_component": "cellular component",
        "Developing_anatomical_structure": "developing anatomical structure",
        "Immaterial_anatomical_entity": "immaterial anatomical entity",
        "Multi-tissue_structure": "multi-tissue structure",
        "Organ": "organ",
        "Organism_subdivision": "organism subdivision",
        "Organism_substance": "organism substance",
        "Pathological_formation": "pathological formation",
        "Tissue": "tissue",
    },
    "fabner": {
        "MATE": "material",
        "MANP": "manufacturing process",
        "MACEQ": "machine or equipment",
        "APPL": "application",
        "FEAT": "engineering feature",
        "PRO": "mechanical property",
        "CHAR": "process characterization",
        "PARA": "process parameter",
        "ENAT": "enabling technology",
        "CONPRI": "concept or principle",
        "MANS": "manufacturing standard",
        "BIOP": "biomedical",
    },
    "harveyner": {"POINT": "point of interest", "AREA": "area", "ROAD": "road", "RIVER": "river"},
    "multinerd": {
        "PER": "person",
        "LOC": "location",
        "ORG": "organization",
        "ANIM": "animal",
        "BIO": "biological entity",
        "CEL": "celestial body",
        "DIS": "disease",
        "EVE": "event",
        "FOOD": "food",
        "INST": "instrument",
        "MEDIA": "media",
        "PLANT": "plant",
        "MYTH": "mythological entity",
        "TIME": "time",
        "VEHI": "vehicle",
        "SUPER": "supernatural being",
        "PHY": "physical phenomenon",
    },
    "tweetner7": {
        "corporation": "corporation",
        "creative_work": "creative work",
        "event": "event",
        "group": "group",
        "location": "location",
        "person": "person",
        "product": "product",
    },
    "wikiann_en": {"PER": "person", "ORG": "organization", "LOC": "location"},
    "wikineural": {"PER": "person", "ORG": "organization", "LOC": "location", "MISC": None},
    "bc2gm": {"GENE": "gene"},
    "broad_twitter_corpus": {"PER": "person", "ORG": "organization", "LOC": "location"},
}

_ALIASES = {
    "ai": "crossner_ai",
    "literature": "crossner_literature",
    "music": "crossner_music",
    "politics": "crossner_politics",
    "science": "crossner_science",
    "conll03": "conll2003",
    "conll": "conll2003",
    "wnut": "wnut17",
    "wnut2017": "wnut17",
    "bc5cdrchem": "bc5cdr",
    "ncbi": "ncbi_disease",
    "ncbidisease": "ncbi_disease",
    "mitmovie": "mit_movie",
    "movie": "mit_movie",
    "mitrestaurant": "mit_restaurant",
    "restaurant": "mit_restaurant",
    "wikiann": "wikiann_en",
    "broadtwitter": "broad_twitter_corpus",
}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_LOOKUP = {_key(k): k for k in BUILTIN} | {_key(k): v for k, v in _ALIASES.items()}


def builtin_key(name: str) -> str | None:
    """The built-in map a data set name refers to (case, ``-``, ``_`` and split suffixes ignored).

    ``CrossNER_AI``, ``crossner-ai`` and ``ai`` all name ``crossner_ai``; ``wnut17_test`` names
    ``wnut17``.
    """
    k = _key(name)
    if k in _LOOKUP:
        return _LOOKUP[k]
    for suffix in ("train", "dev", "devel", "valid", "validation", "test"):
        if k.endswith(suffix) and k[: -len(suffix)] in _LOOKUP:
            return _LOOKUP[k[: -len(suffix)]]
    return None


def humanize(tag: str) -> str:
    """A readable type for an unmapped tag: ``creative-work`` -> ``creative work``."""
    return " ".join(re.sub(r"[_\-]+", " ", tag).split()).lower() or tag


def read_label_maps(path: str | Path) -> dict:
    """A ``--labels-map`` file: ``{tag: label|null}`` for every data set, or ``{name: {tag: label|null}}``."""
    path = Path(path)
    data = read_json(path, "label map file")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a label map must be a JSON object, not {type(data).__name__}")
    for key, value in data.items():
        if isinstance(value, dict):
            for tag, label in value.items():
                if label is not None and not isinstance(label, str):
                    raise ValueError(f"{path}: [{key!r}][{tag!r}] must be a string or null")
        elif value is not None and not isinstance(value, str):
            raise ValueError(f"{path}: {key!r} must be a string, null or an object of them")
    return data


def label_map_for(
    name: str, tags: Iterable[str] = (), override: Mapping | None = None, warn: bool = True
) -> LabelMap:
    """The ordered tag -> label map for one data set.

    Starts from the built-in map for ``name``, then applies ``override`` (a flat map, or the
    entry of a per-data-set map whose key names this set). A tag of ``tags`` still unmapped gets
    its ``humanize``-d name, with a warning when the data set has a built-in map.
    """
    key = builtin_key(name)
    out: LabelMap = dict(BUILTIN[key]) if key else {}
    if override:
        specific = {k: v for k, v in override.items() if isinstance(v, dict)}
        flat = {k: v for k, v in override.items() if not isinstance(v, dict)}
        out.update(flat)
        for k, v in specific.items():
            if k == name or _key(k) == _key(name) or (key and builtin_key(k) == key):
                out.update(v)
    unknown = [t for t in dict.fromkeys(tags) if t not in out]
    if unknown and key and warn:
        warnings.warn(
            f"data set {name!r}: tags {unknown} are not in the built-in {key!r} map; asked as "
            f"{[humanize(t) for t in unknown]} (set names or null in --labels-map)",
            stacklevel=2,
        )
    for t in sorted(unknown) if not key else unknown:
        out[t] = humanize(t)
    return out


def asked_labels(label_map: Mapping[str, str | None]) -> list[str]:
    """The distinct natural-language types asked, in map order."""
    return list(dict.fromkeys(v for v in label_map.values() if v))
