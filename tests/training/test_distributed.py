"""Cross-device gather: identity without a process group; exact global gradients under 2-rank DDP."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from processes import subprocess_env, torchrun

from llm_embedder.distributed import (
    gather_no_grad,
    gather_with_grad,
    is_distributed,
    loss_scale_for_ddp,
    rank,
    world_size,
)

WORKER = Path(__file__).with_name("gather_worker.py")
NPROC = 2


def _load_worker():
    spec = importlib.util.spec_from_file_location("gather_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_single_process_is_identity():
    assert (world_size(), rank(), is_distributed(), loss_scale_for_ddp()) == (1, 0, False, 1.0)
    x = torch.randn(3, 4, requires_grad=True)
    assert gather_with_grad(x) is x
    y = gather_no_grad(x)
    assert not y.requires_grad
    assert torch.equal(y, x.detach())


def _torchrun(outdir: Path) -> None:
    proc = torchrun(NPROC, [str(WORKER), str(outdir)], subprocess_env(), timeout=180)
    if proc.returncode != 0:
        pytest.fail(f"torchrun failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    outdir = tmp_path_factory.mktemp("ddp")
    _torchrun(outdir)
    return [torch.load(outdir / f"rank{r}.pt", weights_only=False) for r in range(NPROC)]


@pytest.fixture(scope="module")
def worker():
    return _load_worker()


def test_ranks_report_world(ranks):
    assert [r["rank"] for r in ranks] == list(range(NPROC))
    assert all(r["world_size"] == NPROC and r["loss_scale"] == float(NPROC) for r in ranks)


def test_gathered_tensors_are_the_global_batch_in_rank_order(ranks, worker):
    model = worker.make_model()
    queries, keys, teacher = worker.make_batch()
    with torch.no_grad():
        q, k = worker.embed(model, queries), worker.embed(model, keys)
    for r in ranks:
        torch.testing.assert_close(r["gathered"]["q"], q, atol=1e-12, rtol=0)
        torch.testing.assert_close(r["gathered"]["k"], k, atol=1e-12, rtol=0)
        assert torch.equal(r["gathered"]["t"], teacher)


def test_gather_probe_routes_gradient_to_local_rows(ranks):
    n = 2 * 3
    for r in ranks:
        probe = r["probe"]
        expected = torch.cat([torch.full((2, 3), float(i + 1), dtype=torch.float64) for i in range(NPROC)])
        assert torch.equal(probe["gathered"], expected)
        assert probe["requires_grad"] and not probe["no_grad_requires_grad"]
        # d/dx sum(gathered * w) = this rank's slice of w.
        weights = torch.arange(NPROC * n, dtype=torch.float64).view(NPROC * 2, 3)
        assert torch.equal(probe["grad"], weights[r["rank"] * 2 : (r["rank"] + 1) * 2])


@pytest.mark.parametrize("case", ["contrastive", "kl_distill", "stable_distill", "combined"])
def test_ddp_matches_single_process_on_concatenated_batch(ranks, worker, case):
    model = worker.make_model()
    queries, keys, teacher = worker.make_batch()
    loss = worker.LOSS_CASES[case](worker.embed(model, queries), worker.embed(model, keys), teacher)
    loss.backward()
    expected = worker.grads_of(model)
    assert sum(g.abs().sum().item() for g in expected.values()) > 1e-3  # a non-trivial check

    for r in ranks:
        torch.testing.assert_close(r[case]["loss"], loss.detach(), atol=1e-10, rtol=1e-10)
        assert r[case]["grads"].keys() == expected.keys()
        for name, grad in expected.items():
            torch.testing.assert_close(r[case]["grads"][name], grad, atol=1e-10, rtol=1e-8, msg=f"{case} {name}")
