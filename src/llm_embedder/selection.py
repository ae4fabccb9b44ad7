"""Choosing settings on the dev split: one comparable score per model, and the rule that picks.

Columns have different scales (nDCG, perplexity), so each is divided by the reference row's value
(the base encoder): 1.0 is "as good as base", above is better, whatever the column's direction
(lower-is-better columns use ``reference / value``).  A model's in-domain score is the mean of its
relative dev columns; its out-of-domain score the mean over the out-of-domain columns, and with
several out-of-domain checks (say, a held-out topic of the training sources and natural questions from
another source) the lowest of their means (:func:`worst_check`): a model must stay level on each.

The pick: the highest in-domain score among the models whose out-of-domain score is at least
``ood_floor`` (default 1.0: level with the base encoder out of domain, the issue's requirement); if
none qualifies, the one with the best out-of-domain score, and the result says so.

Ties: a dev score is a mean over a few hundred queries, so two models within ``dev_tie`` of the best
eligible dev score are not told apart by dev (default 0.03: by a rough estimate from the per-column
intervals, what a mean of three relative retrieval columns of 200 queries moves by chance).  Among
those tied models the one with the best out-of-domain score wins: when dev cannot choose, take the
option that is safer on data it was not chosen on (a model with no out-of-domain score counts as
the least safe).  ``dev_tie=0`` picks by dev alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def relative_scores(board: Mapping[str, Any], reference: str) -> dict[str, dict[str, float]]:
    """Each row's columns divided by ``reference``'s, oriented so that higher is better.

    ``board`` is a leaderboard as :func:`llm_embedder.evaluation.leaderboard.write_leaderboard` returns
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


def worst_check(scores: Mapping[str, float | None]) -> float | None:
    """The lowest mean relative score over the out-of-domain checks (every split of ``scores`` but
    ``dev``) that have one; None when none has."""
    checks = [v for split, v in scores.items() if split != "dev" and v is not None]
    return min(checks) if checks else None


DEV_TIE = 0.03


def choose(
    candidates: Mapping[str, Mapping[str, float | None]], ood_floor: float = 1.0, dev_tie: float = DEV_TIE
) -> dict[str, Any]:
    """Pick among ``{name: {"dev": score, "ood": score}}`` by the rule in the module docstring; the
    result names the models that tied on dev (``tied``)."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    if dev_tie < 0:
        raise ValueError(f"dev_tie must be >= 0, got {dev_tie}")
    eligible = {n: s for n, s in candidates.items() if s.get("ood") is None or s["ood"] >= ood_floor}
    tied: list[str] = []
    if eligible:
        top = max(eligible[n]["dev"] or 0.0 for n in eligible)
        tied = [n for n in eligible if (eligible[n]["dev"] or 0.0) >= top - dev_tie]
        # safer out of domain first, then the better dev score; names keep equal models deterministic
        best = max(tied, key=lambda n: (_or_worst(eligible[n].get("ood")), eligible[n]["dev"] or 0.0, n))
        rule = f"best in-domain dev score among models with out-of-domain score >= {ood_floor}"
        if len(tied) > 1:
            rule += f"; {len(tied)} models within {dev_tie} of it on dev: the best out-of-domain score among them"
    else:
        best = max(candidates, key=lambda n: candidates[n]["ood"] or 0.0)
        rule = f"no model reached out-of-domain score {ood_floor}: the best out-of-domain score"
    return {
        "chosen": best,
        "rule": rule,
        "tied": sorted(tied) if len(tied) > 1 else [],
        "candidates": {n: dict(s) for n, s in candidates.items()},
    }


def _or_worst(score: float | None) -> float:
    return float("-inf") if score is None else score
