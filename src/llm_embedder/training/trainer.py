"""The multi-task training loop, on Hugging Face ``accelerate`` (one CPU, one GPU, or ``torchrun``/DDP).

Per step: the sampler hands every rank its slice of one global batch (from one dataset when
batches are homogeneous); each row becomes a group (query, positive, negatives, teacher scores);
queries and keys are encoded in one forward call; embeddings and teacher scores are gathered from
all ranks (cross-device negatives); the task's losses are computed on the global batch and the
loss is scaled by the world size, because DDP averages the gradients of the ranks.

Checkpoints (``output_dir/checkpoints/step-NNNNNN``) hold the model, optimizer, scheduler, sampler
position and every RNG state; they appear by one rename, so a killed run leaves only complete
ones, and a restarted run continues from the newest exactly as if it had not stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from llm_embedder.data.records import Group, TrainDataset, load_train_file, make_group
from llm_embedder.data.sampler import HomogeneousBatchSampler
from llm_embedder.distributed import gather_no_grad, gather_with_grad, loss_scale_for_ddp
from llm_embedder.errors import InputError
from llm_embedder.fileio import atomic_path, read_json, write_json
from llm_embedder.fingerprint import file_digest
from llm_embedder.freshness import Stage
from llm_embedder.models.embedder import Embedder
from llm_embedder.models.zoo import model_digest
from llm_embedder.tasks import TaskTable
from llm_embedder.training.config import TrainConfig, effective_settings
from llm_embedder.training.losses import compute_task_loss
from llm_embedder.training.precision import resolve_mixed_precision

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
MODEL_DIR = "model"
LOG_FILE = "train_log.jsonl"
_STEP_DIR = re.compile(r"^step-(\d+)$")


class PairEncoder(torch.nn.Module):
    """Encodes queries and keys in one call, so DDP sees one forward per backward."""

    def __init__(self, embedder: Embedder):
        super().__init__()
        self.embedder = embedder

    def forward(self, queries: dict[str, torch.Tensor], keys: dict[str, torch.Tensor]):
        return self.embedder(**queries), self.embedder(**keys)


@dataclass
class Progress:
    """The trainer's own position, saved with every checkpoint."""

    step: int = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])


def _allow_precision(mixed_precision: str) -> None:
    """accelerate keeps one mixed-precision setting per process and refuses a second; a process that trains
    in turn at two precisions (a float32 vs bf16 comparison) drops the old setting first.  The process
    group (PartialState) is kept."""
    from accelerate.state import AcceleratorState

    if AcceleratorState._shared_state and AcceleratorState().mixed_precision != mixed_precision:
        AcceleratorState._reset_state()


def learning_rate_factor(step: int, max_steps: int, warmup_steps: int, shape: str = "linear") -> float:
    """Warm-up then linear decay to 0 at ``max_steps``.  ``log`` warm-up is DeepSpeed's
    WarmupDecayLR default (ln(step+1)/ln(warmup)), which the original recipe ran with."""
    if step < warmup_steps:
        if shape == "log":
            return math.log(step + 1) / math.log(warmup_steps) if warmup_steps > 1 else 1.0
        return step / warmup_steps
    return max(0.0, (max_steps - step) / max(1, max_steps - warmup_steps))


def training_task_table(base: TaskTable, config: TrainConfig) -> TaskTable:
    """The task table the model is trained and saved with: instructions switched on or off, recipe overrides."""
    table = base.with_instructions("llm-embedder") if config.techniques.instructions else base
    table = table.updated(config.tasks, source="recipe tasks")
    return table if config.techniques.instructions else table.with_instructions("none")


def load_datasets(config: TrainConfig, table: TaskTable) -> list[TrainDataset]:
    if not config.datasets:
        raise ValueError("the recipe lists no datasets")
    effective = TaskTable(
        {
            n: dataclasses.replace(t, training=effective_settings(t.training, config.techniques))
            for n, t in table.items()
        }
    )
    datasets, names = [], set()
    for spec in config.datasets:
        data = load_train_file(
            spec.path, effective, name=spec.name, require_labels=not config.techniques.reward, seed=config.seed
        )
        if data.name in names:
            raise InputError(spec.path, None, None, f"dataset name {data.name!r} is used twice; give one a `name`")
        names.add(data.name)
        if not data.records:
            if not config.techniques.reward and set(data.dropped) == {"no labelled positive"}:
                # The no-reward ablation keeps only labelled data; unlabelled sets (chat, lrlm) leave the mix.
                print(f"reward off: {spec.path} has no labelled positives, left out of training")
                continue
            raise InputError(spec.path, None, None, f"no usable records (dropped: {data.dropped})")
        data.weight = spec.weight
        datasets.append(data)
    if not datasets:
        raise ValueError("no dataset has usable records")
    if not config.techniques.homogeneous:
        sizes = {d.settings.group_size for d in datasets}
        if len(sizes) > 1:
            raise ValueError(f"mixed batches need one group size for every task, got {sorted(sizes)}")
    return datasets


# Settings that say where and how often to write, not what is learnt: a resume may change them.
_BOOKKEEPING = ("output_dir", "logging_steps", "save_steps", "save_total_limit", "resume")


def recipe_identity(config: TrainConfig) -> dict[str, Any]:
    """What a checkpoint's training depends on: the data files' bytes, the base model's weights (a folder's
    files: replaced weights train again) and every learning setting."""
    settings = {k: v for k, v in config.to_dict().items() if k not in _BOOKKEEPING}
    inputs = {f"datasets[{i}] {Path(d.path).name}": file_digest(d.path) for i, d in enumerate(config.datasets)}
    inputs[f"model {config.model}"] = model_digest(config.model)
    return {"inputs": inputs, "settings": json.loads(json.dumps(settings, default=str))}


class Trainer:
    def __init__(self, config: TrainConfig, show_progress: bool = True, restart: bool = False):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.config = config
        self.show_progress = show_progress
        self.restart = restart
        self.recipe = recipe_identity(config)
        self.output_dir = Path(config.output_dir)
        # accelerate sets up a multi-process run on CPUs only when told cpu=True; without it,
        # torchrun on a machine without CUDA would start N independent single-process runs.
        on_cpu = config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available())
        self.mixed_precision = resolve_mixed_precision(config.bf16, config.mixed_precision, on_cpu)
        _allow_precision(self.mixed_precision)
        self.accelerator = Accelerator(
            mixed_precision=self.mixed_precision, cpu=on_cpu, step_scheduler_with_optimizer=False
        )
        set_seed(config.seed)

        embedder = Embedder.from_pretrained(config.model, pooling=config.pooling, device=self.accelerator.device)
        embedder.tasks = training_task_table(embedder.tasks, config)
        if config.gradient_checkpointing:
            embedder.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        embedder.model.train()
        self.embedder = embedder

        self.datasets = load_datasets(config, embedder.tasks)
        self._settings = {d.task: d.settings for d in self.datasets}
        self._task_order = sorted(self._settings)
        self._offsets = np.cumsum([0] + [len(d) for d in self.datasets[:-1]])
        self.sampler = HomogeneousBatchSampler(
            [len(d) for d in self.datasets],
            config.batch_size,
            world_size=self.accelerator.num_processes,
            rank=self.accelerator.process_index,
            seed=config.seed,
            weights=[d.weight for d in self.datasets],  # datasets left out above have no weight here
            homogeneous=config.techniques.homogeneous,
        )

        no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
        params = [(n, p) for n, p in embedder.named_parameters() if p.requires_grad]
        groups = [
            {"params": [p for n, p in params if not n.endswith(no_decay)], "weight_decay": config.weight_decay},
            {"params": [p for n, p in params if n.endswith(no_decay)], "weight_decay": 0.0},
        ]
        # The fused kernel is several times faster than the per-tensor loop on CPU as well as on GPU.
        fused = all(p.dtype.is_floating_point and p.device.type in ("cpu", "cuda") for _, p in params)
        optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, fused=fused or None)
        warmup = math.ceil(config.warmup_ratio * config.max_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: learning_rate_factor(s, config.max_steps, warmup, config.warmup_shape)
        )
        self.model, self.optimizer = self.accelerator.prepare(PairEncoder(embedder), optimizer)
        self.progress = Progress()
        for obj in (self.scheduler, self.sampler, self.progress):
            self.accelerator.register_for_checkpointing(obj)

    # ------------------------------------------------------------------ data
    def _groups(self, indices: list[int], step: int) -> list[tuple[str, Group]]:
        """(task, group) per row; the choice depends only on (seed, step, row), never on the rank or a resume."""
        out = []
        for index in indices:
            data = self.datasets[self.sampler.dataset_of(index)]
            record = data.records[index - self._offsets[self.sampler.dataset_of(index)]]
            rng = np.random.default_rng((self.config.seed, step, index))
            out.append((data.task, make_group(record, data.settings, rng)))
        return out

    def _group_size(self, rows: list[tuple[str, Group]]) -> int:
        # Every row of a global batch has the same group size (one task, or mixed batches of one size).
        return self._settings[rows[0][0]].group_size

    def _features(self, rows: list[tuple[str, Group]]) -> tuple[dict, dict]:
        """Tokenised queries and keys, each with its task's instruction and token budget.  A short group is
        padded to the group size with empty keys (cheap to encode), which ``_loss`` masks."""
        emb = self.embedder
        group_size = self._group_size(rows)
        q_feats: dict[str, list] = defaultdict(list)
        k_feats: dict[str, list] = defaultdict(list)
        for task_name, group in rows:
            task = emb.tasks[task_name]
            for name, values in emb.tokenize([task.query_text(group.query)], task.query_max_length).items():
                q_feats[name].extend(values)
            keys = [task.key_text(k) for k in group.keys] + [""] * (group_size - len(group.keys))
            for name, values in emb.tokenize(keys, task.key_max_length).items():
                k_feats[name].extend(values)
        return emb.collate(q_feats, range(len(rows))), emb.collate(k_feats, range(len(k_feats["input_ids"])))

    # ------------------------------------------------------------------ loss
    def _loss(self, rows: list[tuple[str, Group]], q: torch.Tensor, k: torch.Tensor):
        """(loss to back-propagate, {"loss": total, "loss/<task>": value}).  Each task present gets its own losses;
        in a mixed batch the other tasks' keys are extra negatives and the task losses are weighted
        by their share of the queries, so the total stays a mean over queries."""
        group_size = self._group_size(rows)
        teacher = torch.tensor(
            [[*(g.teacher_scores or ()), *[0.0] * (group_size - len(g.teacher_scores or ()))] for _, g in rows],
            dtype=torch.float32,
            device=q.device,
        )
        key_mask = torch.tensor(
            [[j < len(g.keys) for j in range(group_size)] for _, g in rows], dtype=torch.bool, device=q.device
        )
        has_teacher = torch.tensor([g.teacher_scores is not None for _, g in rows], device=q.device)
        task_ids = torch.tensor([self._task_order.index(t) for t, _ in rows], device=q.device)
        cross = self.config.cross_device_negatives
        if cross:
            q, k = gather_with_grad(q), gather_with_grad(k)
            teacher, has_teacher, task_ids, key_mask = map(gather_no_grad, (teacher, has_teacher, task_ids, key_mask))
        key_task_ids = task_ids.repeat_interleave(group_size)
        real_keys = key_mask.reshape(-1)
        total, logs = q.new_zeros(()), {}
        for tid in task_ids.unique().tolist():
            name = self._task_order[tid]
            mine, mine_keys = task_ids == tid, key_task_ids == tid
            scores = teacher[mine] if bool(has_teacher[mine].all()) else None
            other_keys = ~mine_keys & real_keys  # other tasks' padded slots are no negatives either
            extra = k[other_keys] if bool(other_keys.any()) else None
            loss, _ = compute_task_loss(
                q[mine], k[mine_keys], scores, self._settings[name], self.config.temperature, extra, key_mask[mine]
            )
            total = total + loss * (mine.sum() / q.shape[0])
            logs[f"loss/{name}"] = float(loss.detach())
        logs["loss"] = float(total.detach())
        return total * (loss_scale_for_ddp() if cross else 1.0), logs

    # ------------------------------------------------------------------ checkpoints
    def _checkpoints(self) -> list[Path]:
        """This trainer's checkpoints, oldest first: a ``step-N`` folder without the state it writes is
        not one, and is never resumed from nor removed."""
        return [p for p in _step_folders(self.output_dir) if _ours(p)]

    def _save_checkpoint(self) -> None:
        acc = self.accelerator
        folder = self.output_dir / CHECKPOINT_DIR
        final = folder / f"step-{self.progress.step:06d}"
        tmp = folder / f".{final.name}.tmp"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        acc.wait_for_everyone()
        if acc.is_main_process:
            state = {"step": self.progress.step, "config": self.config.to_dict(), "recipe": self.recipe}
            write_json(tmp / "trainer_state.json", state)
            if final.exists() and not _ours(final):
                raise InputError(final, None, None, "not a checkpoint of `llm-embedder train`, never replaced; move it")
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            for old in self._checkpoints()[: -self.config.save_total_limit]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()

    def _other_recipe(self, checkpoint: Path) -> list[str]:
        """How the recipe of ``checkpoint`` differs from this one (empty when it is the same)."""
        return Stage.record(checkpoint / "trainer_state.json", self.recipe, field="recipe").changes()

    def _resume(self) -> None:
        checkpoints = self._checkpoints()
        differ = self._other_recipe(checkpoints[-1]) if self.config.resume and checkpoints else []
        if differ and not self.restart:
            raise InputError(
                checkpoints[-1],
                None,
                None,
                f"made by another recipe ({'; '.join(differ)}); pass --restart to start over, "
                "or train into another --output-dir",
            )
        if not (self.config.resume and checkpoints) or differ:
            # A fresh start: checkpoints and log lines left here belong to an older run.  Kept, the
            # old checkpoints would outrank (and prune) this run's and be resumed from later, and the
            # old log lines would mix with the new ones.
            if checkpoints:
                self._print(f"resume=false: removing the older run's {', '.join(p.name for p in checkpoints)}")
            self._remove_checkpoints(checkpoints)
            return
        try:
            self.accelerator.load_state(str(checkpoints[-1]))
        except Exception as exc:  # a file cut short (a full disk, a copy) or damaged
            if not self.restart:
                raise InputError(
                    checkpoints[-1],
                    None,
                    None,
                    f"cannot resume from this checkpoint ({type(exc).__name__}: {str(exc).strip()[:160]}); "
                    "pass --restart to start over, or remove it to resume from an earlier one",
                ) from None
            self._print(f"{checkpoints[-1]} cannot be read: starting over (--restart)")
            self._remove_checkpoints(checkpoints)
            return
        self._print(f"resumed from {checkpoints[-1]} at step {self.progress.step}")
        if self.accelerator.is_main_process:
            # Log lines past the checkpoint belong to the interrupted run; the resumed run writes them again.
            log_file = self.output_dir / LOG_FILE
            if log_file.exists():
                kept = [
                    line for line in log_file.read_text().splitlines() if json.loads(line)["step"] <= self.progress.step
                ]
                log_file.write_text("".join(line + "\n" for line in kept))

    def _remove_checkpoints(self, checkpoints: list[Path]) -> None:
        """A fresh start: this trainer's checkpoints (and its log) go; nothing else in the folder."""
        if self.accelerator.is_main_process:
            for old in checkpoints:
                shutil.rmtree(old, ignore_errors=True)
            (self.output_dir / LOG_FILE).unlink(missing_ok=True)
        self.accelerator.wait_for_everyone()

    # ------------------------------------------------------------------ loop
    def _print(self, message: str) -> None:
        if self.accelerator.is_main_process:
            tqdm.write(message)

    def train(self) -> Path:
        """Run to ``max_steps`` (resuming if possible) and save the model; returns its folder."""
        cfg, acc = self.config, self.accelerator
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._resume()
        if acc.is_main_process:
            sizes = ", ".join(f"{d.name} ({d.task}) {len(d)}" for d in self.datasets)
            self._print(
                f"training {self.embedder!r} (mixed precision: {self.mixed_precision})\n"
                f"  on {sizes}; {len(self.sampler)} steps per epoch"
            )
            for d in self.datasets:
                if d.dropped:
                    self._print(f"  {d.path}: dropped {d.dropped}")
        window: dict[str, list[float]] = defaultdict(list)
        started, start_step = time.perf_counter(), self.progress.step
        bar = tqdm(
            total=cfg.max_steps,
            initial=self.progress.step,
            desc="train",
            unit="step",
            disable=not (self.show_progress and acc.is_main_process),
        )
        for indices in self.sampler.iter_steps(cfg.max_steps - self.progress.step):
            rows = self._groups(indices, self.progress.step)
            queries, keys = self._features(rows)
            with acc.autocast():
                q, k = self.model(queries, keys)
            loss, logs = self._loss(rows, q, k)
            acc.backward(loss)
            if cfg.max_grad_norm > 0:
                acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.progress.step += 1
            for key, value in logs.items():
                window[key].append(value)
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.3f}")
            step = self.progress.step
            if step % cfg.logging_steps == 0 or step == cfg.max_steps:
                self._log(step, window, started, start_step)
                window.clear()
            if step % cfg.save_steps == 0 and step < cfg.max_steps:
                self._save_checkpoint()
        bar.close()
        return self._save_model()

    def _log(self, step: int, window: dict[str, list[float]], started: float, start_step: int) -> None:
        if not self.accelerator.is_main_process:
            return
        elapsed = time.perf_counter() - started
        record: dict[str, Any] = {
            "step": step,
            "lr": self.scheduler.get_last_lr()[0],
            **{k: sum(v) / len(v) for k, v in sorted(window.items())},
            "samples_per_s": (step - start_step) * self.config.batch_size * self.accelerator.num_processes / elapsed,
        }
        with (self.output_dir / LOG_FILE).open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        self._print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))

    def _save_model(self) -> Path:
        acc = self.accelerator
        target = self.output_dir / MODEL_DIR
        acc.wait_for_everyone()
        if acc.is_main_process:
            embedder = acc.unwrap_model(self.model).embedder
            embedder.model.eval()
            with atomic_path(target, is_dir=True) as tmp:
                embedder.save_pretrained(tmp)
                info = {"steps": self.progress.step, "config": self.config.to_dict(), "recipe": self.recipe}
                write_json(tmp / "training.json", info)
            self._print(f"saved the trained embedder to {target}")
        acc.wait_for_everyone()
        return target


def _step_folders(output_dir: Path) -> list[Path]:
    found = []
    for folder in (output_dir / CHECKPOINT_DIR).glob("step-*"):
        match = _STEP_DIR.match(folder.name)
        if match:
            found.append((int(match.group(1)), folder))
    return [p for _, p in sorted(found)]


def _ours(checkpoint: Path) -> bool:
    """Whether ``checkpoint`` holds the state this trainer writes (with the recipe it was trained from)."""
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and "recipe" in state and "step" in state


def is_training_output(folder: Path) -> bool:
    """Whether ``folder`` holds what a training run writes (a checkpoint or a trained model with its recipe);
    a folder merely named ``checkpoints`` is not one."""
    return (folder / MODEL_DIR / "training.json").is_file() or any(_ours(p) for p in _step_folders(folder))


def finished_model(config: TrainConfig) -> Path | None:
    """The model folder of a run that already finished with this very config, else None."""
    info = Path(config.output_dir) / MODEL_DIR / "training.json"
    if not (config.resume and info.is_file()):
        return None
    same_config = read_json(info, "training record").get("config") == json.loads(json.dumps(config.to_dict()))
    same = same_config and Stage.record(info, recipe_identity(config), field="recipe").fresh()
    return info.parent if same else None


def train(config: TrainConfig, show_progress: bool = True, restart: bool = False) -> Path:
    """Train (or resume) and return the model folder; a run already finished is not redone.

    A checkpoint of another recipe (other data, other settings) is not resumed: an error says what
    differs, unless ``restart`` (start over; its checkpoints are removed)."""
    done = finished_model(config)
    if done is not None:
        print(f"{done} is already trained with this recipe; nothing to do")
        return done
    return Trainer(config, show_progress=show_progress, restart=restart).train()
