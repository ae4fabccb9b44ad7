"""Embedding files: the texts of a JSON-lines file in, a ``.npy`` array of their embeddings out."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llm_embedder.errors import InputError
from llm_embedder.fileio import atomic_path, iter_jsonl


def read_texts(path: str | Path, field: str = "query") -> list[str]:
    """The string ``field`` of every line of a JSON-lines file, in order.

    A line without it, or with a value that is no string, raises :class:`InputError` naming the file,
    the line and the field.
    """
    texts = []
    for number, record in iter_jsonl(path):
        if field not in record:
            raise InputError(path, number, field, "missing")
        value = record[field]
        if not isinstance(value, str):
            raise InputError(path, number, field, f"expected a string, got {type(value).__name__}")
        texts.append(value)
    return texts


def save_embeddings(path: str | Path, vectors: np.ndarray) -> None:
    """Write ``vectors`` as a ``.npy`` file (under a temporary name, then renamed: never half a file)."""
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        np.save(handle, vectors)
