"""Choosing settings on the dev split: one comparable score per model, and the rule that picks.

Columns have different scales (nDCG, perplexity), so each is divided by the reference row's value
(the base encoder): 1.0 is "as good as base", above is better, whatever the column's direction
(lower-is-better columns use ``reference / value``).  A model's in-domain score is the mean of its
relative dev columns; its out-of-domain score the mean over the out-of-domain columns.

The pick: the highest in-domain score among the models whose out-of-domain score is at least
``ood_floor`` (default 1.0: level with the base encoder out of domain, the issue's requirement); if
none qualifies, the one with the best out-of-domain score, and the result says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def relative_scores(board: Mapping[str, Any], reference: str) -> dict[str, dict[str, float]]:
    """Each row's columns divided by ``reference``'s, oriented so that higher is better.

    ``board`` is a leaderboard as :func:`llm_embedder.evaluation.harness.write_leaderboard` returns
    it; rows are keyed by retriever spec, and ``reference`` names one of them (spec or label).
    Columns where either value is missing or the reference is zero are left out.
    """
    rows = board["rows"]
    ref_key = _find_row(rows, reference)
    out: dict[str, dict[str, float]] = {}
    for spec, values in rows.items():
        scores = {}
        for column in board["columns"]:
            name = column["evaluator"]
            value, base = _value(values.get(name)), _value(rows[ref_key].get(name))
            if value is None or base is None or base == 0 or value == 0:
                continue
            scores[name] = base / value if column["lower_is_better"] else value / base
        out[spec] = scores
    return out


def _value(cell: Any) -> float | None:
    """A leaderboard cell: a bare number, or a dict carrying ``value`` (cells with intervals)."""
    if isinstance(cell, Mapping):
        cell = cell.get("value")
    return None if cell is None else float(cell)


def _find_row(rows: Mapping[str, Any], name: str) -> str:
    for spec in rows:
        if spec == name or spec.split("=", 1)[0] == name:
            return spec
    raise ValueError(f"no row {name!r} on the leaderboard; rows: {', '.join(rows)}")


def mean_score(scores: Mapping[str, float]) -> float | None:
    return sum(scores.values()) / len(scores) if scores else None


def choose(candidates: Mapping[str, Mapping[str, float | None]], ood_floor: float = 1.0) -> dict[str, Any]:
    """Pick among ``{name: {"dev": score, "ood": score}}`` by the rule in the module docstring."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    eligible = {n: s for n, s in candidates.items() if s.get("ood") is None or s["ood"] >= ood_floor}
    if eligible:
        best = max(eligible, key=lambda n: (eligible[n]["dev"] or 0.0))
        rule = f"best in-domain dev score among models with out-of-domain score >= {ood_floor}"
    else:
        best = max(candidates, key=lambda n: (candidates[n]["ood"] or 0.0))
        rule = f"no model reached out-of-domain score {ood_floor}: the best out-of-domain score"
    return {"chosen": best, "rule": rule, "candidates": {n: dict(s) for n, s in candidates.items()}}
