"""The fidelity rule: may a faster encoding (another backend or dtype) stand in for float32?

A candidate is compared with the float32 reference on the same queries and keys, of retrieval
columns whose per-query metric (nDCG) is known.  It passes when all of these hold:

- the mean cosine between its vectors and float32's (queries and keys together) is at least 0.999;
- its top-10 keys share at least 95% of float32's top-10 (mean over queries);
- on every column, the paired difference of the column's metric (candidate minus float32) has a
  95% bootstrap interval (:func:`llm_embedder.evaluation.stats.paired_test`; whole clusters
  resampled where the column's queries carry them) that contains 0 and lies within +-0.01;
- the columns hold at least 600 queries in all.  On a handful of queries one swapped rank moves
  nDCG by more than the tolerance, so a small test cannot tell noise from a real change.

The inputs are plain arrays, so the rule is the same whoever encodes (``benchmarks/encode.py
--fidelity`` applies it to every backend on the demo's test and ood-test retrieval columns).
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from llm_embedder.evaluation.metrics import RETRIEVAL_METRICS
from llm_embedder.evaluation.stats import LEVEL, RESAMPLES, SEED, Sample, paired_test

_METRIC = re.compile(r"^(mrr|recall|ndcg)@(\d+)$")


@dataclass(frozen=True)
class Rule:
    """The thresholds of the rule (the defaults are the project's)."""

    min_mean_cosine: float = 0.999
    min_overlap: float = 0.95
    overlap_k: int = 10
    max_difference: float = 0.01
    min_queries: int = 600
    level: float = LEVEL
    resamples: int = RESAMPLES
    seed: int = SEED


RULE = Rule()


@dataclass(frozen=True)
class ColumnCheck:
    """One column: the candidate's metric against float32's on the same queries."""

    name: str
    metric: str
    queries: int
    unit: str
    """What the bootstrap resampled: ``query``, or the column's clusters (``article``, ``tool`` ...)."""
    units: int
    reference: float
    candidate: float
    difference: float
    """candidate minus reference."""
    interval: tuple[float, float]
    reasons: tuple[str, ...] = ()
    """Why the column fails the rule; empty when it passes."""

    @property
    def passed(self) -> bool:
        return not self.reasons


@dataclass(frozen=True)
class Verdict:
    """The rule applied to one candidate encoding."""

    passed: bool
    reasons: tuple[str, ...]
    mean_cosine: float
    min_cosine: float
    overlap: float
    """Mean over queries of the share of float32's top-k that the candidate's top-k holds."""
    queries: int
    vectors: int
    columns: tuple[ColumnCheck, ...] = field(default=())
    rule: Rule = RULE

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["columns"] = [asdict(c) | {"passed": c.passed} for c in self.columns]
        return out


def row_cosines(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Cosine between each row of ``reference`` and the same row of ``candidate`` (float64)."""
    a, b = np.asarray(reference, dtype=np.float64), np.asarray(candidate, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"expected two [n, d] arrays of one shape, got {a.shape} and {b.shape}")
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(1) / np.where(norms > 0, norms, 1.0)


def top_k(queries: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the ``k`` keys of largest inner product with each query, best first (ties: lower
    index first), ``[n, min(k, len(keys))]``; as a Flat inner-product index ranks them."""
    scores = np.asarray(queries, dtype=np.float64) @ np.asarray(keys, dtype=np.float64).T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def overlaps(reference_top: np.ndarray, candidate_top: np.ndarray) -> np.ndarray:
    """Per query, the share of the reference's top-k that the candidate's top-k holds."""
    if reference_top.shape != candidate_top.shape:
        raise ValueError(f"top-k lists of different shapes: {reference_top.shape} and {candidate_top.shape}")
    width = max(reference_top.shape[1], 1)
    return np.array([len(set(a) & set(b)) / width for a, b in zip(reference_top, candidate_top, strict=True)])


def per_query_metric(
    rankings: np.ndarray, ids: Sequence[Hashable], labels: Sequence[Mapping[Hashable, float]], metric: str
) -> np.ndarray:
    """``metric`` (``ndcg@10``, ``mrr@5``, ``recall@3`` ...) of each query's ranking (rows into ``ids``)."""
    match = _METRIC.match(metric)
    if not match:
        raise ValueError(f"unknown retrieval metric {metric!r}; e.g. ndcg@10, mrr@5, recall@3")
    fn, k = RETRIEVAL_METRICS[match[1]], int(match[2])
    return np.array([fn([ids[j] for j in row], lab, k) for row, lab in zip(rankings, labels, strict=True)])


def check_column(
    name: str,
    metric: str,
    reference: Sequence[float],
    candidate: Sequence[float],
    clusters: Sequence[Hashable] | None = None,
    unit: str | None = None,
    rule: Rule = RULE,
) -> ColumnCheck:
    """The column's part of the rule: the paired difference of the per-query ``metric`` (candidate minus
    reference) and its bootstrap interval, resampling whole ``clusters`` when given."""
    if len(reference) != len(candidate) or not len(reference):
        raise ValueError(f"column {name}: {len(reference)} reference values and {len(candidate)} candidate values")
    ref = Sample.of(reference, clusters=clusters, unit=unit if clusters is not None else "query")
    cand = Sample.of(candidate, clusters=clusters, unit=unit if clusters is not None else "query")
    test = paired_test(cand, ref, level=rule.level, resamples=rule.resamples, seed=rule.seed)
    low, high = test.interval
    reasons = []
    if not low <= 0 <= high:
        reasons.append(
            f"{name}: {metric} moved by {test.difference:+.4f}, interval [{low:+.4f}, {high:+.4f}] excludes 0"
        )
    if low < -rule.max_difference or high > rule.max_difference:
        reasons.append(f"{name}: {metric} interval [{low:+.4f}, {high:+.4f}] reaches beyond +-{rule.max_difference:g}")
    return ColumnCheck(
        name=name,
        metric=metric,
        queries=test.n,
        unit=test.unit,
        units=test.units,
        reference=float(np.mean(reference)),
        candidate=float(np.mean(candidate)),
        difference=test.difference,
        interval=(low, high),
        reasons=tuple(reasons),
    )


def judge(
    columns: Sequence[ColumnCheck], cosines: np.ndarray, query_overlaps: np.ndarray, rule: Rule = RULE
) -> Verdict:
    """The verdict from the columns' checks, every vector's cosine to float32 (queries and keys) and
    every query's top-k overlap with float32."""
    cosines, query_overlaps = np.asarray(cosines, dtype=np.float64), np.asarray(query_overlaps, dtype=np.float64)
    if not len(cosines) or not len(query_overlaps) or not columns:
        raise ValueError("the rule needs vectors, queries and at least one column")
    mean_cos, overlap = float(cosines.mean()), float(query_overlaps.mean())
    queries = sum(c.queries for c in columns)
    reasons: list[str] = []
    if queries < rule.min_queries:
        reasons.append(f"{queries} queries, fewer than the {rule.min_queries} the rule needs")
    if mean_cos < rule.min_mean_cosine:
        reasons.append(f"mean cosine to float32 {mean_cos:.5f} < {rule.min_mean_cosine}")
    if overlap < rule.min_overlap:
        reasons.append(f"top-{rule.overlap_k} overlap with float32 {overlap:.4f} < {rule.min_overlap}")
    for column in columns:
        reasons.extend(column.reasons)
    return Verdict(
        passed=not reasons,
        reasons=tuple(reasons),
        mean_cosine=mean_cos,
        min_cosine=float(cosines.min()),
        overlap=overlap,
        queries=queries,
        vectors=len(cosines),
        columns=tuple(columns),
        rule=rule,
    )
