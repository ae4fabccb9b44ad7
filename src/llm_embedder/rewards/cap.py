"""Which candidates of a training record the LLM scores: every positive and at most ``cap`` others.

Scoring time grows with the candidates, so the pipeline's score stage caps them per query before the
LLM sees them (the recipe's ``score.max_candidates``); ``benchmarks/score.py`` caps its sample the same way.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from llm_embedder.fileio import iter_jsonl, write_jsonl


def cap_candidates(record: dict[str, Any], cap: int) -> dict[str, Any]:
    """The candidates a record keeps for scoring: every positive, and at most ``cap`` others.

    - Positives never count against ``cap``: an ICL record with 3 positives keeps them and ``cap`` negatives.
    - Mined negatives (``neg`` of a record with positives) are ranked, hardest first: the first ``cap``.
    - Earlier parts of the same text, in document order (chat ``history``; lrlm ``neg``, which has no
      positives): the nearest ``ceil(cap / 2)`` and ``cap - ceil(cap / 2)`` older ones evenly spread over
      the rest (see :func:`spread`), kept in document order.

    Old ``teacher_scores`` and ``neg_index`` go: they were aligned with the uncapped lists.
    """
    record = {k: v for k, v in record.items() if k not in ("teacher_scores", "neg_index")}
    if "history" in record:
        record["history"] = [record["history"][i] for i in spread(len(record["history"]), cap)]
    elif not record.get("pos"):  # lrlm: earlier chunks, oldest first
        neg = record.get("neg", [])
        record["neg"] = [neg[i] for i in spread(len(neg), cap)]
    else:
        record["neg"] = record.get("neg", [])[:cap]
    return record


def spread(n: int, cap: int) -> list[int]:
    """Indices into ``n`` items in document order (the last nearest the query): all of them when ``n <= cap``,
    else the nearest ``ceil(cap / 2)`` plus the centres of ``cap - ceil(cap / 2)`` equal slices of the older
    ones, ascending."""
    if n <= cap:
        return list(range(n))
    near = math.ceil(cap / 2)
    older, span = cap - near, n - near
    # span > older, so the slice centres floor((2i + 1) * span / (2 * older)) are distinct.
    return [(2 * i + 1) * span // (2 * older) for i in range(older)] + list(range(span, n))


def cap_file(source: str | Path, target: str | Path, cap: int) -> None:
    """Every record of ``source`` capped (:func:`cap_candidates`) into ``target``."""
    write_jsonl(target, (cap_candidates(r, cap) for _, r in iter_jsonl(source)))


def scored_candidates(paths: list[Path]) -> int:
    """How many (candidate, answer) pairs the LLM scores for the records of ``paths``."""
    return sum(
        len(r.get("history") or r.get("pos", []) + r.get("neg", [])) * len(r.get("answers", [1]))
        for path in paths
        for _, r in iter_jsonl(path)
    )
