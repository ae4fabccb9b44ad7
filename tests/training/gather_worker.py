"""torchrun worker for test_distributed.py: DDP over gloo, gathered losses, gradients saved per rank.

Run as ``python -m torch.distributed.run --nproc_per_node 2 gather_worker.py OUTDIR``.  The problem
definition (model, batch, losses) lives here too, so the test computes the single-process reference
from exactly the same pieces.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from llm_embedder.tasks import TrainingSettings
from llm_embedder.training.losses import compute_task_loss, contrastive_loss, kl_distill_loss, stable_distill_loss

GLOBAL_QUERIES = 6
GROUP_SIZE = 3
IN_DIM, HIDDEN, OUT_DIM = 7, 9, 5
TAU = 0.05

LOSS_CASES: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "contrastive": lambda q, k, t: contrastive_loss(q, k, GROUP_SIZE, TAU),
    "kl_distill": lambda q, k, t: kl_distill_loss(q, k, t, TAU, teacher_temperature=0.5, student_temperature=2.0),
    "stable_distill": lambda q, k, t: stable_distill_loss(q, k, t, TAU, teacher_temperature=1.0),
    "combined": lambda q, k, t: compute_task_loss(
        q,
        k,
        t,
        TrainingSettings(losses={"contrastive": 0.3, "kl_distill": 0.5, "stable_distill": 1.0}, group_size=GROUP_SIZE),
        TAU,
    )[0],
}


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)  # identical weights on every rank and in the test process
    return torch.nn.Sequential(
        torch.nn.Linear(IN_DIM, HIDDEN), torch.nn.Tanh(), torch.nn.Linear(HIDDEN, OUT_DIM)
    ).double()


def make_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    queries = torch.randn(GLOBAL_QUERIES, IN_DIM, generator=gen, dtype=torch.float64)
    keys = torch.randn(GLOBAL_QUERIES * GROUP_SIZE, IN_DIM, generator=gen, dtype=torch.float64)
    teacher = -3 * torch.rand(GLOBAL_QUERIES, GROUP_SIZE, generator=gen, dtype=torch.float64)
    return queries, keys, teacher


def embed(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return F.normalize(model(x), dim=-1)


def grads_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()}


def main(outdir: Path) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from llm_embedder.distributed import (
        gather_no_grad,
        gather_with_grad,
        loss_scale_for_ddp,
        rank,
        world_size,
    )

    dist.init_process_group("gloo")
    me, size = rank(), world_size()
    local = GLOBAL_QUERIES // size
    queries, keys, teacher = make_batch()
    queries = queries[me * local : (me + 1) * local]
    keys = keys[me * local * GROUP_SIZE : (me + 1) * local * GROUP_SIZE]
    teacher = teacher[me * local : (me + 1) * local]

    model = DistributedDataParallel(make_model())
    results: dict[str, object] = {"rank": me, "world_size": size, "loss_scale": loss_scale_for_ddp()}
    for name, loss_fn in LOSS_CASES.items():
        model.zero_grad(set_to_none=True)
        # Keys and queries go through the tied encoder in two forward calls, as in the trainer.
        k = embed(model, keys)
        q = embed(model, queries)
        all_q, all_k, all_t = gather_with_grad(q), gather_with_grad(k), gather_no_grad(teacher)
        loss = loss_fn(all_q, all_k, all_t)
        (loss * loss_scale_for_ddp()).backward()
        results[name] = {"loss": loss.detach(), "grads": grads_of(model.module)}
        results["gathered"] = {"q": all_q.detach(), "k": all_k.detach(), "t": all_t}

    # The gather itself: a weighted sum of the gathered tensor sends gradient only to this rank's rows.
    x = torch.full((2, 3), float(me + 1), dtype=torch.float64, requires_grad=True)
    gathered = gather_with_grad(x)
    weights = torch.arange(gathered.numel(), dtype=torch.float64).view_as(gathered)
    (gathered * weights).sum().backward()
    results["probe"] = {
        "gathered": gathered.detach(),
        "grad": x.grad.clone(),
        "requires_grad": gathered.requires_grad,
        "no_grad_requires_grad": gather_no_grad(x).requires_grad,
    }

    torch.save(results, outdir / f"rank{me}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
