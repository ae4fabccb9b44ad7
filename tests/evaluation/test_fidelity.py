"""The fidelity rule against small cases worked out by hand or by brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from llm_embedder.evaluation.fidelity import (
    Rule,
    check_column,
    judge,
    overlaps,
    per_query_metric,
    row_cosines,
    top_k,
)


def test_row_cosines_by_hand():
    ref = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    cand = np.array([[1.0, 1.0], [0.0, -1.0], [6.0, 8.0]])
    np.testing.assert_allclose(row_cosines(ref, cand), [1 / math.sqrt(2), -1.0, 1.0])
    with pytest.raises(ValueError, match="one shape"):
        row_cosines(ref, cand[:2])


def test_top_k_and_overlap_by_brute_force():
    rng = np.random.default_rng(3)
    queries, keys = rng.normal(size=(5, 4)), rng.normal(size=(12, 4))
    noisy = keys + 0.3 * rng.normal(size=keys.shape)
    ref, cand = top_k(queries, keys, 10), top_k(queries, noisy, 10)
    for q in range(5):
        scores = [float(np.dot(queries[q], k)) for k in keys]
        assert list(ref[q]) == sorted(range(12), key=lambda j: -scores[j])[:10]
    expected = [len(set(ref[q]) & set(cand[q])) / 10 for q in range(5)]
    np.testing.assert_allclose(overlaps(ref, cand), expected)
    # fewer keys than k: the whole corpus is the top list, so the overlap is complete
    assert top_k(queries, keys[:3], 10).shape == (5, 3)
    np.testing.assert_allclose(overlaps(top_k(queries, keys[:3], 10), top_k(queries, noisy[:3], 10)), 1.0)


def test_per_query_metric_by_hand():
    rankings = np.array([[2, 0, 1], [1, 2, 0]])
    ids = ["a", "b", "c"]
    labels = [{"a": 1.0}, {"a": 1.0, "b": 1.0}]
    # query 0: "a" at rank 2 -> 1/log2(3); query 1: "b" at 1, "a" at 3 -> (1 + 1/2) / (1 + 1/log2(3))
    expected = [1 / math.log2(3), 1.5 / (1 + 1 / math.log2(3))]
    np.testing.assert_allclose(per_query_metric(rankings, ids, labels, "ndcg@10"), expected)
    np.testing.assert_allclose(per_query_metric(rankings, ids, labels, "mrr@1"), [0.0, 1.0])
    with pytest.raises(ValueError, match="unknown retrieval metric"):
        per_query_metric(rankings, ids, labels, "map@10")


def test_identical_results_pass():
    values = [0.2, 0.5, 1.0, 0.0]
    column = check_column("qa", "ndcg@10", values, values)
    assert column.passed and column.difference == 0 and column.interval == (0.0, 0.0)
    verdict = judge([column], np.ones(10), np.ones(4), Rule(min_queries=4))
    assert verdict.passed and verdict.reasons == () and verdict.queries == 4 and verdict.vectors == 10


def test_a_shift_on_every_query_fails_both_ways():
    ref = [0.2, 0.5, 0.7, 0.4]
    column = check_column("tool", "ndcg@5", ref, [v + 0.02 for v in ref])
    assert column.difference == pytest.approx(0.02)
    assert column.interval == pytest.approx((0.02, 0.02))
    assert len(column.reasons) == 2
    assert "excludes 0" in column.reasons[0] and "beyond +-0.01" in column.reasons[1]


def _enumerated_quantiles(means: list[float], level: float) -> tuple[float, float]:
    """Quantiles of a discrete distribution given as equally likely outcomes (no interpolation)."""
    values = np.sort(np.array(means))
    tail = (1 - level) / 2
    return float(values[int(np.floor(tail * len(values)))]), float(values[int(np.ceil((1 - tail) * len(values))) - 1])


def test_interval_by_enumerating_every_resample():
    """Differences [0.03, 0, 0]: the 3^3 equally likely resamples of the queries give means 0, 0.01,
    0.02, 0.03 with chances 8, 12, 6, 1 in 27; at level 0.6 the 20% and 80% points are 0 and 0.02.
    Clustered [a, b, b]: the 2^2 resamples of the clusters give 0.03, 0.01 (twice) and 0: 0 and 0.03."""
    ref, cand = [0.5, 0.5, 0.5], [0.53, 0.5, 0.5]
    rule = Rule(level=0.6)
    by_query = [np.mean([cand[i] - ref[i] for i in draw]) for draw in itertools.product(range(3), repeat=3)]
    assert _enumerated_quantiles(by_query, 0.6) == pytest.approx((0.0, 0.02))
    column = check_column("qa", "ndcg@10", ref, cand, rule=rule)
    assert column.interval == pytest.approx((0.0, 0.02)) and column.unit == "query" and column.units == 3

    members = {"a": [0], "b": [1, 2]}
    by_cluster = []
    for draw in itertools.product("ab", repeat=2):
        rows = [i for c in draw for i in members[c]]
        by_cluster.append(np.mean([cand[i] - ref[i] for i in rows]))
    assert _enumerated_quantiles(by_cluster, 0.6) == pytest.approx((0.0, 0.03))
    column = check_column("qa", "ndcg@10", ref, cand, clusters=["a", "b", "b"], unit="article", rule=rule)
    assert column.interval == pytest.approx((0.0, 0.03)) and column.unit == "article" and column.units == 2
    assert column.reasons == ("qa: ndcg@10 interval [+0.0000, +0.0300] reaches beyond +-0.01",)


def test_judge_names_every_failed_condition():
    ok = check_column("qa", "ndcg@10", [0.5] * 3, [0.5] * 3)
    bad = check_column("tool", "ndcg@5", [0.5] * 3, [0.6] * 3)
    cosines = np.array([1.0, 0.999, 0.996])  # mean 0.99833
    verdict = judge([ok, bad], cosines, np.array([1.0, 0.9, 0.8]), Rule(min_queries=600))
    assert not verdict.passed
    assert verdict.mean_cosine == pytest.approx(0.998333, abs=1e-6) and verdict.min_cosine == pytest.approx(0.996)
    assert verdict.overlap == pytest.approx(0.9)
    assert verdict.reasons[0] == "6 queries, fewer than the 600 the rule needs"
    assert verdict.reasons[1] == "mean cosine to float32 0.99833 < 0.999"
    assert verdict.reasons[2] == "top-10 overlap with float32 0.9000 < 0.95"
    assert all(r.startswith("tool: ") for r in verdict.reasons[3:]) and len(verdict.reasons) == 5
    record = verdict.to_dict()
    assert record["columns"][0]["passed"] is True and record["columns"][1]["passed"] is False
    assert record["rule"]["min_mean_cosine"] == 0.999


def test_thresholds_are_inclusive():
    """A value exactly at a threshold passes (0.5 and 0.25 are exact in binary)."""
    column = check_column("qa", "ndcg@10", [0.5, 0.5], [0.75, 0.5], rule=Rule(level=0.9, max_difference=0.25))
    assert column.interval == pytest.approx((0.0, 0.25)) and column.passed  # resample means 0, 0.125, 0.25
    rule = Rule(min_mean_cosine=0.5, min_overlap=0.5, min_queries=2)
    assert judge([column], np.array([0.25, 0.75]), np.array([0.5, 0.5]), rule).passed
    assert not judge([column], np.array([0.25, 0.74]), np.array([0.5, 0.5]), rule).passed
