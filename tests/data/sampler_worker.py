"""Worker for the multi-process sampler test; run it under ``torch.distributed.run`` with the gloo backend.

Each process builds its own ``HomogeneousBatchSampler`` from the rank and world size that torch.distributed
reports, runs a few epochs' worth of steps (resuming halfway from a state_dict into a fresh sampler), exchanges
the batches with ``all_gather_object`` and writes ``rank<r>.json`` into the output folder given as argument.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist

from llm_embedder.data.sampler import HomogeneousBatchSampler

# Every dataset has at least one global batch (2 ranks x 3 rows) of rows, so no global batch repeats a row.
SIZES = [7, 13, 6, 9]
WEIGHTS = [1.0, 0.5, 1.0, 1.0]
BATCH_SIZE = 3
SEED = 1234


def main(outdir: Path) -> None:
    dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()

    def make() -> HomogeneousBatchSampler:
        return HomogeneousBatchSampler(SIZES, BATCH_SIZE, world_size=world_size, rank=rank, seed=SEED, weights=WEIGHTS)

    sampler = make()
    total = 2 * len(sampler) + 3  # crosses two epoch boundaries
    first = len(sampler) - 1  # interrupt one step before the first boundary
    batches = list(sampler.iter_steps(first))
    state = sampler.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    batches += list(resumed.iter_steps(total - first))

    gathered: list = [None] * world_size
    dist.all_gather_object(gathered, batches)
    states: list = [None] * world_size
    dist.all_gather_object(states, state)

    record = {
        "rank": rank,
        "world_size": world_size,
        "batch_size": BATCH_SIZE,
        "sizes": SIZES,
        "steps_per_epoch": len(sampler),
        "batches": batches,
        "datasets": [resumed.batch_dataset(b) for b in batches],
        "gathered": gathered,
        "states": states,
    }
    (outdir / f"rank{rank}.json").write_text(json.dumps(record))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
