"""Tests for ``llm_embedder.data.sampler.HomogeneousBatchSampler``.

Expected values are recomputed here by brute force (counting, simulating the wrap-around) rather than by calling
the sampler's own helpers.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from processes import torchrun

from llm_embedder.data.sampler import HomogeneousBatchSampler

WORKER = Path(__file__).with_name("sampler_worker.py")


# ---------------------------------------------------------------------------- helpers


def make_ranks(sizes, batch_size, world_size, **kwargs) -> list[HomogeneousBatchSampler]:
    return [
        HomogeneousBatchSampler(sizes, batch_size, world_size=world_size, rank=r, **kwargs) for r in range(world_size)
    ]


def run_ranks(samplers, num_steps) -> list[list[list[int]]]:
    """steps[s][r] = rank r's batch at step s."""
    per_rank = [list(s.iter_steps(num_steps)) for s in samplers]
    return [list(step) for step in zip(*per_rank, strict=True)]


def owner(sizes, index) -> int:
    """Brute-force dataset lookup."""
    for d in range(len(sizes)):
        if index < sum(sizes[: d + 1]):
            return d
    raise AssertionError(index)


def rows_of(sizes, d) -> range:
    start = sum(sizes[:d])
    return range(start, start + sizes[d])


def expected_rows(n, w) -> int:
    """round(w * n), half to even, but at least one row for a positive weight."""
    if w == 0:
        return 0
    return max(1, int(np.round(w * n)))


def ceil_div(a, b) -> int:
    return (a + b - 1) // b


def wraparound_histogram(k, slots) -> list[int]:
    """Sorted per-position counts when a list of k items fills `slots` slots cyclically."""
    counts = [0] * k
    for i in range(slots):
        counts[i % k] += 1
    return sorted(counts)


def epoch_counts(sizes, batch_size, world_size, **kwargs) -> tuple[Counter, int]:
    """Counts of every index over one epoch, gathered from all ranks, and the number of steps."""
    samplers = make_ranks(sizes, batch_size, world_size, **kwargs)
    steps = run_ranks(samplers, len(samplers[0]))
    return Counter(i for step in steps for batch in step for i in batch), len(steps)


# ---------------------------------------------------------------------------- distributed structure


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("homogeneous", [True, False])
def test_ranks_partition_each_global_batch(world_size, homogeneous):
    sizes, b = [11, 30, 7, 16], 2  # every dataset has >= b*W rows, so no global batch repeats a row
    samplers = make_ranks(sizes, b, world_size, seed=5, homogeneous=homogeneous)
    assert len({len(s) for s in samplers}) == 1
    steps = run_ranks(samplers, 2 * len(samplers[0]) + 1)
    for step in steps:
        assert all(len(batch) == b for batch in step)
        union = [i for batch in step for i in batch]
        assert len(union) == b * world_size
        assert len(set(union)) == b * world_size  # ranks disjoint (and no repeats)
        if homogeneous:
            owners = {owner(sizes, i) for i in union}
            assert len(owners) == 1
            assert {s.batch_dataset(batch) for s, batch in zip(samplers, step, strict=True)} == owners
    # All ranks agree on the position.
    assert len({json.dumps(s.state_dict()) for s in samplers}) == 1


def test_rank_slices_of_global_batches():
    samplers = make_ranks([9, 5], 2, 3, seed=1)
    plan = samplers[0].global_batches()
    for r, s in enumerate(samplers):
        assert list(s) == [row[2 * r : 2 * r + 2].tolist() for row in plan]
        np.testing.assert_array_equal(s.global_batches(0), plan)


# ---------------------------------------------------------------------------- coverage and shares


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_epoch_covers_every_row_with_predicted_repeats(world_size):
    sizes, b = [5, 13, 3, 8], 2
    g = b * world_size
    counts, num_steps = epoch_counts(sizes, b, world_size, seed=3)
    assert num_steps == sum(ceil_div(n, g) for n in sizes)
    for d, n in enumerate(sizes):
        got = sorted(counts[i] for i in rows_of(sizes, d))
        assert min(got) >= 1  # no row dropped, even for a dataset smaller than a global batch
        assert got == wraparound_histogram(n, ceil_div(n, g) * g)


def test_dataset_smaller_than_global_batch_still_used():
    sizes = [100, 3]
    samplers = make_ranks(sizes, 4, 2, seed=0)
    steps = run_ranks(samplers, len(samplers[0]))
    small = [step for step in steps if owner(sizes, step[0][0]) == 1]
    assert len(small) == 1
    counts = Counter(i for batch in small[0] for i in batch)
    assert set(counts) == {100, 101, 102}
    assert sorted(counts.values()) == wraparound_histogram(3, 8) == [2, 3, 3]


@pytest.mark.parametrize("homogeneous", [True, False])
def test_weighted_shares_exact(homogeneous):
    # Every round(w*n) is a multiple of the global batch size (4), so there is no wrap-around to blur the counts.
    sizes, weights, b, world = [10, 8, 8, 6], [2.0, 0.5, 1.5, 0.0], 2, 2
    counts, num_steps = epoch_counts(sizes, b, world, seed=11, weights=weights, homogeneous=homogeneous)
    k = [expected_rows(n, w) for n, w in zip(sizes, weights, strict=True)]
    assert k == [20, 4, 12, 0]
    assert num_steps == sum(k) // 4
    per_dataset = [sorted(counts[i] for i in rows_of(sizes, d)) for d in range(len(sizes))]
    assert per_dataset[0] == [2] * 10  # w=2: each row exactly twice
    assert per_dataset[1] == [0] * 4 + [1] * 4  # w=0.5: a random half, once each
    assert per_dataset[2] == [1] * 4 + [2] * 4  # w=1.5: one full pass plus half of another
    assert per_dataset[3] == [0] * 6  # w=0: excluded


def test_weighted_shares_with_wraparound():
    sizes, weights, b, world = [7, 10, 9, 4], [2.0, 0.3, 1.0, 0.1], 3, 2
    g = b * world
    sampler = HomogeneousBatchSampler(sizes, b, world_size=world, weights=weights)
    k = [expected_rows(n, w) for n, w in zip(sizes, weights, strict=True)]
    assert list(sampler.rows_per_epoch) == k == [14, 3, 9, 1]
    assert len(sampler) == sum(ceil_div(x, g) for x in k)
    for epoch in range(3):
        plan = sampler.global_batches(epoch)
        counts = Counter(plan.ravel().tolist())
        for d, n in enumerate(sizes):
            total = sum(counts[i] for i in rows_of(sizes, d))
            assert total == ceil_div(k[d], g) * g
            distinct = sum(counts[i] > 0 for i in rows_of(sizes, d))
            assert distinct == min(n, k[d])
        assert min(counts[i] for i in rows_of(sizes, 0)) >= 2


def test_rows_per_epoch_rounding():
    sampler = HomogeneousBatchSampler([5, 7, 3, 1000], 2, weights=[0.5, 0.5, 0.01, 0.0001])
    assert sampler.rows_per_epoch == (2, 4, 1, 1)  # round-half-even; a positive weight keeps >= 1 row
    assert HomogeneousBatchSampler([5, 7], 2).weights == (1.0, 1.0)


# ---------------------------------------------------------------------------- determinism


def test_same_seed_and_epoch_same_batches_without_global_rng():
    args = ([9, 14, 6], 2)
    kwargs = dict(world_size=2, rank=1, seed=42, weights=[1.0, 0.5, 2.0])
    np.random.seed(0)
    random.seed(0)
    a = HomogeneousBatchSampler(*args, **kwargs)
    a.set_epoch(3)
    first = list(a)
    state = np.random.get_state()[1].copy()
    np.random.seed(99)
    random.seed(99)
    b = HomogeneousBatchSampler(*args, **kwargs)
    b.set_epoch(3)
    assert list(b) == first
    np.random.seed(0)
    a.set_epoch(4)
    list(a)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # global RNG untouched


def test_epochs_and_seeds_differ():
    def plan(seed, epoch):
        return HomogeneousBatchSampler([20, 30, 10], 2, world_size=2, seed=seed).global_batches(epoch).tolist()

    assert plan(0, 0) == plan(0, 0)
    assert plan(0, 0) != plan(0, 1)
    assert plan(0, 0) != plan(1, 0)
    assert sorted(map(sorted, plan(0, 0))) != sorted(map(sorted, plan(0, 1)))  # composition changes, not only order


def test_iteration_rolls_over_to_next_epoch():
    sampler = HomogeneousBatchSampler([6, 4], 2, seed=2)
    epoch0, epoch1 = list(sampler), list(sampler)
    assert len(epoch0) == len(epoch1) == len(sampler) == 5
    assert (sampler.epoch, sampler.step) == (2, 0)
    reference = HomogeneousBatchSampler([6, 4], 2, seed=2)
    reference.set_epoch(1)
    assert list(reference) == epoch1
    sampler.set_epoch(0)
    assert list(sampler) == epoch0


def test_works_as_dataloader_batch_sampler():
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    sizes = [6, 5]
    sampler = HomogeneousBatchSampler(sizes, 2, world_size=2, rank=1, seed=9)
    expected = list(HomogeneousBatchSampler(sizes, 2, world_size=2, rank=1, seed=9))
    loader = DataLoader(TensorDataset(torch.arange(sum(sizes))), batch_sampler=sampler)
    assert len(loader) == len(sampler)
    assert [batch[0].tolist() for batch in loader] == expected


# ---------------------------------------------------------------------------- mixed mode


def test_mixed_mode_mixes_and_covers():
    sizes, b = [20, 20, 20], 4
    sampler = HomogeneousBatchSampler(sizes, b, seed=0, homogeneous=False)
    batches = list(sampler)
    assert len(batches) == 15
    assert any(len({owner(sizes, i) for i in batch}) > 1 for batch in batches)
    assert sorted(i for batch in batches for i in batch) == list(range(60))
    mixed = next(batch for batch in batches if len({owner(sizes, i) for i in batch}) > 1)
    with pytest.raises(ValueError, match="mixes datasets"):
        sampler.batch_dataset(mixed)


def test_mixed_mode_wraparound():
    sizes = [5, 6]
    counts, num_steps = epoch_counts(sizes, 2, 2, seed=4, homogeneous=False)
    assert num_steps == 3
    assert sorted(counts[i] for i in range(11)) == wraparound_histogram(11, 12)


# ---------------------------------------------------------------------------- resumption


@pytest.mark.parametrize("homogeneous", [True, False])
@pytest.mark.parametrize("world_size", [1, 3])
def test_resume_equals_uninterrupted(homogeneous, world_size):
    kwargs = dict(world_size=world_size, seed=7, weights=[1.0, 1.5, 0.5], homogeneous=homogeneous)
    sizes, b = [5, 13, 7], 2

    def fresh(rank):
        return HomogeneousBatchSampler(sizes, b, rank=rank, **kwargs)

    n = len(fresh(0))
    total = 3 * n + 2
    for rank in range(world_size):
        reference = list(fresh(rank).iter_steps(total))
        for k in sorted({0, 1, n - 1, n, n + 1, 2 * n + 3, total}):
            first = fresh(rank)
            head = list(first.iter_steps(k))
            state = json.loads(json.dumps(first.state_dict()))  # survives a JSON checkpoint
            second = fresh(rank)
            second.load_state_dict(state)
            assert head + list(second.iter_steps(total - k)) == reference, (rank, k)
            seeker = fresh(rank)
            seeker.seek(k)
            assert seeker.state_dict() == first.state_dict()


def test_resume_with_epoch_loop_and_break():
    sizes, b = [9, 4, 6], 2

    def train(sampler, epochs, stop_after=None):
        seen = []
        for epoch in range(sampler.epoch, epochs):
            sampler.set_epoch(epoch)  # keeps a restored mid-epoch position
            for batch in sampler:
                seen.append(batch)
                if stop_after is not None and len(seen) == stop_after:
                    return seen
        return seen

    reference = train(HomogeneousBatchSampler(sizes, b, seed=3), 3)
    interrupted = HomogeneousBatchSampler(sizes, b, seed=3)
    head = train(interrupted, 3, stop_after=len(interrupted) + 2)
    resumed = HomogeneousBatchSampler(sizes, b, seed=3)
    resumed.load_state_dict(interrupted.state_dict())
    assert (resumed.epoch, resumed.step) == (1, 2)
    assert head + train(resumed, 3) == reference


def test_state_identical_across_ranks_and_end_of_epoch_position():
    samplers = make_ranks([8, 5], 2, 2, seed=1)
    for s in samplers:
        list(s)
    states = [s.state_dict() for s in samplers]
    assert states[0] == states[1]
    assert (states[0]["epoch"], states[0]["step"]) == (1, 0)
    other = HomogeneousBatchSampler([8, 5], 2, world_size=2, rank=1, seed=1)
    other.load_state_dict({**states[0], "epoch": 0, "step": len(other)})  # end of epoch 0 == start of epoch 1
    assert (other.epoch, other.step) == (1, 0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(world_size=4, rank=0), "world size may not change"),
        (dict(batch_size=3), "batch_size"),
        (dict(seed=1), "seed"),
        (dict(sizes=[5, 14]), "dataset_sizes"),
        (dict(weights=[1.0, 2.0]), "weights"),
        (dict(homogeneous=False), "homogeneous"),
    ],
)
def test_load_rejects_other_config(change, message):
    base = dict(sizes=[5, 13], batch_size=2, world_size=2, rank=1, seed=0, weights=None, homogeneous=True)

    def build(cfg):
        return HomogeneousBatchSampler(
            cfg["sizes"],
            cfg["batch_size"],
            world_size=cfg["world_size"],
            rank=cfg["rank"],
            seed=cfg["seed"],
            weights=cfg["weights"],
            homogeneous=cfg["homogeneous"],
        )

    state = build(base).state_dict()
    with pytest.raises(ValueError, match=message):
        build({**base, **change}).load_state_dict(state)


def test_load_accepts_equivalent_weights_and_rejects_bad_state():
    state = HomogeneousBatchSampler([5, 13], 2, weights=None).state_dict()
    HomogeneousBatchSampler([5, 13], 2, weights=[1, 1]).load_state_dict(state)  # None means all ones
    sampler = HomogeneousBatchSampler([5, 13], 2)
    with pytest.raises(ValueError, match="lacks keys"):
        sampler.load_state_dict({"epoch": 0, "step": 0})
    with pytest.raises(ValueError, match="invalid sampler position"):
        sampler.load_state_dict({**state, "step": len(sampler) + 1})
    with pytest.raises(ValueError, match="invalid sampler position"):
        sampler.load_state_dict({**state, "epoch": -1})


def test_two_live_iterators_are_refused():
    sampler = HomogeneousBatchSampler([10, 10], 2)
    a, b = iter(sampler), iter(sampler)
    next(a)
    next(b)  # b starts from the position a left
    with pytest.raises(RuntimeError, match="position changed"):
        next(a)


# ---------------------------------------------------------------------------- lookup and validation


def test_dataset_lookup():
    sizes = [3, 1, 4]
    sampler = HomogeneousBatchSampler(sizes, 2)
    assert [sampler.dataset_of(i) for i in range(8)] == [owner(sizes, i) for i in range(8)] == [0, 0, 0, 1, 2, 2, 2, 2]
    assert sampler.batch_dataset([4, 5, 7]) == 2
    for bad in (-1, 8):
        with pytest.raises(ValueError, match="outside"):
            sampler.dataset_of(bad)
    with pytest.raises(ValueError, match="empty batch"):
        sampler.batch_dataset([])


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (([], 2), {}, "empty"),
        (([4, 0], 2), {}, "dataset 1 has size 0"),
        (([4], 0), {}, "batch_size"),
        (([4], 2), dict(world_size=0), "world_size"),
        (([4], 2), dict(world_size=2, rank=2), "rank"),
        (([4], 2), dict(rank=-1), "rank"),
        (([4], 2), dict(seed=-3), "seed"),
        (([4, 5], 2), dict(weights=[1.0, -0.5]), "weight of dataset 1"),
        (([4, 5], 2), dict(weights=[1.0]), "1 weights for 2 datasets"),
        (([4, 5], 2), dict(weights=[0.0, 0.0]), "all weights are zero"),
        (([4, 5], 2), dict(weights=[1.0, float("nan")]), "finite"),
    ],
)
def test_invalid_arguments(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        HomogeneousBatchSampler(*args, **kwargs)


def test_invalid_positions():
    sampler = HomogeneousBatchSampler([4], 2)
    for call in (lambda: sampler.set_epoch(-1), lambda: sampler.seek(-1), lambda: list(sampler.iter_steps(-1))):
        with pytest.raises(ValueError):
            call()


# ---------------------------------------------------------------------------- real processes


def test_two_real_processes(tmp_path):
    """Two gloo processes under torch.distributed.run: global batches are homogeneous and ranks disjoint."""
    proc = torchrun(2, [str(WORKER), str(tmp_path)], {**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert proc.returncode == 0, f"torch.distributed.run failed:\n{proc.stdout}\n{proc.stderr}"
    records = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [rec["rank"] for rec in records] == [0, 1]
    assert all(rec["world_size"] == 2 for rec in records)
    sizes, b, n = records[0]["sizes"], records[0]["batch_size"], records[0]["steps_per_epoch"]
    own = [rec["batches"] for rec in records]
    assert len(own[0]) == len(own[1]) == 2 * n + 3
    for rec in records:
        assert rec["gathered"] == own  # all_gather across the real processes saw the same batches
        assert rec["states"][0] == rec["states"][1]
    assert records[0]["datasets"] == records[1]["datasets"]
    for step, (b0, b1) in enumerate(zip(*own, strict=True)):
        assert len(b0) == len(b1) == b
        assert not set(b0) & set(b1), step
        assert len({owner(sizes, i) for i in b0 + b1}) == 1, step
        assert owner(sizes, b0[0]) == records[0]["datasets"][step]
    # The same plan computed in this process (ranks faked) matches the real processes.
    weights = [1.0, 0.5, 1.0, 1.0]
    fake = run_ranks(make_ranks(sizes, b, 2, seed=1234, weights=weights), 2 * n + 3)
    assert [list(step) for step in zip(*own, strict=True)] == fake
