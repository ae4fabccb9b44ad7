"""Corpora as JSON lines: the text of each row is built from a key template such as ``{title} {text}``."""

from __future__ import annotations

import string
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

    def __len__(self) -> int:
        return len(self.texts)

    @classmethod
    def from_jsonl(
        cls, path: str | Path, key_template: str = DEFAULT_KEY_TEMPLATE, id_field: str | None = None
    ) -> Corpus:
        fields = template_fields(key_template)
        if not fields:
            raise ValueError(f"key template {key_template!r} names no field, e.g. '{{title}} {{text}}'")
        texts, ids, seen = [], [], {}
        for number, record in iter_jsonl(path):
            for name in fields:
                if name not in record:
                    raise InputError(path, number, name, f"missing (key template {key_template!r})")
                if not isinstance(record[name], str):
                    got = "null" if record[name] is None else type(record[name]).__name__
                    raise InputError(path, number, name, f"expected a string, got {got}")
            texts.append(key_template.format(**{name: record[name] for name in fields}).strip())
            if id_field is None:
                ids.append(len(ids))
            else:
                value = record.get(id_field)
                if not isinstance(value, int) or isinstance(value, bool):
                    raise InputError(path, number, id_field, f"expected an integer id, got {value!r}")
                if value in seen:
                    raise InputError(path, number, id_field, f"id {value} is also the id of line {seen[value]}")
                seen[value] = number
                ids.append(value)
        if not texts:
            raise InputError(path, None, None, "the corpus is empty")
        return cls(texts, ids)
