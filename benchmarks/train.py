"""Training speed and peak memory: our ``Trainer`` against sentence-transformers' trainer.

Run from the repository root (offline; sentence-transformers' trainer needs ``pip install datasets``)::

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 python benchmarks/train.py
    python benchmarks/train.py --steps 30 --batch-size 8 --group-size 8 --repeats 3

Both trainers fine-tune the zoo model ``minilm`` (all-MiniLM-L6-v2, mean pooling, normalised) in
float32 on the CPU, on the same groups of the same real records (``data/flagembedding-toy/qa.json``
by default): every step takes ``--batch-size`` queries, each with one positive and
``--group-size - 1`` negatives.  The groups are the ones our trainer draws (its sampler and
``make_group``, seeded by (seed, step, row)); sentence-transformers gets them as a ``datasets.Dataset``
with columns ``anchor, positive, negative_1 .. negative_{G-1}``, one row per query in step order, read
sequentially.  Instructions are off, so both encode identical texts; both truncate to 256 tokens,
use learning rate 2e-5 with linear decay and no warm-up, weight decay 0.01 and gradient clipping at 1.0.

The runs, each in its own fresh subprocess (so that each peak memory is its own):

* ``ours``: our trainer with the task's loss set to ``contrastive`` (InfoNCE over the in-batch and
  hard negatives, temperature 0.01): the same objective as ``st``;
* ``st``: ``SentenceTransformerTrainer`` with ``MultipleNegativesRankingLoss(scale=100)``
  (cosine x 100 = our logits at temperature 0.01), everything else at its defaults (its optimizer
  is ``adamw_torch_fused``);
* ``ours-distill``: our trainer with the task's own loss (``qa``: stable distillation of the teacher
  scores), our real workload; reported against the same ``st`` run, for information;
* ``ours-fused`` (only with ``--fused-adamw``, an experiment): ``ours`` with its ``torch.optim.AdamW``
  built with ``fused=True``, patched in from here, to measure what the optimizer costs us.

Timing: every step's end is time-stamped (our scheduler step; the ``on_step_end`` callback of
sentence-transformers); the first step is a warm-up and is left out, so the rate is
``(steps - 1) * batch_size / (end of last step - end of step 1)`` queries per second (also shown at
the median step time, which bursts of load from other processes move less).  Model
loading, data loading and the final save are outside the window.  Peak memory is the child's
``ru_maxrss`` (whole process: interpreter, libraries, model, optimizer state, activations); the
resident memory just before training starts is shown beside it.  With ``--repeats N`` the runs take
turns (ours, st, ours-distill, then reversed) and the best rate and the largest peak of each are kept.

Targets (issue): speed ratio ours/st >= 0.9 (our loss does a little more work) and peak memory
ours/st <= 1.2.  Timings on a shared machine are noisy; use ``--repeats`` and compare on one machine.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "flagembedding-toy"
MODEL = "minilm"
MAX_LENGTH = 256
TEMPERATURE = 0.01
WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0
RESULT = "RESULT "
KINDS = ("ours", "st", "ours-distill", "ours-fused")
SPEED_TARGET = 0.9
MEMORY_TARGET = 1.2


# ---------------------------------------------------------------------------------------------- shared set-up
def train_config(args: argparse.Namespace, output_dir: str, contrastive: bool):
    """Our recipe for the run: one dataset, instructions off, no checkpoints, one log line at the end."""
    from llm_embedder.training.config import DatasetSpec, Techniques, TrainConfig

    training: dict[str, Any] = {"group_size": args.group_size}
    if contrastive:
        training["losses"] = {"contrastive": 1.0}
    return TrainConfig(
        model=MODEL,
        output_dir=output_dir,
        datasets=[DatasetSpec(str(args.data / f"{args.task}.json"))],
        tasks={args.task: {"training": training, "query_max_length": MAX_LENGTH, "key_max_length": MAX_LENGTH}},
        techniques=Techniques(instructions=False),
        max_steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        weight_decay=WEIGHT_DECAY,
        warmup_ratio=0.0,
        max_grad_norm=MAX_GRAD_NORM,
        temperature=TEMPERATURE,
        seed=args.seed,
        logging_steps=args.steps,
        save_steps=args.steps + 1,
        resume=False,
        device="cpu",
    )


def group_digest(groups: Sequence[tuple[str, Sequence[str]]]) -> str:
    """A hash of (query, positive, set of negatives) per row in order: equal digests, equal data.
    The negatives are sorted because stable distillation orders them by teacher score."""
    h = hashlib.sha256()
    for query, keys in groups:
        h.update(json.dumps([query, keys[0], sorted(keys[1:])]).encode())
    return h.hexdigest()[:12]


def rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


def rates(stamps: Sequence[float], batch_size: int) -> dict[str, float]:
    """Queries per second between the end of step 1 and the end of the last step ("rate"), and
    at the median step time of steps 2.. ("median_rate", less sensitive to bursts of other load)."""
    if len(stamps) < 2:
        raise RuntimeError(f"need at least 2 steps to time (1 warm-up), got {len(stamps)}")
    steps = sorted(b - a for a, b in itertools.pairwise(stamps))
    median = statistics.median(steps)
    return {"rate": len(steps) * batch_size / (stamps[-1] - stamps[0]), "median_rate": batch_size / median}


# ---------------------------------------------------------------------------------------------- children
def child_ours(args: argparse.Namespace, contrastive: bool, fused: bool = False) -> dict[str, Any]:
    import torch

    from llm_embedder.training.trainer import Trainer

    optimizer = "torch.optim.AdamW"
    if fused:  # experiment only: what the trainer would gain from a fused AdamW (src is not changed)
        torch.optim.AdamW = functools.partial(torch.optim.AdamW, fused=True)
        optimizer += "(fused=True)"
    with tempfile.TemporaryDirectory(prefix="bench-train-") as out:
        trainer = Trainer(train_config(args, out, contrastive), show_progress=False)
        stamps: list[float] = []
        groups: list[tuple[str, Sequence[str]]] = []
        step_scheduler, make_groups = trainer.scheduler.step, trainer._groups

        def timed_step(*a: Any, **k: Any) -> None:  # the last call of every optimisation step
            step_scheduler(*a, **k)
            stamps.append(time.perf_counter())

        def recorded_groups(indices: list[int], step: int):
            rows = make_groups(indices, step)
            groups.extend((g.query, g.keys) for _, g in rows)
            return rows

        trainer.scheduler.step = timed_step
        trainer._groups = recorded_groups
        settings = trainer.datasets[0].settings
        before = rss_bytes()
        trainer.train()
    return {
        **rates(stamps, args.batch_size),
        "peak": peak_rss_bytes(),
        "before": before,
        "digest": group_digest(groups),
        "threads": torch.get_num_threads(),
        "detail": f"losses {dict(settings.losses)}, {optimizer}",
    }


def st_groups(args: argparse.Namespace) -> list[tuple[str, tuple[str, ...]]]:
    """The groups our trainer draws for this run, step by step (see ``Trainer._groups``)."""
    import numpy as np

    from llm_embedder.data.records import make_group
    from llm_embedder.data.sampler import HomogeneousBatchSampler
    from llm_embedder.tasks import DEFAULT_TASKS
    from llm_embedder.training.trainer import load_datasets, training_task_table

    config = train_config(args, "unused", contrastive=True)
    datasets = load_datasets(config, training_task_table(DEFAULT_TASKS, config))
    sampler = HomogeneousBatchSampler(
        [len(d) for d in datasets],
        config.batch_size,
        seed=config.seed,
        weights=[s.weight for s in config.datasets],
        homogeneous=config.techniques.homogeneous,
    )
    offsets = np.cumsum([0] + [len(d) for d in datasets[:-1]])
    out = []
    for step, indices in enumerate(sampler.iter_steps(config.max_steps)):
        for index in indices:
            d = sampler.dataset_of(index)
            record = datasets[d].records[index - offsets[d]]
            group = make_group(record, datasets[d].settings, np.random.default_rng((config.seed, step, index)))
            out.append((group.query, group.keys))
    return out


def child_st(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from torch.utils.data import SequentialSampler

    try:
        from datasets import Dataset
    except ImportError:
        raise SystemExit("sentence-transformers' trainer needs the `datasets` package: pip install datasets") from None
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import DefaultBatchSampler
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers import TrainerCallback, set_seed

    from llm_embedder.models import zoo

    groups = st_groups(args)
    columns: dict[str, list[str]] = {"anchor": [q for q, _ in groups]}
    for j in range(args.group_size):
        columns["positive" if j == 0 else f"negative_{j}"] = [keys[j] for _, keys in groups]
    dataset = Dataset.from_dict(columns)

    set_seed(args.seed)
    model = SentenceTransformer(str(zoo.resolve(MODEL)), device="cpu")
    model.max_seq_length = MAX_LENGTH
    loss = MultipleNegativesRankingLoss(model, scale=1.0 / TEMPERATURE)
    stamps: list[float] = []

    class Stamp(TrainerCallback):
        def on_step_end(self, *a: Any, **k: Any) -> None:
            stamps.append(time.perf_counter())

    def in_order(data, batch_size, drop_last, **kwargs):  # the rows are already in our step order
        return DefaultBatchSampler(SequentialSampler(data), batch_size=batch_size, drop_last=drop_last, **kwargs)

    with tempfile.TemporaryDirectory(prefix="bench-train-st-") as out:
        training_args = SentenceTransformerTrainingArguments(
            output_dir=out,
            per_device_train_batch_size=args.batch_size,
            max_steps=args.steps,
            learning_rate=args.lr,
            weight_decay=WEIGHT_DECAY,
            warmup_steps=0,
            lr_scheduler_type="linear",
            max_grad_norm=MAX_GRAD_NORM,
            seed=args.seed,
            use_cpu=True,
            bf16=False,
            fp16=False,
            save_strategy="no",
            logging_strategy="no",
            eval_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            batch_sampler=in_order,
        )
        trainer = SentenceTransformerTrainer(
            model=model, args=training_args, train_dataset=dataset, loss=loss, callbacks=[Stamp()]
        )
        before = rss_bytes()
        trainer.train()
    return {
        **rates(stamps, args.batch_size),
        "peak": peak_rss_bytes(),
        "before": before,
        "digest": group_digest(groups[: args.steps * args.batch_size]),
        "threads": torch.get_num_threads(),
        "detail": f"MultipleNegativesRankingLoss(scale={loss.scale:g}), optim {training_args.optim.value}",
    }


def run_child(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """One trainer in a fresh interpreter; returns its RESULT line."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, *forwarded(args)]
    done = subprocess.run(command, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith(RESULT):
            return json.loads(line[len(RESULT) :])
    sys.stderr.write(done.stdout[-4000:] + done.stderr[-8000:])
    raise SystemExit(f"the {kind} run failed (exit status {done.returncode})")


def forwarded(args: argparse.Namespace) -> list[str]:
    out = [
        f"--steps={args.steps}",
        f"--batch-size={args.batch_size}",
        f"--group-size={args.group_size}",
        f"--task={args.task}",
        f"--data={args.data}",
        f"--lr={args.lr}",
        f"--seed={args.seed}",
    ]
    return out + ([f"--threads={args.threads}"] if args.threads else [])


# ---------------------------------------------------------------------------------------------- report
def mib(n: float) -> str:
    return f"{n / 2**20:7.0f} MiB"


def machine_note() -> str:
    import torch

    try:
        load = ", load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        load = ""
    return (
        f"{platform.machine()} {platform.processor() or platform.system()}, {os.cpu_count()} CPUs{load}; "
        f"python {platform.python_version()}, torch {torch.__version__}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--steps", type=int, default=20, help="optimisation steps per run, the first untimed (default 20)"
    )
    parser.add_argument("--batch-size", type=int, default=4, help="queries per step (default 4)")
    parser.add_argument(
        "--group-size", type=int, default=8, help="keys per query: 1 positive + G-1 negatives (default 8)"
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs of each trainer, taking turns (default 1)")
    parser.add_argument("--task", default="qa", help="toy file (and task) to train on (default qa)")
    parser.add_argument("--data", type=Path, default=DATA_DIR, help=f"folder of the toy files (default {DATA_DIR})")
    parser.add_argument("--lr", type=float, default=2e-5, help="learning rate, both trainers (default 2e-5)")
    parser.add_argument("--seed", type=int, default=42, help="seed, both trainers (default 42)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--no-distill", action="store_true", help="skip the ours-distill run")
    parser.add_argument(
        "--fused-adamw",
        action="store_true",
        help="also run ours-fused: the contrastive run with our AdamW built with fused=True (an experiment)",
    )
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step is not timed)")
    if args.group_size < 2:
        parser.error("--group-size must be at least 2")
    if not (args.data / f"{args.task}.json").is_file():
        parser.error(f"no file {args.data / f'{args.task}.json'}")

    if args.child:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        if args.child == "st":
            result = child_st(args)
        else:
            result = child_ours(args, contrastive=args.child != "ours-distill", fused=args.child == "ours-fused")
        print(RESULT + json.dumps(result), flush=True)
        return

    kinds = (
        ["ours", "st"] + ([] if args.no_distill else ["ours-distill"]) + (["ours-fused"] if args.fused_adamw else [])
    )
    print(
        f"training benchmark: {MODEL}, {args.data / f'{args.task}.json'}, {args.steps} steps (first untimed), "
        f"batch {args.batch_size} queries x group {args.group_size} keys, max length {MAX_LENGTH}, float32, "
        f"lr {args.lr:g}, repeats {args.repeats}"
    )
    print(f"machine: {machine_note()}")
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for r in range(args.repeats):
        for kind in kinds if r % 2 == 0 else kinds[::-1]:
            result = run_child(kind, args)
            runs[kind].append(result)
            print(
                f"  run {r + 1} {kind:<13} {result['rate']:6.3f} queries/s (median step {result['median_rate']:6.3f})  "
                f"peak {mib(result['peak'])}  "
                f"(before training {mib(result['before'])}), torch threads {result['threads']}",
                flush=True,
            )

    best = {k: max(v, key=lambda x: x["rate"]) for k, v in runs.items()}
    speeds = {k: best[k]["rate"] for k in kinds}
    medians = {k: max(x["median_rate"] for x in v) for k, v in runs.items()}
    peaks = {k: max(x["peak"] for x in v) for k, v in runs.items()}
    digests = {k: {x["digest"] for x in v} for k, v in runs.items()}
    same = len(set().union(*digests.values())) == 1
    print(
        f"\nsame groups in every run: {'yes' if same else 'NO'} ({', '.join(sorted(set().union(*digests.values())))})"
    )
    print(f"best rate of {args.repeats} run(s), largest peak RSS:")
    for kind in kinds:
        print(
            f"  {kind:<13} {speeds[kind]:6.3f} queries/s (median step {medians[kind]:6.3f})  "
            f"peak {mib(peaks[kind])}   {best[kind]['detail']}"
        )
    speed = speeds["ours"] / speeds["st"]
    memory = peaks["ours"] / peaks["st"]
    verdict = {True: "met", False: "NOT met"}
    print(
        f"speed ratio ours/st:  {speed:.3f}  (target >= {SPEED_TARGET}: {verdict[speed >= SPEED_TARGET]}; "
        f"at the median step time {medians['ours'] / medians['st']:.3f})"
    )
    print(f"memory ratio ours/st: {memory:.3f}  (target <= {MEMORY_TARGET}: {verdict[memory <= MEMORY_TARGET]})")
    notes = {"ours-distill": "our real workload, for information", "ours-fused": "experiment: fused AdamW"}
    for kind in kinds[2:]:
        print(
            f"{kind + '/st:':<21} speed {speeds[kind] / speeds['st']:.3f} "
            f"(median step {medians[kind] / medians['st']:.3f}), memory {peaks[kind] / peaks['st']:.3f}  "
            f"({notes[kind]})"
        )
    if not same:
        raise SystemExit("the runs did not train on the same groups; the comparison is not valid")


if __name__ == "__main__":
    main()
