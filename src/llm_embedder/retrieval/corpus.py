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
    """The fields a key template names; a malformed template (``{title``, ``{}``, ``{a.b}``) is an error."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ValueError(f"key template {template!r}: {exc}") from None
    for name in fields:
        if not name.isidentifier():
            raise ValueError(f"key template {template!r}: {{{name}}} is not a field name, e.g. '{{title}} {{text}}'")
    return fields


MAX_ID = 2**63 - 1


def id_problem(doc_id: int) -> str | None:
    """Why ``doc_id`` cannot be a document id, or None.  Ids are integers from 0 to 2**63 - 1: faiss
    and the BM25 index mark "no result" with -1, and store ids as 64-bit integers."""
    if doc_id < 0:
        return f"id {doc_id} is negative; ids are integers from 0 (the indexes use -1 for 'no result')"
    if doc_id > MAX_ID:
        return f"id {doc_id} is too large; ids are integers from 0 to 2**63 - 1"
    return None


@dataclass
class Corpus:
    """Texts with integer ids.  Ids are row numbers (0-based, as in the released corpora) unless
    the rows carry an integer ``id_field``."""

    texts: list[str]
    ids: list[int]

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.ids):
            raise ValueError(f"{len(self.texts)} texts but {len(self.ids)} ids")
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("ids are not unique")
        for doc_id in self.ids:
            problem = id_problem(doc_id) if isinstance(doc_id, int) else f"id {doc_id!r} is not an integer"
            if problem:
                raise ValueError(problem)

    def __len__(self) -> int:
        return len(self.texts)

    @classmethod
    def from_jsonl(
        cls, path: str | Path, key_template: str = DEFAULT_KEY_TEMPLATE, id_field: str | None = None
    ) -> Corpus:
        texts, ids = [], []
        for doc_id, text in iter_corpus(path, key_template, id_field, unique_ids=True):
            ids.append(doc_id)
            texts.append(text)
        return cls(texts, ids)


def iter_corpus(
    path: str | Path, key_template: str = DEFAULT_KEY_TEMPLATE, id_field: str | None = None, unique_ids: bool = False
) -> Iterator[tuple[int, str]]:
    """``(id, text)`` of each row, one at a time (a corpus larger than memory streams through).

    Ids are checked for uniqueness only with ``unique_ids`` (it keeps them all in memory; the index
    build checks them its own way)."""
    fields = template_fields(key_template)
    if not fields:
        raise ValueError(f"key template {key_template!r} names no field, e.g. '{{title}} {{text}}'")
    rows, seen = 0, {}
    for number, record in iter_jsonl(path):
        for name in fields:
            if name not in record:
                raise InputError(path, number, name, f"missing (key template {key_template!r})")
            if not isinstance(record[name], str):
                got = "null" if record[name] is None else type(record[name]).__name__
                raise InputError(path, number, name, f"expected a string, got {got}")
        if id_field is None:
            doc_id = rows
        else:
            doc_id = record.get(id_field)
            if not isinstance(doc_id, int) or isinstance(doc_id, bool):
                raise InputError(path, number, id_field, f"expected an integer id, got {doc_id!r}")
            problem = id_problem(doc_id)
            if problem:
                raise InputError(path, number, id_field, problem)
            if unique_ids:
                if doc_id in seen:
                    raise InputError(path, number, id_field, f"id {doc_id} is also the id of line {seen[doc_id]}")
                seen[doc_id] = number
        rows += 1
        yield doc_id, key_template.format(**{name: record[name] for name in fields}).strip()
    if not rows:
        raise InputError(path, None, None, "the corpus is empty")
