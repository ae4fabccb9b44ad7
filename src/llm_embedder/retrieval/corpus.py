"""Corpora as JSON lines: the text of each row is built from a key template such as ``{title} {text}``."""

from __future__ import annotations

import string
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
        fields = template_fields(key_template)
        if not fields:
            raise ValueError(f"key template {key_template!r} names no field, e.g. '{{title}} {{text}}'")
        texts, ids = [], []
        for number, record in iter_jsonl(path):
            for name in fields:
                if name not in record:
                    raise InputError(path, number, name, f"missing (key template {key_template!r})")
            texts.append(key_template.format(**record).strip())
            if id_field is None:
                ids.append(len(ids))
            else:
                value = record.get(id_field)
                if not isinstance(value, int) or isinstance(value, bool):
                    raise InputError(path, number, id_field, f"expected an integer id, got {value!r}")
                ids.append(value)
        if not texts:
            raise InputError(path, None, None, "the corpus is empty")
        if len(set(ids)) != len(ids):
            raise InputError(path, None, id_field, "ids are not unique")
        return cls(texts, ids)
