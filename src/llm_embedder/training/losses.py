"""The training losses of LLM-Embedder, as pure functions of embedding tensors.

Notation shared by every function (reference implementation §3, paper §1.3-1.4):

* ``q``: query embeddings ``[B, d]``;
* ``k``: key embeddings ``[B * G, d]``; key ``j`` of query ``i`` is row ``i * G + j`` and ``j = 0`` is the
  selected positive (for stable distillation the group is in rank order: positive, then negatives
  by descending teacher score);
* ``t``: teacher (LLM reward) scores ``[B, G]``, aligned with the keys; treated as constants;
* ``tau``: similarity temperature, logits are ``<q, k> / tau`` (the caller L2-normalises, so with
  ``tau = 0.01`` a logit is 100 x cosine).

* ``key_mask``: optional bool ``[B, G]``, False where a group is shorter than G and its slot is
  padding.  A masked key is no key at all: never a negative of any query (own group, in-batch or
  cross-device), no teacher mass, no term of its own; the loss and the gradients equal those of the
  ragged batch without it.  Slot 0 (the positive) must be real.

Under ``torch.distributed`` pass the gathered tensors (``llm_embedder.distributed.gather_with_grad``)
to every loss: the contrastive and stable losses then see cross-device negatives, and all losses are
means over the global batch, which is what the gradient convention of ``llm_embedder.distributed``
assumes.  Half-precision inputs are scored in float32.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from llm_embedder.tasks import TrainingSettings

DEFAULT_TEMPERATURE = 0.01


def _score_dtype(t: torch.Tensor) -> torch.dtype:
    # Logits of 100 x cosine and finfo.min masks are not safe in fp16/bf16: score in >= float32.
    return torch.promote_types(t.dtype, torch.float32)


def _check_inputs(q: torch.Tensor, k: torch.Tensor, group_size: int, temperature: float) -> None:
    if q.dim() != 2 or k.dim() != 2 or q.shape[1] != k.shape[1]:
        raise ValueError(f"expected q [B, d] and k [B*G, d], got {tuple(q.shape)} and {tuple(k.shape)}")
    if group_size < 1 or k.shape[0] != q.shape[0] * group_size:
        raise ValueError(
            f"k has {k.shape[0]} rows; expected B * G = {q.shape[0]} * {group_size} (key j of query i at row i*G+j)"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")


def _check_teacher(q: torch.Tensor, k: torch.Tensor, teacher_scores: torch.Tensor, temperature: float) -> int:
    if teacher_scores.dim() != 2 or teacher_scores.shape[0] != q.shape[0]:
        raise ValueError(f"teacher_scores must be [B, G] with B = {q.shape[0]}, got {tuple(teacher_scores.shape)}")
    group_size = teacher_scores.shape[1]
    _check_inputs(q, k, group_size, temperature)
    return group_size


def _all_scores(
    q: torch.Tensor, k: torch.Tensor, temperature: float, extra_keys: torch.Tensor | None = None
) -> torch.Tensor:
    """S = q [k; extra]^T / tau, [B, B*G + E], in at least float32."""
    dtype = _score_dtype(q)
    if extra_keys is not None:
        if extra_keys.dim() != 2 or extra_keys.shape[1] != k.shape[1]:
            raise ValueError(f"extra_keys must be [E, {k.shape[1]}], got {tuple(extra_keys.shape)}")
        k = torch.cat([k, extra_keys.to(k.dtype)])
    return q.to(dtype) @ k.to(dtype).T / temperature


def _check_mask(key_mask: torch.Tensor | None, n_queries: int, group_size: int) -> None:
    if key_mask is None:
        return
    if key_mask.dtype != torch.bool or tuple(key_mask.shape) != (n_queries, group_size):
        raise ValueError(f"key_mask must be bool [B, G] = [{n_queries}, {group_size}], got {tuple(key_mask.shape)}")
    if not bool(key_mask[:, 0].all()):
        raise ValueError("key_mask masks a positive (slot 0); every group needs its positive")


def _mask_columns(scores: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """Padded keys' columns (the first B*G of ``scores``) to finfo.min: they leave every softmax.

    finfo.min rather than -inf keeps gradients free of NaN (exp underflows to an exact 0 either way)."""
    if key_mask is None:
        return scores
    keep = torch.ones(scores.shape[-1], dtype=torch.bool, device=scores.device)
    keep[: key_mask.numel()] = key_mask.reshape(-1)
    return scores.masked_fill(~keep, torch.finfo(scores.dtype).min)


def _own_scores(q: torch.Tensor, k: torch.Tensor, group_size: int, temperature: float) -> torch.Tensor:
    """s_ij = <q_i, k_{iG+j}> / tau, [B, G]: each query against its own group only."""
    dtype = _score_dtype(q)
    keys = k.to(dtype).view(q.shape[0], group_size, -1)
    return torch.einsum("bd,bgd->bg", q.to(dtype), keys) / temperature


def contrastive_loss(
    q: torch.Tensor,
    k: torch.Tensor,
    group_size: int,
    temperature: float = DEFAULT_TEMPERATURE,
    extra_keys: torch.Tensor | None = None,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE over all keys given (paper Eq. 2, reference §3.1).

    ``L = (1/B) sum_i -log softmax(S_i)[i*G]`` with ``S = q k^T / tau`` of shape [B, B*G]: every key of
    every other query is a negative, so gathered inputs give in-batch and cross-device negatives.

    Args: q [B, d]; k [B*G, d]; group_size G; temperature tau; ``extra_keys`` [E, d]: more negatives
    for every query (other tasks' keys in a mixed batch); ``key_mask`` [B, G].  Returns a scalar.
    """
    _check_inputs(q, k, group_size, temperature)
    _check_mask(key_mask, q.shape[0], group_size)
    scores = _mask_columns(_all_scores(q, k, temperature, extra_keys), key_mask)
    labels = torch.arange(q.shape[0], device=q.device) * group_size
    return F.cross_entropy(scores, labels)


def kl_distill_loss(
    q: torch.Tensor,
    k: torch.Tensor,
    teacher_scores: torch.Tensor,
    temperature: float = DEFAULT_TEMPERATURE,
    teacher_temperature: float = 1.0,
    student_temperature: float = 1.0,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL distillation over each query's own G keys (paper Eq. 3, reference §3.2).

    ``s_ij = <q_i, k_{iG+j}> / tau``, ``p^S_i = softmax(s_i / T_s)``, ``p^T_i = softmax(t_i / T_t)``;
    ``L = (1/B) sum_i KL(p^T_i || p^S_i)`` (``F.kl_div(log p^S, p^T, reduction="batchmean")``).
    No in-batch negatives.

    Args: q [B, d]; k [B*G, d]; teacher_scores t [B, G]; temperature tau; teacher_temperature T_t;
    student_temperature T_s; ``key_mask`` [B, G].  Returns a scalar.
    """
    group_size = _check_teacher(q, k, teacher_scores, temperature)
    _check_mask(key_mask, q.shape[0], group_size)
    if teacher_temperature <= 0 or student_temperature <= 0:
        raise ValueError("teacher_temperature and student_temperature must be positive")
    student = _own_scores(q, k, group_size, temperature) / student_temperature
    teacher = teacher_scores.detach().to(student.dtype) / teacher_temperature
    if key_mask is not None:
        # Masked after the temperatures, so finfo.min is not divided into -inf; p_teacher = 0 there
        # and kl_div's 0 * log 0 = 0 makes the slot vanish from the sum.
        student = student.masked_fill(~key_mask, torch.finfo(student.dtype).min)
        teacher = teacher.masked_fill(~key_mask, torch.finfo(teacher.dtype).min)
    log_p_student = F.log_softmax(student, dim=-1)
    p_teacher = F.softmax(teacher, dim=-1)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean")


def stable_distill_loss(
    q: torch.Tensor,
    k: torch.Tensor,
    teacher_scores: torch.Tensor,
    temperature: float = DEFAULT_TEMPERATURE,
    teacher_temperature: float = 1.0,
    extra_keys: torch.Tensor | None = None,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Stabilized (rank-aware, listwise) distillation (paper §2.2.3, reference §3.3).

    Each group is in rank order.  With ``S = q k^T / tau`` [B, B*G] and ``p_ij = softmax_j(t_ij / T_t)``:

    ``L = sum_{j<G} (1/B) sum_i p_ij * (-S_{i,iG+j} + logsumexp_{c not in {iG, ..., iG+j-1}} S_{i,c})``

    i.e. a Plackett-Luce term per rank position, weighted by the teacher probability: the query's own
    higher-ranked keys leave the denominator, every other query's keys always stay in it.  The
    original code has no teacher temperature (T_t = 1, the default here).

    Args: q [B, d]; k [B*G, d]; teacher_scores t [B, G]; temperature tau; teacher_temperature T_t;
    ``extra_keys`` [E, d]: more negatives, always in every denominator; ``key_mask`` [B, G]: a masked
    position has no term and leaves every denominator.  Returns a scalar.
    """
    group_size = _check_teacher(q, k, teacher_scores, temperature)
    _check_mask(key_mask, q.shape[0], group_size)
    if teacher_temperature <= 0:
        raise ValueError("teacher_temperature must be positive")
    n_queries = q.shape[0]
    scores = _mask_columns(_all_scores(q, k, temperature, extra_keys), key_mask)
    rows = torch.arange(n_queries, device=scores.device)
    own_cols = rows[:, None] * group_size + torch.arange(group_size, device=scores.device)
    own = scores.gather(1, own_cols)  # [B, G]
    # Denominator of position j = logsumexp(other queries' keys ∪ own keys j..G-1); split it so all
    # G positions cost one pass: a masked logsumexp over the others plus a suffix logsumexp of own.
    # finfo.min (finite) instead of -inf keeps the B = 1 case (no other keys) free of NaN gradients.
    is_own = (torch.arange(scores.shape[1], device=scores.device) // group_size)[None, :] == rows[:, None]
    others = scores.masked_fill(is_own, torch.finfo(scores.dtype).min).logsumexp(dim=-1, keepdim=True)
    own_suffix = own.flip(-1).logcumsumexp(dim=-1).flip(-1)  # [:, j] = logsumexp(own[:, j:])
    nll = torch.logaddexp(others, own_suffix) - own  # [B, G]
    teacher = teacher_scores.detach().to(scores.dtype) / teacher_temperature
    if key_mask is not None:
        # A masked position's nll is ~ -finfo.min (it may overflow): select it away rather than weight it by 0.
        teacher = teacher.masked_fill(~key_mask, torch.finfo(teacher.dtype).min)
        nll = torch.where(key_mask, nll, torch.zeros_like(nll))
    weights = F.softmax(teacher, dim=-1)
    return (weights * nll).sum(dim=-1).mean()


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "contrastive": contrastive_loss,
    "kl_distill": kl_distill_loss,
    "stable_distill": stable_distill_loss,
}
"""Loss name (as in ``TrainingSettings.losses``) -> loss function."""


def combine_losses(parts: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """``sum_{n: weights[n] > 0} weights[n] * parts[n]``.

    The weights are applied even when a single loss is active (the original code returned a lone
    loss unweighted).  Parts without a positive weight are ignored.  Raises ``ValueError`` when no
    weight is positive or a positively weighted part is missing.
    """
    active = {name: w for name, w in weights.items() if w > 0}
    if not active:
        raise ValueError(f"no loss has a positive weight: {dict(weights)}")
    missing = sorted(set(active) - set(parts))
    if missing:
        raise ValueError(f"loss {missing} has a positive weight but was not computed; computed: {sorted(parts)}")
    total: torch.Tensor | None = None
    for name, w in active.items():
        term = w * parts[name]
        total = term if total is None else total + term
    assert total is not None
    return total


def compute_task_loss(
    q: torch.Tensor,
    k: torch.Tensor,
    teacher_scores: torch.Tensor | None,
    settings: TrainingSettings,
    temperature: float = DEFAULT_TEMPERATURE,
    extra_keys: torch.Tensor | None = None,
    key_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The weighted loss of one task's batch: ``(total, {name: unweighted part})``.

    Computes every loss of ``settings.losses`` with a positive weight and combines them with
    :func:`combine_losses`.  The group size G is read from the shapes (``k`` has ``B * G`` rows);
    ``settings.teacher_temperature`` goes to both distillation losses, ``settings.student_temperature``
    to the KL one.  ``extra_keys`` are further negatives for the contrastive and stable losses (the KL
    loss only compares a query's own keys); ``key_mask`` [B, G] marks padded slots for every loss.
    Raises ``ValueError`` when a distillation loss is active
    but ``teacher_scores`` is None.
    """
    active = {name: w for name, w in settings.losses.items() if w > 0}
    if not active:
        raise ValueError(f"no loss has a positive weight: {dict(settings.losses)}")
    unknown = sorted(set(active) - set(LOSSES))
    if unknown:
        raise ValueError(f"unknown loss {unknown}; known: {', '.join(LOSSES)}")
    needs_teacher = sorted(name for name in active if name != "contrastive")
    if needs_teacher and teacher_scores is None:
        raise ValueError(f"loss {needs_teacher} needs teacher scores, but the batch has none")
    if q.dim() != 2 or q.shape[0] == 0 or k.shape[0] % q.shape[0]:
        raise ValueError(f"expected q [B, d] and k [B*G, d], got {tuple(q.shape)} and {tuple(k.shape)}")
    group_size = k.shape[0] // q.shape[0]

    parts: dict[str, torch.Tensor] = {}
    for name in active:
        if name == "contrastive":
            parts[name] = contrastive_loss(q, k, group_size, temperature, extra_keys, key_mask)
        elif name == "kl_distill":
            assert teacher_scores is not None
            parts[name] = kl_distill_loss(
                q,
                k,
                teacher_scores,
                temperature,
                settings.teacher_temperature,
                settings.student_temperature,
                key_mask,
            )
        else:
            assert teacher_scores is not None
            parts[name] = stable_distill_loss(
                q, k, teacher_scores, temperature, settings.teacher_temperature, extra_keys, key_mask
            )
    return combine_losses(parts, active), parts
