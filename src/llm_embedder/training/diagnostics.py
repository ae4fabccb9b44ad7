"""How well a trained encoder ranks held-out training-format data: per-task top-1 agreement on dev files.

For each dev record the encoder ranks *all* its candidates (``pos + neg``, or ``history``) for its query
(with the task's instructions), and two fractions of queries are counted:

* ``teacher_top1`` (records with ``teacher_scores``, i.e. the distilled tasks): the student's top
  candidate is the teacher's top one (any of them when the teacher ties);
* ``positive_top1`` (records with labelled ``pos``): the student's top candidate is a labelled positive.

Each comes with its ``chance`` level (the mean over records of best candidates / candidates), so a
fraction can be read against what a random ranking would get.  Records with a single candidate say
nothing and are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llm_embedder.data.records import record_candidates
from llm_embedder.errors import InputError
from llm_embedder.fileio import iter_jsonl

if TYPE_CHECKING:
    from llm_embedder.models.embedder import Embedder


def _read(path: Path, limit: int | None) -> tuple[str, list[tuple[str, list[str], int, list[float] | None]]]:
    """(task, [(query, candidates, number of labelled positives, teacher scores or None)])."""
    task, rows = None, []
    for line, record in iter_jsonl(path):
        if not isinstance(record.get("query"), str) or not isinstance(record.get("task"), str):
            raise InputError(path, line, "query" if not isinstance(record.get("query"), str) else "task", "missing")
        task = task or record["task"]
        candidates = record_candidates(record, path, line)
        scores = record.get("teacher_scores")
        if scores is not None and (
            not isinstance(scores, list)
            or len(scores) != len(candidates)
            or not all(isinstance(s, int | float) and math.isfinite(s) for s in scores)
        ):
            raise InputError(path, line, "teacher_scores", f"expected {len(candidates)} finite numbers")
        n_pos = 0 if "history" in record else len(record.get("pos", []))
        if len(set(candidates)) > 1:
            rows.append((record["query"], candidates, n_pos, scores))
        if limit is not None and len(rows) >= limit:
            break
    if task is None:
        raise InputError(path, None, None, "no records")
    return task, rows


def training_diagnostics(
    embedder: Embedder,
    files: Sequence[str | Path],
    *,
    limit: int | None = None,
    print_fn: Callable[[str], None] | None = print,
) -> dict[str, dict[str, Any]]:
    """Top-1 agreement of ``embedder`` on each dev file (training format), keyed by the file's stem.

    Returns ``{name: {"task", "queries", "teacher_top1", "teacher_chance", "teacher_queries",
    "positive_top1", "positive_chance", "positive_queries"}}`` (a fraction is None where no record
    allows it); ``limit`` caps the records read per file; ``print_fn`` (None: silent) gets one line per file.
    """
    out: dict[str, dict[str, Any]] = {}
    for path in map(Path, files):
        task, rows = _read(path, limit)
        texts = list(dict.fromkeys(t for _, candidates, _, _ in rows for t in candidates))
        index = {t: i for i, t in enumerate(texts)}
        keys = embedder.encode_keys(texts, task) if texts else None
        queries = embedder.encode_queries([q for q, _, _, _ in rows], task) if rows else None
        teacher, teacher_chance, positive, positive_chance = [], [], [], []
        for row, (_, candidates, n_pos, scores) in enumerate(rows):
            assert keys is not None and queries is not None
            sims = keys[[index[t] for t in candidates]] @ queries[row]
            top = candidates[int(np.argmax(sims))]
            distinct = len(set(candidates))
            if scores is not None:
                best = {candidates[i] for i, s in enumerate(scores) if s == max(scores)}
                teacher.append(top in best)
                teacher_chance.append(len(best) / distinct)
            if n_pos:
                labelled = set(candidates[:n_pos])
                positive.append(top in labelled)
                positive_chance.append(len(labelled) / distinct)
        out[path.stem] = {
            "task": task,
            "queries": len(rows),
            "teacher_top1": _mean(teacher),
            "teacher_chance": _mean(teacher_chance),
            "teacher_queries": len(teacher),
            "positive_top1": _mean(positive),
            "positive_chance": _mean(positive_chance),
            "positive_queries": len(positive),
        }
        if print_fn is not None:
            print_fn(diagnostics_line(path.stem, out[path.stem]))
    return out


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def diagnostics_line(name: str, d: dict[str, Any]) -> str:
    """``dev qa (qa): student top = teacher top 41.0% of 100 (chance 14.3%); positive first 38.0% of 100 (...)``."""
    parts = []
    if d["teacher_top1"] is not None:
        parts.append(
            f"student top = teacher top {d['teacher_top1']:.1%} of {d['teacher_queries']} "
            f"(chance {d['teacher_chance']:.1%})"
        )
    if d["positive_top1"] is not None:
        parts.append(
            f"positive first {d['positive_top1']:.1%} of {d['positive_queries']} (chance {d['positive_chance']:.1%})"
        )
    return f"dev {name} ({d['task']}): " + ("; ".join(parts) or "nothing to measure (no teacher scores, no positives)")
