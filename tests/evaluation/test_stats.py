"""Leaderboard statistics against slow references: bootstrap intervals against the exact bootstrap
distribution (every resample enumerated) and scipy, permutation p-values against all 2^n swaps and
the exact McNemar test, perplexity recomputed per resample, and the per-example reading of details."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from llm_embedder.evaluation.memory import perplexities
from llm_embedder.evaluation.metrics import retrieval_metrics
from llm_embedder.evaluation.stats import (
    Sample,
    bootstrap_distribution,
    bootstrap_interval,
    holm,
    paired_test,
    sample_from_details,
    statistic,
    verdict_of,
)


def column(values, groups, transform) -> float:
    """The column's number, the slow way: mean over the groups present of transform(mean of the group)."""
    f = math.exp if transform == "exp" else (lambda x: x)
    names = sorted(set(groups))
    return sum(f(np.mean([v for v, g in zip(values, groups, strict=True) if g == n])) for n in names) / len(names)


def exact_bootstrap(values, groups, transform) -> tuple[np.ndarray, np.ndarray]:
    """The column on every one of the n^n equally likely resamples of n examples."""
    outcomes = [
        column([values[i] for i in draw], [groups[i] for i in draw], transform)
        for draw in itertools.product(range(len(values)), repeat=len(values))
    ]
    return np.asarray(outcomes), np.full(len(outcomes), 1 / len(outcomes))


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values)
    cdf = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cdf, q)])


def exhaustive_p(a, b, groups, transform) -> float:
    """The permutation test the slow way: all 2^n ways to swap each example's two results."""
    observed = abs(column(a, groups, transform) - column(b, groups, transform))
    hits = 0
    for swap in itertools.product([False, True], repeat=len(a)):
        x = [bi if s else ai for ai, bi, s in zip(a, b, swap, strict=True)]
        y = [ai if s else bi for ai, bi, s in zip(a, b, swap, strict=True)]
        hits += abs(column(x, groups, transform) - column(y, groups, transform)) >= observed - 1e-9
    return hits / 2 ** len(a)


# ----------------------------------------------------------------------------- the column's number
def test_statistic_matches_the_evaluators_formulas():
    rng = np.random.default_rng(0)
    # Perplexity (lrlm): per file exp(mean NLL of its documents), then the mean over files, as memory.py.
    sums = {"a.json": [(-rng.uniform(20, 60), 10) for _ in range(4)], "b.json": [(-rng.uniform(20, 60), 12)] * 3}
    expected = np.mean([perplexities(s)["perplexity"] for s in sums.values()])
    nll = [-s / c for f in sums for s, c in sums[f]]
    files = [f for f in sums for _ in sums[f]]
    assert statistic(Sample.of(nll, files, "exp")) == pytest.approx(expected, rel=1e-12)
    # A macro average (MMLU per subject, ICL per task name).
    values, groups = [1, 0, 0, 1, 1, 1, 0], ["x", "x", "x", "y", "y", "z", "z"]
    assert statistic(Sample.of(values, groups)) == pytest.approx((1 / 3 + 1 + 0.5) / 3)


def test_sample_rejects_misshapen_input():
    with pytest.raises(ValueError, match="one value and one group per example"):
        Sample(np.zeros(3), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="unknown transform 'log'"):
        Sample.of([1.0], transform="log")
    with pytest.raises(ValueError, match="2 keys for 1 values"):
        Sample.of([1.0], keys=["q", "r"])


# ----------------------------------------------------------------------------- bootstrap intervals
@pytest.mark.parametrize(
    "values,groups,transform",
    [
        ([0.1, 0.5, 0.2, 0.9, 0.4], None, "identity"),  # 5^5 resamples
        ([2.1, 2.9, 3.4, 1.2, 1.9], ["a", "a", "a", "b", "b"], "exp"),  # lrlm-like: some resamples lack a file
        ([1.0, 0.0, 1.0, 1.0, 0.0], ["m", "m", "h", "p", "q"], "identity"),  # MMLU-like: 1-question subjects
    ],
    ids=["mean", "perplexity-by-file", "macro-accuracy"],
)
def test_bootstrap_matches_the_exact_bootstrap_distribution(values, groups, transform):
    labels = groups or ["g"] * len(values)
    outcomes, weights = exact_bootstrap(values, labels, transform)
    sample = Sample.of(values, groups, transform)
    drawn = bootstrap_distribution(sample, resamples=40_000, seed=1)
    spread = outcomes.max() - outcomes.min()
    assert drawn.mean() == pytest.approx(np.average(outcomes, weights=weights), abs=0.005 * spread)
    assert drawn.std() == pytest.approx(np.sqrt(np.cov(outcomes, aweights=weights, ddof=0)), rel=0.02)
    low, high = bootstrap_interval(sample, resamples=40_000, seed=1)
    assert low == pytest.approx(weighted_quantile(outcomes, weights, 0.025), abs=0.02 * spread)
    assert high == pytest.approx(weighted_quantile(outcomes, weights, 0.975), abs=0.02 * spread)


def test_bootstrap_interval_matches_scipy_percentile():
    scipy_stats = pytest.importorskip("scipy.stats")
    x = np.random.default_rng(3).gamma(2.0, 1.0, size=40)
    ours = bootstrap_interval(Sample.of(x), resamples=50_000, seed=0)
    theirs = scipy_stats.bootstrap((x,), np.mean, method="percentile", n_resamples=50_000, random_state=0)
    se = x.std() / math.sqrt(len(x))
    assert ours[0] == pytest.approx(theirs.confidence_interval.low, abs=0.1 * se)
    assert ours[1] == pytest.approx(theirs.confidence_interval.high, abs=0.1 * se)


def test_perplexity_is_recomputed_per_resample_by_hand():
    """NLLs 1 and 3: a resample holds (1,1), (1,3), (3,1) or (3,3), so its perplexity is e, e^2 or
    e^3 with probabilities 1/4, 1/2, 1/4 -- never the mean of per-example perplexities (e + e^3) / 2."""
    drawn = bootstrap_distribution(Sample.of([1.0, 3.0], transform="exp"), resamples=20_000, seed=0)
    atoms = np.exp([1.0, 2.0, 3.0])
    nearest = np.abs(drawn[:, None] - atoms).argmin(axis=1)
    assert np.allclose(drawn, atoms[nearest], rtol=1e-12)
    assert np.bincount(nearest, minlength=3) / len(drawn) == pytest.approx([0.25, 0.5, 0.25], abs=0.015)
    # The same for a longer example, resample by resample: the draws are numpy's, seeded.
    nll = np.random.default_rng(5).uniform(1, 4, size=7)
    draws = np.random.default_rng(9).integers(0, 7, size=(300, 7))
    by_hand = [math.exp(sum(nll[i] for i in row) / 7) for row in draws]
    assert bootstrap_distribution(Sample.of(nll, transform="exp"), resamples=300, seed=9) == pytest.approx(by_hand)


def test_bootstrap_is_seeded_and_degenerate_data_give_a_point():
    sample = Sample.of(np.random.default_rng(0).random(30))
    assert bootstrap_interval(sample, seed=4) == bootstrap_interval(sample, seed=4)
    assert bootstrap_interval(sample, seed=4) != bootstrap_interval(sample, seed=5)
    assert bootstrap_interval(Sample.of([0.25] * 8)) == pytest.approx((0.25, 0.25))


# ----------------------------------------------------------------------------- clusters
def exact_cluster_bootstrap(values, groups, clusters, transform) -> np.ndarray:
    """The column on every one of the C^C equally likely draws of C whole clusters, the slow way:
    each resample is the drawn clusters' examples put together."""
    names = sorted(set(clusters), key=clusters.index)
    members = {c: [i for i, x in enumerate(clusters) if x == c] for c in names}
    outcomes = []
    for draw in itertools.product(names, repeat=len(names)):
        rows = [i for c in draw for i in members[c]]
        outcomes.append(column([values[i] for i in rows], [groups[i] for i in rows], transform))
    return np.asarray(outcomes)


CLUSTERED = [
    # qa-like: one group, questions from three articles of different sizes
    ([0.9, 0.1, 0.4, 0.8, 0.7, 0.2], ["g"] * 6, ["a", "b", "b", "c", "c", "c"], "identity"),
    # lrlm-like perplexity over files, documents clustered across the files
    ([2.1, 2.9, 3.4, 1.2, 1.9, 2.5], ["f", "f", "h", "h", "f", "h"], ["x", "x", "y", "y", "z", "w"], "exp"),
]


@pytest.mark.parametrize("values,groups,clusters,transform", CLUSTERED, ids=["articles", "files-and-clusters"])
def test_cluster_bootstrap_matches_every_resample_of_whole_clusters(values, groups, clusters, transform):
    outcomes = exact_cluster_bootstrap(values, groups, clusters, transform)
    sample = Sample.of(values, groups, transform, clusters=clusters, unit="article")
    assert sample.units == len(set(clusters)) and sample.unit == "article"
    drawn = bootstrap_distribution(sample, resamples=40_000, seed=3)
    # every resample is one of the enumerated ones, and they come with their probabilities
    nearest = np.abs(drawn[:, None] - outcomes[None, :]).min(axis=1)
    assert nearest.max() < 1e-9
    spread = outcomes.max() - outcomes.min()
    assert drawn.mean() == pytest.approx(outcomes.mean(), abs=0.005 * spread)
    assert drawn.std() == pytest.approx(outcomes.std(), rel=0.02)
    weights = np.full(len(outcomes), 1 / len(outcomes))
    low, high = bootstrap_interval(sample, resamples=40_000, seed=3)
    assert low == pytest.approx(weighted_quantile(outcomes, weights, 0.025), abs=0.02 * spread)
    assert high == pytest.approx(weighted_quantile(outcomes, weights, 0.975), abs=0.02 * spread)


def test_cluster_bootstrap_of_one_example_clusters_is_the_example_bootstrap():
    """Same seed, same draws: resampling n one-example clusters is resampling the examples (labels
    that sort in example order, so that cluster k is example k)."""
    x = np.random.default_rng(2).random(17)
    groups = ["u" if i % 3 else "v" for i in range(17)]
    plain = bootstrap_distribution(Sample.of(x, groups), resamples=500, seed=8)
    clusters = [f"{i:02d}" for i in range(17)]
    clustered = bootstrap_distribution(Sample.of(x, groups, clusters=clusters), resamples=500, seed=8)
    assert clustered == pytest.approx(plain, rel=1e-12)


def exhaustive_cluster_p(a, b, groups, clusters, transform) -> float:
    """The cluster-level permutation test the slow way: all 2^C ways to swap whole clusters' results."""
    names = sorted(set(clusters))
    observed = abs(column(a, groups, transform) - column(b, groups, transform))
    hits = 0
    for swap in itertools.product([False, True], repeat=len(names)):
        flip = {c: s for c, s in zip(names, swap, strict=True)}
        x = [bi if flip[c] else ai for ai, bi, c in zip(a, b, clusters, strict=True)]
        y = [ai if flip[c] else bi for ai, bi, c in zip(a, b, clusters, strict=True)]
        hits += abs(column(x, groups, transform) - column(y, groups, transform)) >= observed - 1e-9
    return hits / 2 ** len(names)


@pytest.mark.parametrize("transform", ["identity", "exp"])
def test_cluster_p_value_equals_all_cluster_swaps(transform):
    rng = np.random.default_rng(4)
    n = 14
    clusters = [f"c{i % 5}" for i in range(n)]
    groups = ["x" if i % 4 else "y" for i in range(n)]
    a = rng.uniform(1, 3, n)
    b = a + rng.normal(0.3, 0.4, n)
    result = paired_test(
        Sample.of(a, groups, transform, clusters=clusters, unit="article"),
        Sample.of(b, groups, transform, clusters=clusters, unit="article"),
    )
    assert result.exact and result.unit == "article" and result.units == 5
    expected = exhaustive_cluster_p(list(a), list(b), groups, clusters, transform)
    assert result.p_value == pytest.approx(expected, abs=1e-12)


def test_a_few_clusters_cannot_give_a_small_p_value():
    """Forty questions from three articles, all better by the same margin: per example p is tiny, but
    only 2^3 swaps of whole articles exist, the two extreme ones as extreme as observed: p = 2/8."""
    a = np.linspace(0.2, 0.8, 40)
    clusters = [i % 3 for i in range(40)]
    per_example = paired_test(Sample.of(a + 0.1), Sample.of(a))
    per_article = paired_test(Sample.of(a + 0.1, clusters=clusters), Sample.of(a, clusters=clusters))
    assert per_example.p_value < 0.001 and per_article.exact and per_article.p_value == pytest.approx(2 / 8)
    assert per_example.unit == "example" and per_article.unit == "cluster"


def test_holm_by_hand():
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> 0.06 (never below the previous)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02, 0.02, 0.9]) == pytest.approx([0.06, 0.06, 0.9])  # ties: 3 x 0.02, then max(2 x 0.02, 0.06)
    assert holm([0.003]) == [0.003] and holm([]) == []
    # one raw p of 0.03 among 25 tests is no longer a mark
    assert verdict_of(0.1, 0.03, False) == "better" and verdict_of(0.1, holm([0.03] + [0.5] * 24)[0], False) == "same"


# ----------------------------------------------------------------------------- paired tests
CASES = {
    "mean": (lambda r, n: (r.random(n), r.random(n) + 0.2), None, "identity"),
    "accuracy": (lambda r, n: (r.random(n) < 0.6, r.random(n) < 0.4), None, "identity"),
    "perplexity": (lambda r, n: (r.uniform(2, 3, n), r.uniform(2.2, 3.2, n)), None, "exp"),
    "perplexity-by-file": (lambda r, n: (r.uniform(2, 3, n), r.uniform(2.1, 3.1, n)), "ab", "exp"),
    "macro-accuracy": (lambda r, n: (r.random(n) < 0.5, r.random(n) < 0.5), "xyz", "identity"),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("n", [5, 10])
def test_exact_p_value_equals_all_swaps(name, n):
    make, group_names, transform = CASES[name]
    rng = np.random.default_rng(n)
    a, b = (np.asarray(x, dtype=float) for x in make(rng, n))
    groups = [group_names[i % len(group_names)] for i in range(n)] if group_names else ["g"] * n
    result = paired_test(Sample.of(a, groups, transform), Sample.of(b, groups, transform), resamples=5000)
    assert result.exact
    assert result.p_value == pytest.approx(exhaustive_p(list(a), list(b), groups, transform), abs=1e-12)
    assert result.difference == pytest.approx(column(a, groups, transform) - column(b, groups, transform))


@pytest.mark.parametrize("name", ["mean", "perplexity-by-file"])
def test_monte_carlo_p_value_near_all_swaps(name):
    make, group_names, transform = CASES[name]
    n = 12
    rng = np.random.default_rng(7)
    a, b = make(rng, n)
    b = a + (b - a) * 0.25  # a p-value in the middle, where Monte Carlo error is largest
    groups = [group_names[i % len(group_names)] for i in range(n)] if group_names else ["g"] * n
    expected = exhaustive_p(list(a), list(b), groups, transform)
    result = paired_test(Sample.of(a, groups, transform), Sample.of(b, groups, transform), resamples=4000, seed=2)
    assert not result.exact  # 2^12 swaps > 4000 draws
    assert 0.01 < expected < 0.99
    assert result.p_value == pytest.approx(expected, abs=4 * math.sqrt(expected * (1 - expected) / 4000))


def test_accuracy_p_value_is_the_exact_mcnemar_test():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(11)
    a, b = rng.random(200) < 0.55, rng.random(200) < 0.45
    a[:12], b[:12] = True, False  # a few more discordant pairs that favour A
    result = paired_test(Sample.of(a), Sample.of(b), resamples=50_000, seed=0)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    mcnemar = scipy_stats.binomtest(only_a, only_a + only_b, 0.5).pvalue
    assert result.p_value == pytest.approx(mcnemar, abs=4 * math.sqrt(mcnemar * (1 - mcnemar) / 50_000) + 1e-4)
    # Few discordant pairs: the test enumerates their swaps and is McNemar's exactly.
    a, b = np.zeros(100), np.zeros(100)
    a[:7], b[7:9] = 1, 1
    result = paired_test(Sample.of(a), Sample.of(b))
    assert result.exact and result.p_value == pytest.approx(scipy_stats.binomtest(7, 9, 0.5).pvalue, abs=1e-12)


def test_known_significant_difference():
    rng = np.random.default_rng(0)
    base = rng.uniform(2.0, 4.0, size=120)  # per-example log-loss
    better = base - 0.05 + rng.normal(0, 0.02, size=120)
    result = paired_test(Sample.of(better, transform="exp"), Sample.of(base, transform="exp"))
    assert result.p_value < 0.001 and result.difference < 0
    assert result.interval[0] < result.difference < result.interval[1] < 0
    assert result.verdict(lower_is_better=True) == "better" and result.verdict(lower_is_better=False) == "worse"
    swapped = paired_test(Sample.of(base, transform="exp"), Sample.of(better, transform="exp"))
    assert swapped.difference == pytest.approx(-result.difference) and swapped.verdict(True) == "worse"


def test_known_null_cases():
    # Identical results: nothing to swap, p = 1.
    same = Sample.of([0.3, 0.7, 0.1])
    result = paired_test(same, same)
    assert (result.difference, result.interval, result.p_value) == (0.0, (0.0, 0.0), 1.0)
    assert result.verdict(False) == "same"
    # Differences that cancel exactly: observed 0, every swap is at least as extreme.
    a, b = np.array([0.5, 0.2, 0.9, 0.4]), np.array([0.6, 0.1, 0.7, 0.6])
    result = paired_test(Sample.of(a), Sample.of(b))
    assert result.difference == pytest.approx(0.0, abs=1e-15) and result.p_value == 1.0
    assert result.interval[0] < 0 < result.interval[1]


def test_permutation_test_holds_its_level_under_the_null():
    """Both rows drawn from one distribution: about 5% of seeds reject at 0.05."""
    rejections = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        a, b = rng.normal(size=25), rng.normal(size=25)
        rejections += paired_test(Sample.of(a), Sample.of(b), resamples=999, seed=seed).p_value < 0.05
    assert 3 <= rejections <= 20


def test_paired_test_refuses_rows_on_different_examples():
    with pytest.raises(ValueError, match=r"different examples \(3 and 2\)"):
        paired_test(Sample.of([1, 2, 3]), Sample.of([1, 2]))
    with pytest.raises(ValueError, match="queries differ"):
        paired_test(Sample.of([1, 2], keys=["p", "q"]), Sample.of([1, 2], keys=["p", "r"]))
    with pytest.raises(ValueError, match="group their examples differently"):
        paired_test(Sample.of([1, 2], ["x", "y"]), Sample.of([1, 2]))
    with pytest.raises(ValueError, match="cluster their examples differently"):
        paired_test(Sample.of([1, 2], clusters=["p", "p"]), Sample.of([1, 2]))


# ----------------------------------------------------------------------------- reading details/
def test_sample_from_details_reproduces_each_evaluators_number():
    lrlm = [{"file": f, "line": i, "nll": v} for f, i, v in [("a", 1, 2.0), ("a", 2, 3.0), ("b", 1, 1.0)]]
    expected = (math.exp(2.5) + math.exp(1.0)) / 2
    assert statistic(sample_from_details("perplexity", lrlm, expected)) == pytest.approx(expected)
    msc = [{"query": "q1", "nll": 2.0, "tokens": 5}, {"query": "q2", "nll": 4.0, "tokens": 9}]
    assert statistic(sample_from_details("perplexity", msc, math.exp(3.0))) == pytest.approx(math.exp(3.0))
    icl = [{"query": "q", "task_name": t, "score": s} for t, s in [("x", 1.0), ("x", 0.0), ("y", 1.0)]]
    assert statistic(sample_from_details("score", icl, 0.75)) == pytest.approx(0.75)
    mmlu = [{"query": "q", "subject": s, "prediction": p, "gold": 0} for s, p in [("m", 0), ("m", 1), ("h", 0)]]
    assert statistic(sample_from_details("accuracy", mmlu, 0.75)) == pytest.approx(0.75)
    popqa = [{"query": "q", "correct": c} for c in (1.0, 0.0, 0.0, 0.0)]
    assert statistic(sample_from_details("accuracy", popqa, 0.25)) == pytest.approx(0.25)
    rankings, labels = [[3, 1, 2], [0, 5, 4], [9, 8, 7]], [{1: 2.0, 2: 1.0}, {4: 1.0}, {6: 1.0}]
    tool = [
        {"query": f"q{i}", "retrieved": r, "relevant": list(lab), "relevance": list(lab.values())}
        for i, (r, lab) in enumerate(zip(rankings, labels, strict=True))
    ]
    ndcg = retrieval_metrics(rankings, labels, (3,))["ndcg@3"]
    assert statistic(sample_from_details("ndcg@3", tool, ndcg)) == pytest.approx(ndcg)
    assert sample_from_details("ndcg@3", tool).keys == ("q0", "q1", "q2")


def test_sample_from_details_reads_clusters_and_their_unit():
    details = [
        {"query": f"q{i}", "correct": i % 2, "cluster": t, "cluster_unit": "article"} for i, t in enumerate("aabbb")
    ]
    sample = sample_from_details("accuracy", details, 0.4)
    assert sample.unit == "article" and sample.units == 2 and list(sample.clusters) == [0, 0, 1, 1, 1]
    unnamed = sample_from_details("accuracy", [{k: v for k, v in d.items() if k != "cluster_unit"} for d in details])
    assert unnamed.unit == "cluster" and unnamed.units == 2
    details[0].pop("cluster")  # not every example has one: examples are the unit
    plain = sample_from_details("accuracy", details)
    assert plain.clusters is None and plain.unit == "example" and plain.units == 5


def test_sample_from_details_declines_what_it_cannot_reproduce():
    assert sample_from_details("perplexity", [{"query": "q"}]) is None  # older details without nll
    assert sample_from_details("perplexity", []) is None
    # MMLU details without subjects give the micro accuracy, not the cell's per-subject number.
    mmlu = [{"prediction": p, "gold": 0} for p in (0, 1, 0)]
    assert sample_from_details("accuracy", mmlu, expected=0.75) is None
    assert sample_from_details("accuracy", mmlu, expected=2 / 3) is not None
    assert sample_from_details("bleu", [{"query": "q", "bleu": 0.5}], 0.5).n == 1  # recorded per example
