"""Losses against slow loop-based references, closed forms and properties."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from llm_embedder.tasks import DEFAULT_TASKS, LOSS_NAMES, TrainingSettings
from llm_embedder.training.losses import (
    LOSSES,
    combine_losses,
    compute_task_loss,
    contrastive_loss,
    kl_distill_loss,
    stable_distill_loss,
)

# ---------------------------------------------------------------------------------------------
# Slow references: one query, one key, one scalar at a time.


def _score(q: torch.Tensor, k: torch.Tensor, i: int, c: int, tau: float) -> torch.Tensor:
    return sum(q[i, d] * k[c, d] for d in range(q.shape[1])) / tau


def _log_sum_exp(values: list[torch.Tensor]) -> torch.Tensor:
    m = max(v.detach().item() for v in values)  # shift for float64 safety; gradient unaffected
    return m + torch.log(sum(torch.exp(v - m) for v in values))


def _softmax(values: list[torch.Tensor]) -> list[torch.Tensor]:
    lse = _log_sum_exp(values)
    return [torch.exp(v - lse) for v in values]


def ref_contrastive(q, k, group_size, tau):
    n = q.shape[0]
    total = 0.0
    for i in range(n):
        row = [_score(q, k, i, c, tau) for c in range(n * group_size)]
        total = total + (_log_sum_exp(row) - row[i * group_size])
    return total / n


def ref_kl(q, k, t, tau, t_teacher, t_student):
    n, group_size = t.shape
    total = 0.0
    for i in range(n):
        student = _softmax([_score(q, k, i, i * group_size + j, tau) / t_student for j in range(group_size)])
        teacher = _softmax([t[i, j] / t_teacher for j in range(group_size)])
        for j in range(group_size):
            total = total + teacher[j] * (torch.log(teacher[j]) - torch.log(student[j]))
    return total / n


def ref_stable(q, k, t, tau, t_teacher):
    n, group_size = t.shape
    total = 0.0
    for j in range(group_size):
        for i in range(n):
            weight = _softmax([t[i, m] / t_teacher for m in range(group_size)])[j]
            # Denominator: every column except this query's own keys ranked above position j.
            cols = [c for c in range(n * group_size) if not (c // group_size == i and c % group_size < j)]
            lse = _log_sum_exp([_score(q, k, i, c, tau) for c in cols])
            total = total + weight * (lse - _score(q, k, i, i * group_size + j, tau)) / n
    return total


# ---------------------------------------------------------------------------------------------
# Inputs


def make_inputs(n: int, group_size: int, seed: int, dim: int = 6, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(n, dim, generator=gen, dtype=dtype), dim=-1).requires_grad_()
    k = F.normalize(torch.randn(n * group_size, dim, generator=gen, dtype=dtype), dim=-1).requires_grad_()
    t = -3 * torch.rand(n, group_size, generator=gen, dtype=dtype)  # like minus mean NLL
    return q, k, t


def assert_value_and_grads(fast: torch.Tensor, slow: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> None:
    assert fast.dim() == 0
    torch.testing.assert_close(fast, slow, atol=1e-9, rtol=1e-9)
    fast_grads = torch.autograd.grad(fast, (q, k))
    slow_grads = torch.autograd.grad(slow, (q, k))
    for a, b in zip(fast_grads, slow_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-8)


CASES = list(itertools.product([1, 3, 5], [2, 4], [0, 1]))  # (B, G, seed)


# ---------------------------------------------------------------------------------------------
# Against the references


@pytest.mark.parametrize(("n", "group_size", "seed"), CASES)
@pytest.mark.parametrize("tau", [0.01, 0.3])
def test_contrastive_matches_reference(n, group_size, seed, tau):
    q, k, _ = make_inputs(n, group_size, seed)
    assert_value_and_grads(contrastive_loss(q, k, group_size, tau), ref_contrastive(q, k, group_size, tau), q, k)


@pytest.mark.parametrize(("n", "group_size", "seed"), CASES)
@pytest.mark.parametrize(("tau", "t_teacher", "t_student"), [(0.01, 1.0, 1.0), (0.2, 0.1, 2.0)])
def test_kl_matches_reference(n, group_size, seed, tau, t_teacher, t_student):
    q, k, t = make_inputs(n, group_size, seed)
    fast = kl_distill_loss(q, k, t, tau, teacher_temperature=t_teacher, student_temperature=t_student)
    assert_value_and_grads(fast, ref_kl(q, k, t, tau, t_teacher, t_student), q, k)


@pytest.mark.parametrize(("n", "group_size", "seed"), CASES)
@pytest.mark.parametrize(("tau", "t_teacher"), [(0.01, 1.0), (0.2, 0.1)])
def test_stable_matches_reference(n, group_size, seed, tau, t_teacher):
    q, k, t = make_inputs(n, group_size, seed)
    fast = stable_distill_loss(q, k, t, tau, teacher_temperature=t_teacher)
    assert_value_and_grads(fast, ref_stable(q, k, t, tau, t_teacher), q, k)


# ---------------------------------------------------------------------------------------------
# Closed forms


def _tiny():
    """B=1, G=2 with s0 = <q, k0> = 0.6 and s1 = <q, k1> = -0.8 at tau = 1."""
    q = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    k = torch.tensor([[0.6, 0.8], [-0.8, 0.6]], dtype=torch.float64)
    return q, k, 0.6, -0.8


def test_contrastive_closed_form():
    q, k, s0, s1 = _tiny()
    expected = math.log1p(math.exp(s1 - s0))  # -log(e^s0 / (e^s0 + e^s1))
    assert contrastive_loss(q, k, 2, temperature=1.0).item() == pytest.approx(expected, abs=1e-12)
    # tau divides the logits.
    expected = math.log1p(math.exp((s1 - s0) / 0.5))
    assert contrastive_loss(q, k, 2, temperature=0.5).item() == pytest.approx(expected, abs=1e-12)


def test_kl_closed_form():
    q, k, s0, s1 = _tiny()
    t = torch.tensor([[0.0, -1.0]], dtype=torch.float64)
    ps0 = 1 / (1 + math.exp(s1 - s0))
    pt0 = 1 / (1 + math.exp(-1.0))
    expected = pt0 * math.log(pt0 / ps0) + (1 - pt0) * math.log((1 - pt0) / (1 - ps0))
    assert kl_distill_loss(q, k, t, temperature=1.0).item() == pytest.approx(expected, abs=1e-12)


def test_stable_closed_form_single_query():
    # Position 0: p0 * -log(e^s0 / (e^s0 + e^s1)); position 1: k0 is masked, so -log(e^s1 / e^s1) = 0.
    q, k, s0, s1 = _tiny()
    t = torch.tensor([[0.0, -1.0]], dtype=torch.float64)
    p0 = 1 / (1 + math.exp(-1.0))
    expected = p0 * math.log1p(math.exp(s1 - s0))
    assert stable_distill_loss(q, k, t, temperature=1.0).item() == pytest.approx(expected, abs=1e-12)


def test_stable_closed_form_two_queries():
    # B=2, G=2, tau=1, hand-written score matrix through orthonormal embeddings.
    q = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    k = torch.tensor(
        [[0.5, 0.1, 0.0, 0.0], [0.2, -0.3, 0.0, 0.0], [0.0, 0.4, 0.0, 0.0], [-0.1, 0.7, 0.0, 0.0]],
        dtype=torch.float64,
    )
    s = (q @ k.T).tolist()  # s[i][c]
    t = torch.tensor([[0.3, 0.0], [0.0, 0.5]], dtype=torch.float64)
    p = torch.softmax(t, dim=-1).tolist()

    def lse(xs):
        return math.log(sum(math.exp(x) for x in xs))

    # Query 0: position 0 over all 4 columns, position 1 without column 0.
    l0 = p[0][0] * (lse(s[0]) - s[0][0]) + p[0][1] * (lse(s[0][1:]) - s[0][1])
    # Query 1: position 0 over all 4 columns, position 1 without column 2.
    l1 = p[1][0] * (lse(s[1]) - s[1][2]) + p[1][1] * (lse([s[1][0], s[1][1], s[1][3]]) - s[1][3])
    assert stable_distill_loss(q, k, t, temperature=1.0).item() == pytest.approx((l0 + l1) / 2, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# Properties


@pytest.mark.parametrize("n", [1, 4])
def test_stable_with_one_hot_teacher_is_contrastive(n):
    # A one-hot teacher on position 0 keeps only the j = 0 term, whose denominator is every key.
    q, k, _ = make_inputs(n, 4, seed=3)
    t = torch.full((n, 4), float("-inf"), dtype=torch.float64)
    t[:, 0] = 0.0
    stable = stable_distill_loss(q, k, t)
    torch.testing.assert_close(stable, contrastive_loss(q, k, 4), atol=1e-12, rtol=0)
    grads = torch.autograd.grad(stable, (q, k))
    assert all(torch.isfinite(g).all() for g in grads)


def test_stable_rewards_agreeing_order():
    # One query, strongly separated student scores: ranked as the teacher says -> ~0; reversed -> large.
    q = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    angles = torch.tensor([0.0, 0.5, 1.0, 1.5], dtype=torch.float64)
    k = torch.stack([angles.cos(), angles.sin()], dim=-1)  # cosines 1 > 0.88 > 0.54 > 0.07
    t = torch.tensor([[0.0, -0.5, -1.0, -1.5]], dtype=torch.float64)
    agree = stable_distill_loss(q, k, t)
    reverse = stable_distill_loss(q, k.flip(0), t)
    assert agree.item() < 1e-4
    assert reverse.item() > 10


@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_losses_invariant_to_query_order(loss_name):
    # Permuting queries together with their groups and teacher rows leaves every loss unchanged.
    n, g = 5, 3
    q, k, t = make_inputs(n, g, seed=7)
    perm = torch.tensor([3, 0, 4, 1, 2])
    key_perm = (perm[:, None] * g + torch.arange(g)).reshape(-1)
    settings = TrainingSettings(losses={loss_name: 1.0}, group_size=g)
    a, _ = compute_task_loss(q, k, t, settings)
    b, _ = compute_task_loss(q[perm], k[key_perm], t[perm], settings)
    torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_stable_and_kl_ignore_teacher_shift_and_are_non_negative():
    q, k, t = make_inputs(4, 4, seed=11)
    for fn in (stable_distill_loss, kl_distill_loss):
        loss = fn(q, k, t)
        assert loss.item() >= 0
        torch.testing.assert_close(fn(q, k, t + 5.0), loss, atol=1e-12, rtol=1e-12)


def test_kl_zero_when_student_equals_teacher():
    q, k, _ = make_inputs(3, 4, seed=5)
    tau, t_teacher, t_student = 0.05, 0.1, 2.0
    student = torch.einsum("bd,bgd->bg", q, k.view(3, 4, -1)).detach() / tau
    t = student / t_student * t_teacher  # t / T_t == s / T_s
    loss = kl_distill_loss(q, k, t, tau, teacher_temperature=t_teacher, student_temperature=t_student)
    assert abs(loss.item()) < 1e-12
    for grad in torch.autograd.grad(loss, (q, k)):
        assert grad.abs().max().item() < 1e-10
    # Any other teacher gives a positive divergence.
    assert kl_distill_loss(q, k, t.flip(-1), tau, t_teacher, t_student).item() > 1e-3


def test_kl_uses_only_own_keys():
    q, k, t = make_inputs(3, 2, seed=2)
    loss = kl_distill_loss(q, k, t)
    k_other = k.detach().clone()
    k_other[2:] = F.normalize(
        torch.randn(4, k.shape[1], generator=torch.Generator().manual_seed(0), dtype=k.dtype), -1
    )  # keys of queries 1, 2
    per_query0 = kl_distill_loss(q[:1], k[:2], t[:1])
    assert not torch.allclose(loss, kl_distill_loss(q, k_other, t))
    torch.testing.assert_close(kl_distill_loss(q[:1], k_other[:2], t[:1]), per_query0)


def test_contrastive_decreases_as_positive_gets_closer():
    q, k, _ = make_inputs(1, 4, seed=4)
    q, k = q.detach(), k.detach()
    losses = []
    for alpha in [0.0, 0.3, 1.0, 3.0, 10.0]:
        moved = k.clone()
        moved[0] = F.normalize(k[0] + alpha * q[0], dim=-1)
        losses.append(contrastive_loss(q, moved, 4).item())
    assert all(a > b for a, b in itertools.pairwise(losses))
    # And its gradient pulls the positive towards the query.
    q, k, _ = make_inputs(3, 4, seed=4)
    grad_k = torch.autograd.grad(contrastive_loss(q, k, 4), k)[0]
    for i in range(3):
        assert torch.dot(grad_k[i * 4], q[i]).item() < 0


def test_contrastive_sees_other_queries_keys():
    # In-batch negatives: a key of query 1 identical to query 0 raises query 0's loss.
    q, k, _ = make_inputs(2, 2, seed=6)
    q, k = q.detach(), k.detach()
    base = contrastive_loss(q, k, 2)
    k2 = k.clone()
    k2[3] = q[0]
    assert contrastive_loss(q, k2, 2).item() > base.item()


def test_single_query_gradients_are_finite():
    # B = 1 leaves stable distillation without other queries' keys (a fully masked logsumexp).
    q, k, t = make_inputs(1, 4, seed=0, dtype=torch.float32)
    for loss in (stable_distill_loss(q, k, t), contrastive_loss(q, k, 4), kl_distill_loss(q, k, t)):
        assert torch.isfinite(loss)
        assert all(torch.isfinite(g).all() for g in torch.autograd.grad(loss, (q, k)))


def test_half_precision_inputs_are_scored_in_float32():
    q, k, t = make_inputs(4, 4, seed=8)
    expected = stable_distill_loss(q, k, t).item()
    qh = q.detach().to(torch.bfloat16).requires_grad_()
    kh = k.detach().to(torch.bfloat16).requires_grad_()
    loss = stable_distill_loss(qh, kh, t.to(torch.bfloat16))
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(expected, rel=0.05)
    grads = torch.autograd.grad(loss, (qh, kh))
    assert all(g.dtype == torch.bfloat16 and torch.isfinite(g.float()).all() for g in grads)


def test_input_validation():
    q, k, t = make_inputs(2, 3, seed=0)
    with pytest.raises(ValueError, match="B \\* G"):
        contrastive_loss(q, k, 2)
    with pytest.raises(ValueError, match="teacher_scores"):
        kl_distill_loss(q, k, t[:1])
    with pytest.raises(ValueError, match="B \\* G"):
        stable_distill_loss(q, k[:-1], t)
    with pytest.raises(ValueError, match="temperature"):
        stable_distill_loss(q, k, t, temperature=0.0)
    with pytest.raises(ValueError, match="teacher_temperature"):
        kl_distill_loss(q, k, t, teacher_temperature=0.0)


# ---------------------------------------------------------------------------------------------
# Combining


def test_combine_applies_weight_to_a_single_loss():
    part = torch.tensor(2.0, requires_grad=True)
    total = combine_losses({"contrastive": part}, {"contrastive": 0.25})
    assert total.item() == pytest.approx(0.5)
    (grad,) = torch.autograd.grad(total, part)
    assert grad.item() == pytest.approx(0.25)


def test_combine_weighted_sum_ignores_non_positive_weights():
    parts = {"contrastive": torch.tensor(2.0), "kl_distill": torch.tensor(3.0), "stable_distill": torch.tensor(7.0)}
    total = combine_losses(parts, {"contrastive": 0.2, "kl_distill": 1.5, "stable_distill": 0.0})
    assert total.item() == pytest.approx(0.2 * 2 + 1.5 * 3)


def test_combine_errors():
    parts = {"contrastive": torch.tensor(1.0)}
    with pytest.raises(ValueError, match="positive weight"):
        combine_losses(parts, {"contrastive": 0.0})
    with pytest.raises(ValueError, match="positive weight"):
        combine_losses(parts, {})
    with pytest.raises(ValueError, match="not computed"):
        combine_losses(parts, {"contrastive": 1.0, "kl_distill": 1.0})


def test_registry_covers_task_table_names():
    assert set(LOSSES) == set(LOSS_NAMES)


def test_compute_task_loss_matches_parts():
    q, k, t = make_inputs(3, 4, seed=9)
    settings = TrainingSettings(
        losses={"contrastive": 0.2, "kl_distill": 1.5, "stable_distill": 0.0},
        teacher_temperature=0.1,
        student_temperature=2.0,
    )
    total, parts = compute_task_loss(q, k, t, settings, temperature=0.05)
    assert set(parts) == {"contrastive", "kl_distill"}
    torch.testing.assert_close(parts["contrastive"], contrastive_loss(q, k, 4, 0.05))
    torch.testing.assert_close(parts["kl_distill"], kl_distill_loss(q, k, t, 0.05, 0.1, 2.0))
    torch.testing.assert_close(total, 0.2 * parts["contrastive"] + 1.5 * parts["kl_distill"])

    total, parts = compute_task_loss(q, k, t, TrainingSettings(losses={"stable_distill": 0.5}, teacher_temperature=2.0))
    torch.testing.assert_close(total, 0.5 * stable_distill_loss(q, k, t, teacher_temperature=2.0))


def test_compute_task_loss_needs_teacher_for_distillation():
    q, k, _ = make_inputs(2, 2, seed=0)
    for name in ("kl_distill", "stable_distill"):
        with pytest.raises(ValueError, match="teacher scores"):
            compute_task_loss(q, k, None, TrainingSettings(losses={name: 1.0}))
    # Contrastive alone needs none.
    total, _ = compute_task_loss(q, k, None, TrainingSettings(losses={"contrastive": 1.0}))
    assert torch.isfinite(total)


@pytest.mark.parametrize("task_name", list(DEFAULT_TASKS))
def test_compute_task_loss_for_builtin_tasks(task_name):
    settings = DEFAULT_TASKS[task_name].training
    q, k, t = make_inputs(3, settings.group_size, seed=1, dtype=torch.float32)
    total, parts = compute_task_loss(q, k, t, settings)
    assert torch.isfinite(total) and parts
    assert all(torch.isfinite(g).all() for g in torch.autograd.grad(total, (q, k)))


# ---------------------------------------------------------------------------------------------
# Extra negatives (other tasks' keys in a mixed batch)


def ref_with_extra(q, k, extra, t, tau, stable):
    """Contrastive (stable=False) or stable distillation where ``extra`` rows join every denominator."""
    n, group_size = q.shape[0], k.shape[0] // q.shape[0]
    keys = torch.cat([k, extra])
    total = 0.0
    positions = range(group_size) if stable else [0]
    for i in range(n):
        weights = _softmax([t[i, m] for m in range(group_size)]) if stable else [1.0]
        for j in positions:
            cols = [
                c
                for c in range(keys.shape[0])
                if not (c < n * group_size and c // group_size == i and c % group_size < j)
            ]
            lse = _log_sum_exp([_score(q, keys, i, c, 0.05) for c in cols])
            total = total + weights[j] * (lse - _score(q, keys, i, i * group_size + j, 0.05)) / n
    return total


@pytest.mark.parametrize("stable", [False, True])
def test_extra_keys_join_every_denominator(stable):
    q, k, t = make_inputs(3, 2, seed=7)
    extra = F.normalize(torch.randn(5, q.shape[1], dtype=q.dtype, generator=torch.Generator().manual_seed(1)), dim=-1)
    extra.requires_grad_()
    if stable:
        fast = stable_distill_loss(q, k, t, 0.05, extra_keys=extra)
    else:
        fast = contrastive_loss(q, k, 2, 0.05, extra_keys=extra)
    slow = ref_with_extra(q, k, extra, t, 0.05, stable)
    torch.testing.assert_close(fast, slow, atol=1e-9, rtol=1e-9)
    for a, b in zip(torch.autograd.grad(fast, (q, k, extra)), torch.autograd.grad(slow, (q, k, extra)), strict=True):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-8)


# ---------------------------------------------------------------------------------------------
# Padded groups: a masked slot is no key at all.  The references below take the *ragged* batch
# (each query with only its real keys) and loop over queries, so they never see a padded slot.


def ragged_case(seed: int, n: int = 4, group_size: int = 5, dim: int = 6, extra: int = 0):
    gen = torch.Generator().manual_seed(seed)
    lengths = [int(x) for x in torch.randint(1, group_size + 1, (n,), generator=gen)]
    lengths[0] = group_size  # one full group, one of length 1 (positive only) and random ones
    lengths[-1] = 1
    q = F.normalize(torch.randn(n, dim, generator=gen, dtype=torch.float64), dim=-1).requires_grad_()
    real = F.normalize(torch.randn(sum(lengths), dim, generator=gen, dtype=torch.float64), dim=-1).requires_grad_()
    pad = (10 * torch.randn(n * group_size - sum(lengths), dim, generator=gen, dtype=torch.float64)).requires_grad_()
    t_real = [-3 * torch.rand(m, generator=gen, dtype=torch.float64) for m in lengths]
    extra_keys = F.normalize(torch.randn(extra, dim, generator=gen, dtype=torch.float64), dim=-1) if extra else None
    # Padded tensors: real keys first in each group, garbage (large, random) in the padded slots.
    mask = torch.tensor([[j < m for j in range(group_size)] for m in lengths])
    order = torch.empty(n * group_size, dtype=torch.long)
    order[mask.reshape(-1)] = torch.arange(sum(lengths))
    order[~mask.reshape(-1)] = sum(lengths) + torch.arange(len(pad))
    k = torch.cat([real, pad])[order]
    t = torch.full((n, group_size), 50.0, dtype=torch.float64)  # a padded slot's score would dominate if used
    t[mask] = torch.cat(t_real)
    return q, real, pad, k, t, mask, lengths, t_real, extra_keys


def _split(real, lengths):
    return list(torch.split(real, lengths))


def ragged_contrastive(q, real, lengths, tau, extra_keys=None):
    keys = real if extra_keys is None else torch.cat([real, extra_keys])
    offsets = [sum(lengths[:i]) for i in range(len(lengths))]
    return sum(torch.logsumexp(keys @ q[i] / tau, 0) - real[o] @ q[i] / tau for i, o in enumerate(offsets)) / len(q)


def ragged_kl(q, real, lengths, t_real, tau, t_teacher, t_student):
    total = 0.0
    for i, own in enumerate(_split(real, lengths)):
        log_s = torch.log_softmax(own @ q[i] / tau / t_student, 0)
        p_t = torch.softmax(t_real[i] / t_teacher, 0)
        total = total + (p_t * (torch.log(p_t) - log_s)).sum()
    return total / len(q)


def ragged_stable(q, real, lengths, t_real, tau, t_teacher, extra_keys=None):
    total = 0.0
    groups = _split(real, lengths)
    for i, own in enumerate(groups):
        others = [g for m, g in enumerate(groups) if m != i] + ([] if extra_keys is None else [extra_keys])
        p_t = torch.softmax(t_real[i] / t_teacher, 0)
        for j in range(lengths[i]):
            denominator = torch.cat([*others, own[j:]]) @ q[i] / tau
            total = total + p_t[j] * (torch.logsumexp(denominator, 0) - own[j] @ q[i] / tau)
    return total / len(q)


def assert_masked_like_ragged(fast, slow, q, real, pad):
    torch.testing.assert_close(fast, slow, atol=1e-9, rtol=1e-9)
    gq, greal, gpad = torch.autograd.grad(fast, (q, real, pad))
    sq, sreal = torch.autograd.grad(slow, (q, real))
    torch.testing.assert_close(gq, sq, atol=1e-9, rtol=1e-8)
    torch.testing.assert_close(greal, sreal, atol=1e-9, rtol=1e-8)
    assert torch.equal(gpad, torch.zeros_like(gpad)), "a padded key must get no gradient"


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("extra", [0, 3])
def test_masked_contrastive_equals_the_ragged_batch(seed, extra):
    q, real, pad, k, _, mask, lengths, _, extra_keys = ragged_case(seed, extra=extra)
    fast = contrastive_loss(q, k, 5, 0.05, extra_keys, key_mask=mask)
    assert_masked_like_ragged(fast, ragged_contrastive(q, real, lengths, 0.05, extra_keys), q, real, pad)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("t_teacher", "t_student"), [(1.0, 1.0), (0.1, 0.5)])
def test_masked_kl_equals_the_ragged_batch(seed, t_teacher, t_student):
    q, real, pad, k, t, mask, lengths, t_real, _ = ragged_case(seed)
    fast = kl_distill_loss(q, k, t, 0.05, t_teacher, t_student, key_mask=mask)
    slow = ragged_kl(q, real, lengths, t_real, 0.05, t_teacher, t_student)
    assert_masked_like_ragged(fast, slow, q, real, pad)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("extra", [0, 3])
def test_masked_stable_equals_the_ragged_batch(seed, extra):
    q, real, pad, k, t, mask, lengths, t_real, extra_keys = ragged_case(seed, extra=extra)
    fast = stable_distill_loss(q, k, t, 0.05, 1.0, extra_keys, key_mask=mask)
    slow = ragged_stable(q, real, lengths, t_real, 0.05, 1.0, extra_keys)
    assert_masked_like_ragged(fast, slow, q, real, pad)


def test_masked_stable_at_the_default_temperature_stays_finite():
    # tau = 0.01 and garbage of norm ~25 in the padded slots: huge logits that must still vanish.
    q, real, pad, k, t, mask, lengths, t_real, _ = ragged_case(7)
    fast = stable_distill_loss(q, k, t, key_mask=mask)
    assert_masked_like_ragged(fast, ragged_stable(q, real, lengths, t_real, 0.01, 1.0), q, real, pad)


def test_compute_task_loss_passes_the_mask_to_every_loss():
    q, real, pad, k, t, mask, lengths, t_real, _ = ragged_case(3)
    s = TrainingSettings(losses={"contrastive": 0.5, "kl_distill": 1.0, "stable_distill": 2.0}, teacher_temperature=0.5)
    fast, _ = compute_task_loss(q, k, t, s, 0.05, key_mask=mask)
    slow = (
        0.5 * ragged_contrastive(q, real, lengths, 0.05)
        + ragged_kl(q, real, lengths, t_real, 0.05, 0.5, 1.0)
        + 2.0 * ragged_stable(q, real, lengths, t_real, 0.05, 0.5)
    )
    assert_masked_like_ragged(fast, slow, q, real, pad)


def test_an_all_true_mask_changes_nothing_and_a_masked_positive_is_refused():
    q, k, t = make_inputs(3, 4, 0)
    full = torch.ones(3, 4, dtype=torch.bool)
    for loss in (stable_distill_loss, kl_distill_loss):
        assert torch.equal(loss(q, k, t, key_mask=full), loss(q, k, t))
    assert torch.equal(contrastive_loss(q, k, 4, key_mask=full), contrastive_loss(q, k, 4))
    bad = full.clone()
    bad[1, 0] = False
    with pytest.raises(ValueError, match="positive"):
        contrastive_loss(q, k, 4, key_mask=bad)
