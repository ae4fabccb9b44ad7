"""How far two sets of rewards for the same candidates agree, in the ways training uses them.

Rewards act only through their order and their softmax within a query's candidates, so a cheaper
scorer (bf16) is judged by Kendall's tau per query, top-1 agreement, and the KL divergence between
the teacher distributions ``softmax(scores / T)`` at the task's teacher temperature ``T``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Agreement:
    tau: float  # Kendall's tau-b of the two orders (nan with fewer than 2 candidates or all ties)
    top1: bool  # the best candidate is the same (ties broken by position, as argmax does)
    kl: float  # KL(reference || other) between the teacher distributions, in nats


def kendall_tau_b(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b: (concordant - discordant) / sqrt((n0 - ties_a) (n0 - ties_b)) over all pairs."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    i, j = np.triu_indices(len(a), k=1)
    da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    denominator = np.sqrt(np.count_nonzero(da) * np.count_nonzero(db))
    return float((da * db).sum() / denominator) if denominator else float("nan")


def teacher_distribution(scores: Sequence[float], temperature: float) -> np.ndarray:
    z = np.asarray(scores, dtype=np.float64) / temperature
    z = np.exp(z - z.max())
    return z / z.sum()


def agreement(reference: Sequence[float], other: Sequence[float], temperature: float) -> Agreement:
    if len(reference) != len(other) or not len(reference):
        raise ValueError(f"expected two equally long, non-empty score lists, got {len(reference)} and {len(other)}")
    p, q = teacher_distribution(reference, temperature), teacher_distribution(other, temperature)
    kl = float(np.sum(p * (np.log(p) - np.log(q))))
    return Agreement(kendall_tau_b(reference, other), int(np.argmax(reference)) == int(np.argmax(other)), kl)
