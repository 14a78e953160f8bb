"""Corpus formats, one module each, shared by distill, tune and evaluate.

``conll``: CoNLL/BIO column files; ``reference``: the reference's conversation JSON (one record per
sentence and type); ``labels``: tag -> natural-language type maps; ``conversations``: sentences ->
training conversations and evaluation records; ``spacing``: natural spacing for tokenised text;
``docbin`` (spaCy ``.spacy`` files) and ``jsonl_spans`` (character-offset spans, as annotation tools
export) read a user's own annotations, ``annotated`` picks the reader and maps the labels.
"""

from .conll import DataFormatError, Sentence, decode_tags, read_conll, sentence_from_tokens
from .reference import Record, read_reference_json

__all__ = [
    "DataFormatError",
    "Record",
    "Sentence",
    "decode_tags",
    "read_conll",
    "read_reference_json",
    "sentence_from_tokens",
]
