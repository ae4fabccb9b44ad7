"""Homogeneous, distributed, deterministic and exactly resumable batch sampler.

LLM-Embedder trains on many task datasets at once. Every *global* batch (all devices of one optimisation
step together) is drawn from a single dataset, so the in-batch and cross-device negatives of a query always
come from the same task. This module re-implements that sampling (the original ``SameDatasetTrainDataset``,
mode ``epoch``) as a plain batch sampler that can be handed to ``torch.utils.data.DataLoader(batch_sampler=...)``.

Differences from the original, on purpose:

* No row is dropped. The original cut every dataset to a multiple of the global batch size, losing up to
  ``b*W - 1`` rows per dataset and epoch, and silently ignoring any dataset smaller than one global batch.
  Here the last partial global batch of a dataset is completed by wrapping around to the start of that
  dataset's shuffled list, so every dataset contributes ``ceil(rows / (b*W))`` global batches per epoch.
* Optional per-dataset weights give each dataset ``round(w * n)`` rows per epoch (``w=2``: every row twice,
  from two independent shuffles; ``w=0.5``: a random half), without duplicating files on disk.
* The sampling position (epoch, step) is part of a ``state_dict`` so a resumed run yields exactly the batches
  an uninterrupted run would have yielded. All randomness comes from ``numpy.random.default_rng((seed, epoch))``,
  never from global RNG state, so every rank computes the same plan without communicating.
* ``__len__`` is the true number of steps of an epoch and DataLoader workers are allowed (the sampler runs in the
  main process; the dataset stays stateless).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

__all__ = ["HomogeneousBatchSampler"]

# Keys of ``state_dict`` that must match the sampler a state is loaded into.
_CONFIG_KEYS = ("dataset_sizes", "batch_size", "world_size", "seed", "weights", "homogeneous")


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


class HomogeneousBatchSampler(Sampler[list[int]]):
    """Yield this rank's per-device batches (lists of global row indices) over several concatenated datasets.

    Dataset ``d`` owns the global indices ``[offset_d, offset_d + n_d)`` where ``offset_d = n_0 + ... + n_{d-1}``
    (the layout of ``torch.utils.data.ConcatDataset``).

    One epoch is planned as follows, identically on every rank:

    1. Each dataset contributes ``k_d = round(w_d * n_d)`` rows (``w_d = 1`` without weights; a dataset with
       ``w_d > 0`` always contributes at least one row; ``w_d = 0`` removes it): ``k_d // n_d`` full shuffles of
       its rows followed by the first ``k_d % n_d`` rows of one more shuffle.
    2. ``homogeneous=True``: each dataset's list is cut into global batches of ``batch_size * world_size``
       indices, the last one completed by wrapping around to the start of the list; the global batches of all
       datasets are then shuffled together. ``homogeneous=False`` (ablation): all lists are pooled, shuffled and
       cut the same way, so batches mix datasets.
    3. Rank ``r`` takes slice ``[r * batch_size, (r + 1) * batch_size)`` of each global batch.

    A global batch repeats a row only when a dataset has fewer than ``batch_size * world_size`` rows, or where a
    batch straddles two shuffles of a dataset with ``w_d > 1`` (or the wrap-around of such a dataset).

    Iterating yields the remaining batches of the current epoch and then moves the position to the start of the
    next epoch, so ``for batch in sampler`` repeated walks through successive epochs; ``iter_steps`` does the same
    without epoch boundaries. Only one iterator may be active at a time: the position is shared state.
    """

    def __init__(
        self,
        dataset_sizes: Sequence[int],
        batch_size: int,
        *,
        world_size: int = 1,
        rank: int = 0,
        seed: int = 0,
        weights: Sequence[float] | None = None,
        homogeneous: bool = True,
    ) -> None:
        sizes = list(dataset_sizes)
        if not sizes:
            raise ValueError("dataset_sizes is empty: at least one dataset is needed")
        for d, n in enumerate(sizes):
            if not _is_int(n) or n < 1:
                raise ValueError(f"dataset {d} has size {n!r}; every dataset needs at least one row")
        if not _is_int(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1 (rows per device), got {batch_size!r}")
        if not _is_int(world_size) or world_size < 1:
            raise ValueError(f"world_size must be an integer >= 1, got {world_size!r}")
        if not _is_int(rank) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}) for world_size={world_size}, got {rank!r}")
        if not _is_int(seed) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")

        if weights is None:
            resolved = [1.0] * len(sizes)
        else:
            resolved = [float(w) for w in weights]
            if len(resolved) != len(sizes):
                raise ValueError(f"got {len(resolved)} weights for {len(sizes)} datasets")
            for d, w in enumerate(resolved):
                if not math.isfinite(w) or w < 0:
                    raise ValueError(f"weight of dataset {d} must be finite and >= 0, got {w}")

        # Rows per epoch; Python's round() rounds halves to even. A positive weight never rounds a dataset away.
        rows = [0 if w == 0 else max(1, round(w * n)) for w, n in zip(resolved, sizes, strict=True)]
        if sum(rows) == 0:
            raise ValueError("all weights are zero: no dataset would contribute any row")

        self._sizes: tuple[int, ...] = tuple(int(n) for n in sizes)
        self._offsets: tuple[int, ...] = tuple(int(x) for x in np.cumsum([0, *self._sizes[:-1]]))
        self._weights: tuple[float, ...] = tuple(resolved)
        self._rows: tuple[int, ...] = tuple(rows)
        self.batch_size = int(batch_size)
        self.world_size = int(world_size)
        self.rank = int(rank)
        self.seed = int(seed)
        self.homogeneous = bool(homogeneous)

        g = self.global_batch_size
        if self.homogeneous:
            self._num_steps = sum(-(-k // g) for k in rows)
        else:
            self._num_steps = -(-sum(rows) // g)

        # Position of the next batch to yield. Invariant: 0 <= step < len(self).
        self._epoch = 0
        self._step = 0
        # One-epoch cache of (epoch, global batches [steps, global_batch_size], owning dataset per batch or -1).
        self._plan: tuple[int, np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ properties

    @property
    def global_batch_size(self) -> int:
        """Indices per optimisation step over all devices: ``batch_size * world_size``."""
        return self.batch_size * self.world_size

    @property
    def dataset_sizes(self) -> tuple[int, ...]:
        return self._sizes

    @property
    def weights(self) -> tuple[float, ...]:
        """Resolved weights (all 1.0 when none were given)."""
        return self._weights

    @property
    def rows_per_epoch(self) -> tuple[int, ...]:
        """Rows each dataset contributes per epoch before wrap-around completion: ``round(w_d * n_d)``."""
        return self._rows

    @property
    def epoch(self) -> int:
        """Epoch of the next batch."""
        return self._epoch

    @property
    def step(self) -> int:
        """Index within its epoch of the next batch."""
        return self._step

    def __len__(self) -> int:
        """Steps (global batches) per epoch; the same for every epoch."""
        return self._num_steps

    # ------------------------------------------------------------------ planning

    def _dataset_rows(self, rng: np.random.Generator, d: int) -> np.ndarray:
        """This epoch's ``round(w_d * n_d)`` global indices of dataset ``d``, shuffled."""
        n, k = self._sizes[d], self._rows[d]
        full, rem = divmod(k, n)
        parts = [rng.permutation(n) for _ in range(full)]
        if rem:
            parts.append(rng.permutation(n)[:rem])
        if not parts:
            return np.empty(0, dtype=np.int64)
        return np.concatenate(parts).astype(np.int64) + self._offsets[d]

    def _cut(self, rows: np.ndarray) -> np.ndarray:
        """Cut into global batches, completing the last one by wrapping around to the start of ``rows``."""
        g = self.global_batch_size
        steps = -(-len(rows) // g)
        return np.resize(rows, steps * g).reshape(steps, g)  # np.resize repeats cyclically

    def _epoch_plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        if self._plan is not None and self._plan[0] == epoch:
            return self._plan[1], self._plan[2]
        rng = np.random.default_rng((self.seed, epoch))
        per_dataset = [self._dataset_rows(rng, d) for d in range(len(self._sizes))]
        if self.homogeneous:
            blocks = [self._cut(rows) for rows in per_dataset if len(rows)]
            owners = [np.full(len(b), d) for d, b in zip(self._active_datasets(), blocks, strict=True)]
            order = rng.permutation(self._num_steps)
            batches, owner = np.concatenate(blocks)[order], np.concatenate(owners)[order]
        else:
            pooled = np.concatenate(per_dataset)
            batches = self._cut(pooled[rng.permutation(len(pooled))])
            owner = np.full(len(batches), -1)
        batches.flags.writeable = False
        owner.flags.writeable = False
        self._plan = (epoch, batches, owner)
        return batches, owner

    def _active_datasets(self) -> list[int]:
        return [d for d, k in enumerate(self._rows) if k > 0]

    def global_batches(self, epoch: int | None = None) -> np.ndarray:
        """Read-only array ``[len(self), global_batch_size]`` of all ranks' indices for ``epoch`` (default: current).

        Row ``s`` is step ``s``; rank ``r`` gets columns ``[r * batch_size, (r + 1) * batch_size)``.
        """
        return self._epoch_plan(self._epoch if epoch is None else self._check_epoch(epoch))[0]

    # ------------------------------------------------------------------ iteration

    def __iter__(self) -> Iterator[list[int]]:
        """Yield this rank's batches from the current position to the end of the epoch, then roll over."""
        epoch, start = self._epoch, self._step
        batches, _ = self._epoch_plan(epoch)
        lo, hi = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        for s in range(start, self._num_steps):
            if (self._epoch, self._step) != (epoch, s):
                raise RuntimeError(
                    "sampler position changed during iteration (two live iterators, or set_epoch/load_state_dict "
                    "while iterating); start a new iterator instead"
                )
            # Commit the position of the *next* batch before handing this one out, so state_dict() taken after
            # receiving a batch resumes right after it.
            self._epoch, self._step = (epoch + 1, 0) if s + 1 == self._num_steps else (epoch, s + 1)
            yield batches[s, lo:hi].tolist()

    def iter_steps(self, num_steps: int | None = None) -> Iterator[list[int]]:
        """Yield ``num_steps`` batches (forever if None) from the current position, crossing epochs as needed.

        This is the loop for a trainer that runs ``max_steps`` optimisation steps rather than epochs.
        """
        if num_steps is not None and (not _is_int(num_steps) or num_steps < 0):
            raise ValueError(f"num_steps must be a non-negative integer or None, got {num_steps!r}")
        remaining = num_steps
        while remaining is None or remaining > 0:
            for batch in self:
                yield batch
                if remaining is not None:
                    remaining -= 1
                    if remaining == 0:
                        return

    # ------------------------------------------------------------------ position

    def _check_epoch(self, epoch: int) -> int:
        if not _is_int(epoch) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        return int(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Move to the start of ``epoch``, like ``DistributedSampler.set_epoch``.

        Setting the epoch the sampler is already in keeps the position, so a resumed run may call
        ``set_epoch(state["epoch"])`` in its epoch loop without losing the restored step.
        """
        epoch = self._check_epoch(epoch)
        if epoch != self._epoch:
            self._epoch, self._step = epoch, 0

    def seek(self, global_step: int) -> None:
        """Move to the position reached after ``global_step`` batches counted from epoch 0, step 0.

        Useful when the trainer counts consumed steps itself (e.g. a DataLoader with workers prefetches batches,
        so the sampler's own position runs ahead of the training loop).
        """
        if not _is_int(global_step) or global_step < 0:
            raise ValueError(f"global_step must be a non-negative integer, got {global_step!r}")
        self._epoch, self._step = divmod(int(global_step), self._num_steps)

    def state_dict(self) -> dict[str, Any]:
        """Position of the next batch plus the configuration it is valid for (JSON-serialisable).

        The state is identical on every rank, so saving it from rank 0 is enough.
        """
        return {
            "epoch": self._epoch,
            "step": self._step,
            "dataset_sizes": list(self._sizes),
            "batch_size": self.batch_size,
            "world_size": self.world_size,
            "seed": self.seed,
            "weights": list(self._weights),
            "homogeneous": self.homogeneous,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a position saved by ``state_dict``; raise ValueError if it was saved under another config."""
        missing = [k for k in ("epoch", "step", *_CONFIG_KEYS) if k not in state]
        if missing:
            raise ValueError(f"sampler state lacks keys {missing}")
        mine = self.state_dict()
        saved = {
            "dataset_sizes": [int(n) for n in state["dataset_sizes"]],
            "batch_size": state["batch_size"],
            "world_size": state["world_size"],
            "seed": state["seed"],
            "weights": [float(w) for w in state["weights"]],
            "homogeneous": bool(state["homogeneous"]),
        }
        diffs = [f"{k}: checkpoint {saved[k]!r}, now {mine[k]!r}" for k in _CONFIG_KEYS if saved[k] != mine[k]]
        if diffs:
            hint = ""
            if saved["world_size"] != mine["world_size"] or saved["batch_size"] != mine["batch_size"]:
                hint = (
                    " The batch plan depends on the global batch size (batch_size * world_size), so a run cannot "
                    "be resumed with a different batch size or number of processes (world size may not change)."
                )
            raise ValueError("sampler state does not match this sampler's configuration: " + "; ".join(diffs) + hint)
        epoch, step = state["epoch"], state["step"]
        if not _is_int(epoch) or epoch < 0 or not _is_int(step) or not 0 <= step <= self._num_steps:
            raise ValueError(f"invalid sampler position epoch={epoch!r}, step={step!r} (steps per epoch: {len(self)})")
        # step == len(self) (end of an epoch) is the same position as the start of the next one.
        self._epoch, self._step = divmod(int(epoch) * self._num_steps + int(step), self._num_steps)

    # ------------------------------------------------------------------ lookup

    def dataset_of(self, index: int) -> int:
        """Dataset that owns global row ``index``."""
        total = self._offsets[-1] + self._sizes[-1]
        if not _is_int(index) or not 0 <= index < total:
            raise ValueError(f"index {index!r} is outside [0, {total})")
        return bisect.bisect_right(self._offsets, int(index)) - 1

    def batch_dataset(self, batch: Sequence[int]) -> int:
        """Dataset of a (homogeneous) batch; raises ValueError if the batch is empty or mixes datasets."""
        if len(batch) == 0:
            raise ValueError("empty batch has no dataset")
        owners = {self.dataset_of(i) for i in batch}
        if len(owners) != 1:
            raise ValueError(f"batch mixes datasets {sorted(owners)}")
        return owners.pop()
