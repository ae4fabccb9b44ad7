"""Reward agreement metrics against scipy and sums written out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import entropy, kendalltau

from llm_embedder.rewards.agreement import agreement, kendall_tau_b, teacher_distribution


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]),
        ([1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]),
        ([0.1, -0.5, 0.3, 0.3, 2.0], [0.2, -0.1, 0.3, 0.1, 1.0]),  # a tie in a
        ([1.0, 1.0, 2.0, 3.0, 0.0, 5.0], [2.0, 2.0, 1.0, 3.0, 3.0, 0.5]),  # ties in both
    ],
)
def test_kendall_tau_b_matches_scipy(a, b):
    assert kendall_tau_b(a, b) == pytest.approx(kendalltau(a, b).statistic, abs=1e-12)


def test_kendall_tau_random_against_scipy():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.integers(0, 4, 8).astype(float), rng.integers(0, 4, 8).astype(float)
        expected = kendalltau(a, b).statistic
        got = kendall_tau_b(a, b)
        assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected, abs=1e-12)


def test_kendall_tau_by_hand():
    # pairs of (3, 1, 2) vs (1, 2, 3): (0,1) discordant, (0,2) discordant, (1,2) concordant -> (1 - 2) / 3
    assert kendall_tau_b([3, 1, 2], [1, 2, 3]) == pytest.approx(-1 / 3)
    assert math.isnan(kendall_tau_b([1.0], [2.0]))
    assert math.isnan(kendall_tau_b([1.0, 1.0], [1.0, 2.0]))


def test_agreement_kl_and_top1():
    ref, other, t = [-1.2, -0.4, -2.0], [-1.1, -0.6, -1.9], 0.1
    result = agreement(ref, other, t)
    p = np.exp(np.array(ref) / t) / np.exp(np.array(ref) / t).sum()
    q = np.exp(np.array(other) / t) / np.exp(np.array(other) / t).sum()
    assert result.kl == pytest.approx(entropy(p, q), rel=1e-9)
    assert result.top1 and result.tau == pytest.approx(1.0)
    assert agreement(ref, ref, t).kl == pytest.approx(0.0, abs=1e-15)
    assert not agreement([0.0, 1.0], [1.0, 0.0], 1.0).top1
    # large scores / small temperature: no overflow
    np.testing.assert_allclose(teacher_distribution([1000.0, 999.0], 0.01).sum(), 1.0)
    with pytest.raises(ValueError, match="equally long"):
        agreement([1.0], [1.0, 2.0], 1.0)
