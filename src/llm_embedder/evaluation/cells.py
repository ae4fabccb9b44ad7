"""A results folder's cells and rows.

One cell per (evaluator, retriever spec): ``cells/<stem>.json`` holds its metrics and the key of what
they were made from, ``details/<stem>.jsonl`` one line per test example (what the intervals and paired
tests resample).  A row is a retriever spec, named on the leaderboard by its label (``LABEL=SPEC``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from llm_embedder.evaluation import stats
from llm_embedder.evaluation.retrievers import split_label
from llm_embedder.fileio import read_jsonl
from llm_embedder.fingerprint import settings_digest


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def cell_stem(evaluator_name: str, spec: str) -> str:
    """A cell's file name (less ``.json``): the spec as it is when it is already a safe name, else its
    slug plus a digest of the spec itself (``dense:r/mx/a`` and ``dense:r/mx-a`` flatten alike)."""
    slug = _slug(spec)
    return f"{evaluator_name}__{slug}" if slug == spec else f"{evaluator_name}__{slug[:60]}~{settings_digest(spec, 8)}"


def cell_file(out: Path, evaluator_name: str, spec: str) -> Path:
    return out / "cells" / f"{cell_stem(evaluator_name, spec)}.json"


def details_file(cell: Path) -> Path:
    """The per-example results that go with the cell file ``cell``."""
    return cell.parent.parent / "details" / f"{cell.stem}.jsonl"


def cell_sample(file: Path, cell: dict[str, Any]) -> stats.Sample | None:
    """The per-example results of a finished cell; None when absent or when they do not reproduce
    the cell's number (details of an older version)."""
    details = details_file(file)
    if not details.is_file():
        return None
    metric = cell["main_metric"]
    return stats.sample_from_details(metric, read_jsonl(details), expected=cell["metrics"][metric])


def find_row(specs: list[str], name: str, what: str = "row") -> str:
    """The spec of the row labelled ``name`` (or given as that very spec)."""
    for spec in specs:
        if name in (spec, split_label(spec)[0]):
            return spec
    raise ValueError(f"{what} {name!r} is not on the leaderboard; rows: {', '.join(split_label(s)[0] for s in specs)}")


def reference_row(specs: list[str], reference: str | None) -> str | None:
    """The spec of the row every other row is compared with: the one named ``reference``; by
    default the row labelled ``base`` if there is one."""
    if reference is not None:
        return find_row(specs, reference, "reference row")
    return next((s for s in specs if "base" in (s, split_label(s)[0])), None)
