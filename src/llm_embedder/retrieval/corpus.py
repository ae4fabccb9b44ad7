"""Corpora as JSON lines: the text of each row is built from a key template such as ``{title} {text}``."""

from __future__ import annotations

import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from llm_embedder.errors import InputError
from llm_embedder.fileio import iter_jsonl

DEFAULT_KEY_TEMPLATE = "{text}"


def template_fields(template: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


@dataclass
class Corpus:
    """Texts with integer ids.  Ids are row numbers (0-based, as in the released corpora) unless
    the rows carry an integer ``id_field``."""

    texts: list[str]
    ids: list[int]

    def __len__(self) -> int:
        return len(self.texts)

    @classmethod
    def from_jsonl(
        cls, path: str | Path, key_template: str = DEFAULT_KEY_TEMPLATE, id_field: str | None = None
    ) -> Corpus:
        texts, ids = [], []
        for doc_id, text in iter_corpus(path, key_template, id_field):
            ids.append(doc_id)
            texts.append(text)
        if len(set(ids)) != len(ids):
            raise InputError(path, None, id_field, "ids are not unique")
        return cls(texts, ids)


def iter_corpus(
    path: str | Path, key_template: str = DEFAULT_KEY_TEMPLATE, id_field: str | None = None
) -> Iterator[tuple[int, str]]:
    """``(id, text)`` of each row, one at a time (a corpus larger than memory streams through).

    Ids are not checked for uniqueness here: that needs them all (see :class:`Corpus` and the index build)."""
    fields = template_fields(key_template)
    if not fields:
        raise ValueError(f"key template {key_template!r} names no field, e.g. '{{title}} {{text}}'")
    rows = 0
    for number, record in iter_jsonl(path):
        for name in fields:
            if name not in record:
                raise InputError(path, number, name, f"missing (key template {key_template!r})")
        if id_field is None:
            doc_id = rows
        else:
            doc_id = record.get(id_field)
            if not isinstance(doc_id, int) or isinstance(doc_id, bool):
                raise InputError(path, number, id_field, f"expected an integer id, got {doc_id!r}")
        rows += 1
        yield doc_id, key_template.format(**record).strip()
    if not rows:
        raise InputError(path, None, None, "the corpus is empty")
