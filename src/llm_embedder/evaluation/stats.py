"""How sure a leaderboard number is: bootstrap intervals over examples and paired tests between rows.

Every leaderboard column has one shape, which :class:`Sample` captures: per-example values in groups,
and the column's number = the mean over groups of ``transform(mean of the group's values)``.

- accuracy, nDCG, ICL score: the values are 0/1 or per-query scores, transform identity (MMLU
  averages per subject and ICL per task name first: those are the groups);
- perplexity: the values are per-example log-losses (mean NLL per token) and the transform is exp,
  so a resample's perplexity is exp of *its* mean log-loss, never a mean of perplexities (lrlm
  averages the perplexities of its files: those are the groups).

Intervals are percentile bootstrap intervals: a resample draws n examples with replacement from the
n test examples and computes the column as the evaluator would on that test set (a macro average
over the groups the resample holds; resampling within groups instead would give a one-question MMLU
subject no variance at all).  Two rows evaluated on the same examples are compared
by the paired bootstrap of the difference (interval) and by a paired permutation test (p-value):
under "no difference" each example's two results are exchangeable, so the test swaps them at random
(for one group and an identity transform, a sign flip of the per-example differences; for 0/1
values, the exact McNemar test) and recomputes the difference of the column's numbers.  With at most
``resamples`` distinct swaps the test enumerates them all (exact); otherwise it draws ``resamples``
and reports (hits + 1) / (resamples + 1).  Everything is seeded and vectorised.

Clustered examples (several questions cut from one article, turns of one conversation, requests for
one tool) are not independent: treating them as such makes intervals too narrow and p-values too
small.  A sample whose examples carry clusters is resampled by cluster instead (the unit is recorded):
the bootstrap draws C whole clusters with replacement from the C clusters (each drawn copy brings all
its examples, group labels kept), and the permutation test swaps the two rows' results of a whole
cluster at once.  Without clusters, every example is its own unit, as above.

A table tests many cells against one reference row; :func:`holm` adjusts their p-values for that
(Holm's step-down method, which controls the chance of any false mark at ``alpha``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from llm_embedder.evaluation.metrics import RETRIEVAL_METRICS

LEVEL = 0.95
ALPHA = 0.05
RESAMPLES = 10_000
SEED = 0
_CHUNK_ELEMENTS = 2_000_000  # resamples are drawn in blocks of about this many numbers (memory)
TRANSFORMS = {"identity": lambda x: x, "exp": np.exp}
MARKS = {"better": "▲", "worse": "▼", "same": "="}


@dataclass(frozen=True)
class Sample:
    """The per-example material of one leaderboard cell (see the module docstring)."""

    values: np.ndarray
    """float64 [n]: one value per example."""
    groups: np.ndarray
    """int [n]: each example's group, 0..G-1, every group non-empty."""
    transform: str = "identity"
    keys: tuple[Hashable, ...] | None = None
    """Which example each value belongs to, so that two rows are paired only on the same examples."""
    clusters: np.ndarray | None = None
    """int [n]: each example's cluster, 0..C-1, every cluster non-empty; None: each example its own."""
    unit: str = "example"
    """What one resampled unit is (``example``, or the clusters' kind: ``article``, ``tool``, ...)."""

    def __post_init__(self) -> None:
        if self.values.ndim != 1 or self.values.shape != self.groups.shape or not len(self.values):
            raise ValueError("a sample needs one value and one group per example, and at least one example")
        if self.transform not in TRANSFORMS:
            raise ValueError(f"unknown transform {self.transform!r}; known: {', '.join(TRANSFORMS)}")
        if self.keys is not None and len(self.keys) != len(self.values):
            raise ValueError(f"{len(self.keys)} keys for {len(self.values)} values")
        if self.clusters is not None and self.clusters.shape != self.values.shape:
            raise ValueError(f"{len(self.clusters)} clusters for {len(self.values)} values")

    @classmethod
    def of(
        cls,
        values: Sequence[float],
        groups: Sequence[Hashable] | None = None,
        transform: str = "identity",
        keys: Sequence[Hashable] | None = None,
        clusters: Sequence[Hashable] | None = None,
        unit: str | None = None,
    ) -> Sample:
        """From plain lists; ``groups`` and ``clusters`` may hold any labels (one group when omitted;
        no clusters when omitted: the unit is the example)."""
        codes = np.zeros(len(values), dtype=np.int64) if groups is None else _codes(groups)
        cluster_codes = None if clusters is None else _codes(clusters)
        return cls(
            np.asarray(values, dtype=np.float64),
            codes,
            transform,
            None if keys is None else tuple(keys),
            cluster_codes,
            unit or ("example" if clusters is None else "cluster"),
        )

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def units(self) -> int:
        """How many units a resample draws: clusters, or examples."""
        return self.n if self.clusters is None else int(self.clusters.max()) + 1

    @property
    def counts(self) -> np.ndarray:
        return np.bincount(self.groups)

    def group_sums(self) -> np.ndarray:
        return np.bincount(self.groups, weights=self.values, minlength=len(self.counts))


def _codes(labels: Sequence[Hashable]) -> np.ndarray:
    return np.unique(np.asarray([str(x) for x in labels]), return_inverse=True)[1].astype(np.int64).reshape(-1)


def _combine(sums: np.ndarray, counts: np.ndarray, transform: str) -> np.ndarray:
    """The column's number from group sums and sizes ``[..., G]``: the mean over the groups present
    (size > 0) of transform(group mean)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.where(counts > 0, counts, 1), np.nan)
    return np.nanmean(TRANSFORMS[transform](means), axis=-1)


def statistic(sample: Sample) -> float:
    """The column's number computed from the examples."""
    return float(_combine(sample.group_sums(), sample.counts, sample.transform))


def _cluster_tables(
    columns: list[np.ndarray], groups: np.ndarray, clusters: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray]:
    """Per cluster and group ``[C, G]``: each column's sum and the number of examples."""
    n_clusters, n_groups = int(clusters.max()) + 1, int(groups.max()) + 1
    cells = clusters * n_groups + groups
    size = n_clusters * n_groups
    sums = [np.bincount(cells, weights=v, minlength=size).reshape(n_clusters, n_groups) for v in columns]
    return sums, np.bincount(cells, minlength=size).reshape(n_clusters, n_groups).astype(np.float64)


def _cluster_bootstrap_sums(
    columns: list[np.ndarray], groups: np.ndarray, clusters: np.ndarray, resamples: int, rng: np.random.Generator
) -> tuple[list[np.ndarray], np.ndarray]:
    """As :func:`_bootstrap_sums`, drawing C whole clusters with replacement: a resample's group
    sums are the drawn clusters' sums, each counted as often as it was drawn."""
    tables, sizes_table = _cluster_tables(columns, groups, clusters)
    n_clusters, n_groups = sizes_table.shape
    sums = [np.empty((resamples, n_groups)) for _ in columns]
    sizes = np.empty((resamples, n_groups))
    block = max(1, _CHUNK_ELEMENTS // n_clusters)
    for start in range(0, resamples, block):
        stop = min(resamples, start + block)
        draws = rng.integers(0, n_clusters, size=(stop - start, n_clusters))
        rows = (draws + n_clusters * np.arange(stop - start)[:, None]).ravel()
        times = np.bincount(rows, minlength=(stop - start) * n_clusters).reshape(-1, n_clusters).astype(np.float64)
        sizes[start:stop] = times @ sizes_table
        for table, out in zip(tables, sums, strict=True):
            out[start:stop] = times @ table
    return sums, sizes


def _bootstrap_sums(
    columns: list[np.ndarray],
    groups: np.ndarray,
    resamples: int,
    rng: np.random.Generator,
    clusters: np.ndarray | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Group sums ``[resamples, G]`` of each value column and group sizes ``[resamples, G]`` on
    resamples of the examples (n draws with replacement), or of the clusters when given; all
    columns share the same draws (a paired bootstrap when there are two)."""
    if clusters is not None:
        return _cluster_bootstrap_sums(columns, groups, clusters, resamples, rng)
    n, n_groups = len(groups), int(groups.max()) + 1
    sums = [np.empty((resamples, n_groups)) for _ in columns]
    sizes = np.full((resamples, n_groups), float(n))
    block = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, resamples, block):
        stop = min(resamples, start + block)
        draws = rng.integers(0, n, size=(stop - start, n))
        if n_groups == 1:
            for values, out in zip(columns, sums, strict=True):
                out[start:stop, 0] = values[draws].sum(axis=1)
            continue
        cells = (groups[draws] + n_groups * np.arange(stop - start)[:, None]).ravel()  # (resample, group) of a draw
        length = (stop - start) * n_groups
        sizes[start:stop] = np.bincount(cells, minlength=length).reshape(-1, n_groups)
        for values, out in zip(columns, sums, strict=True):
            out[start:stop] = np.bincount(cells, weights=values[draws].ravel(), minlength=length).reshape(-1, n_groups)
    return sums, sizes


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


def bootstrap_distribution(sample: Sample, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """The column's number on each of ``resamples`` bootstrap resamples of the examples."""
    rng = np.random.default_rng(seed)
    (sums,), sizes = _bootstrap_sums([sample.values], sample.groups, resamples, rng, sample.clusters)
    return _combine(sums, sizes, sample.transform)


def bootstrap_interval(
    sample: Sample, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = SEED
) -> tuple[float, float]:
    """Percentile bootstrap interval of the column's number."""
    return _percentiles(bootstrap_distribution(sample, resamples, seed), level)


@dataclass(frozen=True)
class Comparison:
    """Row A against row B on the same examples."""

    difference: float
    """A's number minus B's."""
    interval: tuple[float, float]
    """Paired bootstrap interval of the difference."""
    p_value: float
    """Two-sided paired permutation test of "A and B do equally well"."""
    exact: bool
    """True when the test enumerated every swap (no Monte Carlo error)."""
    n: int
    unit: str = "example"
    """What was resampled and swapped: examples, or their clusters (``article``, ...)."""
    units: int = 0
    """How many of them."""

    def verdict(self, lower_is_better: bool, alpha: float = ALPHA) -> str:
        """``better``/``worse`` when A differs from B at level ``alpha`` (in the column's direction), else ``same``."""
        return verdict_of(self.difference, self.p_value, lower_is_better, alpha)


def verdict_of(difference: float, p_value: float, lower_is_better: bool, alpha: float = ALPHA) -> str:
    """``better``/``worse`` for A when ``p_value`` (raw or corrected) is below ``alpha``, in the column's
    direction; ``same`` (not significantly different) otherwise."""
    if p_value >= alpha or difference == 0:
        return "same"
    return "better" if (difference < 0) == lower_is_better else "worse"


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order: sorted ascending, the i-th smallest (from 0) is
    multiplied by m - i, capped at 1, and made non-decreasing along the sorted order.  A test is
    significant at ``alpha`` after correction when its adjusted p-value is below ``alpha``."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        adjusted[i] = running
    return adjusted


def check_paired(a: Sample, b: Sample) -> None:
    """A ValueError unless ``a`` and ``b`` hold results for the same examples, in the same groups and clusters."""
    if a.n != b.n:
        raise ValueError(f"the rows were evaluated on different examples ({a.n} and {b.n})")
    if a.keys is not None and b.keys is not None and a.keys != b.keys:
        raise ValueError("the rows were evaluated on different examples (their queries differ)")
    if not np.array_equal(a.groups, b.groups) or a.transform != b.transform:
        raise ValueError("the rows group their examples differently")
    same_clusters = (a.clusters is None) == (b.clusters is None) and (
        a.clusters is None or np.array_equal(a.clusters, b.clusters)
    )
    if not same_clusters or a.unit != b.unit:
        raise ValueError("the rows cluster their examples differently")


def _swap_sums(spread: np.ndarray, swaps: int | None, rng: np.random.Generator) -> np.ndarray:
    """How A's group sums change ``[R, G]`` under swaps of the units whose rows of ``spread`` ``[m, G]``
    hold b - a per group: all 2^m swaps when ``swaps`` is None, else ``swaps`` random ones."""
    m = len(spread)
    if swaps is None:
        flips = (np.arange(2**m)[:, None] >> np.arange(m)) & 1
        return flips.astype(np.float64) @ spread
    out = np.empty((swaps, spread.shape[1]))
    block = max(1, _CHUNK_ELEMENTS // m)
    for start in range(0, swaps, block):
        stop = min(swaps, start + block)
        out[start:stop] = (rng.random((stop - start, m)) < 0.5).astype(np.float64) @ spread
    return out


def paired_test(a: Sample, b: Sample, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = SEED) -> Comparison:
    """Difference of two rows' numbers on the same examples, its paired bootstrap interval and a
    permutation p-value (see the module docstring)."""
    check_paired(a, b)
    rng = np.random.default_rng(seed)
    counts, transform = a.counts, a.transform
    sums_a, sums_b = a.group_sums(), b.group_sums()
    observed = float(_combine(sums_a, counts, transform) - _combine(sums_b, counts, transform))

    (boot_a, boot_b), sizes = _bootstrap_sums([a.values, b.values], a.groups, resamples, rng, a.clusters)
    interval = _percentiles(_combine(boot_a, sizes, transform) - _combine(boot_b, sizes, transform), level)

    # One row per unit (example or cluster): swapping it adds its b - a to A's group sums.
    units = np.arange(a.n) if a.clusters is None else a.clusters
    (spread,), _ = _cluster_tables([b.values - a.values], a.groups, units)
    differs = np.zeros(a.units, dtype=bool)
    differs[units[a.values != b.values]] = True
    spread = spread[differs]  # swapping units with equal results changes nothing
    m = len(spread)
    if m == 0:
        return Comparison(observed, interval, 1.0, True, a.n, a.unit, a.units)
    exact = 2**m <= resamples
    swapped_a = sums_a + _swap_sums(spread, None if exact else resamples, rng)
    swapped_b = sums_a + sums_b - swapped_a  # each unit's pair of results is kept, only their order changes
    null = _combine(swapped_a, counts, transform) - _combine(swapped_b, counts, transform)
    hits = int(np.count_nonzero(np.abs(null) >= abs(observed) - 1e-9 * max(1.0, abs(observed))))
    p_value = hits / len(null) if exact else (hits + 1) / (len(null) + 1)
    return Comparison(observed, interval, min(1.0, p_value), exact, a.n, a.unit, a.units)


# ----------------------------------------------------------------------------- from the evaluators' details
_RETRIEVAL = re.compile(r"^(mrr|recall|ndcg)@(\d+)$")


def _keys(details: list[dict[str, Any]]) -> tuple[Hashable, ...]:
    """An example is its (file, line) for long texts, else its query."""
    return tuple((d["file"], d["line"]) if "file" in d and "line" in d else d.get("query") for d in details)


def _clustered(sample: Sample, details: list[dict[str, Any]]) -> Sample:
    """``sample`` with the clusters the details carry (``cluster``, and ``cluster_unit`` naming their
    kind), when every example has one; else as it is."""
    if not all(d.get("cluster") is not None for d in details):
        return sample
    kinds = {d.get("cluster_unit") for d in details}
    unit = kinds.pop() if len(kinds) == 1 and None not in kinds else "cluster"
    return dataclasses.replace(sample, clusters=_codes([d["cluster"] for d in details]), unit=str(unit))


def _read(main_metric: str, details: list[dict[str, Any]]) -> Sample:
    """Per-example values of a column from the ``details/`` records its evaluator wrote
    (KeyError/TypeError/ValueError when they do not carry them), clustered where they say."""
    return _clustered(_read_values(main_metric, details), details)


def _read_values(main_metric: str, details: list[dict[str, Any]]) -> Sample:
    keys = _keys(details)
    if main_metric == "perplexity":  # chat: one group; lrlm: one per file, averaged as the evaluator does
        groups = [d["file"] for d in details] if all("file" in d for d in details) else None
        return Sample.of([float(d["nll"]) for d in details], groups, "exp", keys)
    if main_metric == "score":  # in-context learning: mean over task names of their mean score
        return Sample.of([float(d["score"]) for d in details], [d["task_name"] for d in details], keys=keys)
    if main_metric == "accuracy":  # open QA: answer found; multiple choice: per subject when recorded
        if all("correct" in d for d in details):
            return Sample.of([float(d["correct"]) for d in details], keys=keys)
        groups = [d["subject"] for d in details] if all("subject" in d for d in details) else None
        return Sample.of([float(d["prediction"] == d["gold"]) for d in details], groups, keys=keys)
    match = _RETRIEVAL.match(main_metric)
    if match:
        metric, k = RETRIEVAL_METRICS[match[1]], int(match[2])
        values = []
        for d in details:
            grades = d.get("relevance") or [1.0] * len(d["relevant"])
            values.append(metric(d["retrieved"], dict(zip(d["relevant"], grades, strict=True)), k))
        return Sample.of(values, keys=keys)
    return Sample.of([float(d[main_metric]) for d in details], keys=keys)  # an evaluator that records it per example


def sample_from_details(
    main_metric: str, details: list[dict[str, Any]], expected: float | None = None
) -> Sample | None:
    """The :class:`Sample` of a column from its per-example details, or None when they do not carry
    what the column needs (e.g. details written by an older version) or, given ``expected`` (the
    cell's number), when they do not reproduce it: an interval must describe the number shown."""
    if not details:
        return None
    try:
        sample = _read(main_metric, details)
    except (KeyError, TypeError, ValueError):
        return None
    if expected is not None and not math.isclose(statistic(sample), expected, rel_tol=1e-6, abs_tol=1e-9):
        return None
    return sample
