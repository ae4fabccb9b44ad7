"""Query files in, hit files out: JSON lines, each query record kept as it is with its ``hits`` added."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llm_embedder.errors import InputError
from llm_embedder.fileio import iter_jsonl, write_jsonl
from llm_embedder.retrieval.searcher import Hit


def read_queries(path: str | Path, field: str = "query") -> list[dict[str, Any]]:
    """The records of a JSON-lines file of queries, the query text in ``field``.

    A line whose ``field`` is missing or no string raises :class:`InputError` naming the file, the
    line and the field.
    """
    records = []
    for number, record in iter_jsonl(path):
        if not isinstance(record.get(field), str):
            raise InputError(path, number, field, "missing or not a string")
        records.append(record)
    return records


def write_hits(path: str | Path, records: Sequence[dict[str, Any]], hits: Sequence[Sequence[Hit]]) -> None:
    """One line per query: its record with ``hits`` (``id``, ``score``, ``text`` of each, best first).

    Written under a temporary name, then renamed; ``records`` and ``hits`` must be of one length.
    """
    write_jsonl(
        path,
        (
            {**record, "hits": [{"id": h.id, "score": h.score, "text": h.text} for h in row]}
            for record, row in zip(records, hits, strict=True)
        ),
    )
