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
"""

from __future__ import annotations

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

    def __post_init__(self) -> None:
        if self.values.ndim != 1 or self.values.shape != self.groups.shape or not len(self.values):
            raise ValueError("a sample needs one value and one group per example, and at least one example")
        if self.transform not in TRANSFORMS:
            raise ValueError(f"unknown transform {self.transform!r}; known: {', '.join(TRANSFORMS)}")
        if self.keys is not None and len(self.keys) != len(self.values):
            raise ValueError(f"{len(self.keys)} keys for {len(self.values)} values")

    @classmethod
    def of(
        cls,
        values: Sequence[float],
        groups: Sequence[Hashable] | None = None,
        transform: str = "identity",
        keys: Sequence[Hashable] | None = None,
    ) -> Sample:
        """From plain lists; ``groups`` may hold any labels (one group when omitted)."""
        if groups is None:
            codes = np.zeros(len(values), dtype=np.int64)
        else:
            codes = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)[1].astype(np.int64)
        return cls(np.asarray(values, dtype=np.float64), codes, transform, None if keys is None else tuple(keys))

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def counts(self) -> np.ndarray:
        return np.bincount(self.groups)

    def group_sums(self) -> np.ndarray:
        return np.bincount(self.groups, weights=self.values, minlength=len(self.counts))


def _combine(sums: np.ndarray, counts: np.ndarray, transform: str) -> np.ndarray:
    """The column's number from group sums and sizes ``[..., G]``: the mean over the groups present
    (size > 0) of transform(group mean)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.where(counts > 0, counts, 1), np.nan)
    return np.nanmean(TRANSFORMS[transform](means), axis=-1)


def statistic(sample: Sample) -> float:
    """The column's number computed from the examples."""
    return float(_combine(sample.group_sums(), sample.counts, sample.transform))


def _bootstrap_sums(
    columns: list[np.ndarray], groups: np.ndarray, resamples: int, rng: np.random.Generator
) -> tuple[list[np.ndarray], np.ndarray]:
    """Group sums ``[resamples, G]`` of each value column and group sizes ``[resamples, G]`` on
    resamples of the examples (n draws with replacement); all columns share the same draws (a
    paired bootstrap when there are two)."""
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
    (sums,), sizes = _bootstrap_sums([sample.values], sample.groups, resamples, rng)
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

    def verdict(self, lower_is_better: bool, alpha: float = ALPHA) -> str:
        """``better``/``worse`` when A differs from B at level ``alpha`` (in the column's direction), else ``same``."""
        if self.p_value >= alpha or self.difference == 0:
            return "same"
        return "better" if (self.difference < 0) == lower_is_better else "worse"


def check_paired(a: Sample, b: Sample) -> None:
    """A ValueError unless ``a`` and ``b`` hold results for the same examples, in the same groups."""
    if a.n != b.n:
        raise ValueError(f"the rows were evaluated on different examples ({a.n} and {b.n})")
    if a.keys is not None and b.keys is not None and a.keys != b.keys:
        raise ValueError("the rows were evaluated on different examples (their queries differ)")
    if not np.array_equal(a.groups, b.groups) or a.transform != b.transform:
        raise ValueError("the rows group their examples differently")


def _swap_sums(
    delta: np.ndarray, groups: np.ndarray, n_groups: int, swaps: int | None, rng: np.random.Generator
) -> np.ndarray:
    """How A's group sums change ``[R, G]`` under swaps of the examples with ``delta`` = b - a != 0:
    all 2^m swaps when ``swaps`` is None, else ``swaps`` random ones."""
    m = len(delta)
    spread = np.zeros((m, n_groups))
    spread[np.arange(m), groups] = delta  # swapping example j adds delta_j to its group's sum
    if swaps is None:
        flips = (np.arange(2**m)[:, None] >> np.arange(m)) & 1
        return flips.astype(np.float64) @ spread
    out = np.empty((swaps, n_groups))
    block = max(1, _CHUNK_ELEMENTS // m)
    for start in range(0, swaps, block):
        stop = min(swaps, start + block)
        out[start:stop] = (rng.random((stop - start, m)) < 0.5).astype(np.float64) @ spread
    return out


def paired_test(
    a: Sample, b: Sample, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = SEED
) -> Comparison:
    """Difference of two rows' numbers on the same examples, its paired bootstrap interval and a
    permutation p-value (see the module docstring)."""
    check_paired(a, b)
    rng = np.random.default_rng(seed)
    counts, transform = a.counts, a.transform
    sums_a, sums_b = a.group_sums(), b.group_sums()
    observed = float(_combine(sums_a, counts, transform) - _combine(sums_b, counts, transform))

    (boot_a, boot_b), sizes = _bootstrap_sums([a.values, b.values], a.groups, resamples, rng)
    interval = _percentiles(_combine(boot_a, sizes, transform) - _combine(boot_b, sizes, transform), level)

    differ = a.values != b.values  # swapping equal results changes nothing
    m = int(differ.sum())
    if m == 0:
        return Comparison(observed, interval, 1.0, True, a.n)
    exact = 2**m <= resamples
    shift = _swap_sums(
        (b.values - a.values)[differ], a.groups[differ], len(counts), None if exact else resamples, rng
    )
    swapped_a = sums_a + shift
    swapped_b = sums_a + sums_b - swapped_a  # each example's pair of results is kept, only their order changes
    null = _combine(swapped_a, counts, transform) - _combine(swapped_b, counts, transform)
    hits = int(np.count_nonzero(np.abs(null) >= abs(observed) - 1e-9 * max(1.0, abs(observed))))
    p_value = hits / len(null) if exact else (hits + 1) / (len(null) + 1)
    return Comparison(observed, interval, min(1.0, p_value), exact, a.n)


# ----------------------------------------------------------------------------- from the evaluators' details
_RETRIEVAL = re.compile(r"^(mrr|recall|ndcg)@(\d+)$")


def _keys(details: list[dict[str, Any]]) -> tuple[Hashable, ...]:
    """An example is its (file, line) for long texts, else its query."""
    return tuple((d["file"], d["line"]) if "file" in d and "line" in d else d.get("query") for d in details)


def _read(main_metric: str, details: list[dict[str, Any]]) -> Sample:
    """Per-example values of a column from the ``details/`` records its evaluator wrote
    (KeyError/TypeError/ValueError when they do not carry them)."""
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
