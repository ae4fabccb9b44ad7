"""Cross-device gathering of embeddings for in-batch negatives under ``torch.distributed``.

Gradient convention (the DPR/BGE one, reference implementation §3):

* every rank gathers all queries, keys and teacher scores and computes the **same global loss**
  (a mean over all ``B = b * W`` queries of the global batch);
* :func:`gather_with_grad` keeps the autograd graph only for this rank's slot, so each rank's
  backward pass yields the part of the global gradient that flows through its local embeddings;
* DDP (or DeepSpeed) then **averages** these parts over the ``W`` ranks, i.e. every rank ends up
  with ``1/W`` of the gradient of the global loss.

Multiply the loss by :func:`loss_scale_for_ddp` (= world size) before ``backward`` to get exactly the
gradient a single process would compute on the concatenated batch.  Log the unscaled value.
This holds for every loss computed on gathered tensors, including the KL loss that only looks at
each query's own keys; do not scale a loss computed on local tensors alone (DDP's average of local
means already is the global mean).  With one process (or no process group) every function here is
the identity and the scale is 1.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when a process group is initialised with more than one rank."""
    return world_size() > 1


def world_size() -> int:
    """Number of ranks of the default process group; 1 when none is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def rank() -> int:
    """This process's rank in the default process group; 0 when none is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def _all_gather(t: torch.Tensor) -> list[torch.Tensor]:
    # all_gather neither records autograd history nor accepts non-contiguous inputs.
    local = t.detach().contiguous()
    slots = [torch.empty_like(local) for _ in range(world_size())]
    dist.all_gather(slots, local)
    return slots


def gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` from every rank along dim 0, in rank order, keeping this rank's gradient.

    ``t`` must have the same shape on every rank ([n, ...] -> [W * n, ...]).  The slot of this rank
    is the local tensor itself, so gradients reach the local embeddings; the other ranks' slots are
    constants.  Returns ``t`` unchanged without a process group of size > 1.  See the module
    docstring for why the loss must then be scaled by the world size.
    """
    if not is_distributed():
        return t
    slots: list[torch.Tensor] = _all_gather(t)
    slots[rank()] = t
    return torch.cat(slots, dim=0)


def gather_no_grad(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` from every rank along dim 0, in rank order, as a constant (e.g. teacher scores).

    Same shape rule as :func:`gather_with_grad`; returns ``t.detach()`` without a process group of size > 1.
    """
    if not is_distributed():
        return t.detach()
    return torch.cat(_all_gather(t), dim=0)


def loss_scale_for_ddp() -> float:
    """Factor to multiply the global loss by before ``backward`` so that DDP's gradient averaging
    yields exactly the gradient of the global loss: the world size (1.0 without a process group)."""
    return float(world_size())
