"""Training in float32 against bf16 autocast: the losses of the same steps, and the speed.

Run from the repository root (offline)::

    python benchmarks/train_precision.py --steps 20
    python benchmarks/train_precision.py --model minilm --steps 20 --batch-size 8 --group-size 8 --repeats 2

Both runs fine-tune the same encoder (zoo ``minilm`` by default) from the same weights on the same
groups (same seed, so the sampler and ``make_group`` draw the same rows and keys) of the toy
qa, icl and chat files with their own losses (stable and KL distillation), on the CPU.  The only
difference is ``bf16`` (the trainer's ``mixed_precision``): autocast to bfloat16 for the encoder's
forward and backward; weights, optimizer and losses stay float32.  Reported:

* the per-step training loss of both runs (the log's ``loss`` at every step) and its deviation,
  ``|bf16 - fp32| / fp32`` per step: its mean and maximum, against ``--tolerance`` (default 0.05);
* the speed ratio fp32 time / bf16 time of the training loop (model loading and saving excluded;
  the best of ``--repeats``).

bf16 autocast is only worth it on CPUs with bf16 units (flags avx512_bf16 or amx_bf16): the script
prints what this CPU has.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from llm_embedder.models.cpu import bf16_speedup, cpu_bf16_flags
from llm_embedder.training.config import DatasetSpec, TrainConfig
from llm_embedder.training.trainer import LOG_FILE, Trainer

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "flagembedding-toy"


def run(args: argparse.Namespace, bf16: bool, out: Path) -> tuple[list[float], float]:
    tasks = {t: {"training": {"group_size": args.group_size}} for t in args.tasks}
    config = TrainConfig(
        model=args.model,
        output_dir=str(out),
        datasets=[DatasetSpec(str(DATA_DIR / f"{t}.json")) for t in args.tasks],
        tasks=tasks,
        max_steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_ratio=0.0,
        logging_steps=1,
        save_steps=10**6,
        seed=args.seed,
        resume=False,
        device="cpu",
        bf16=bf16,
    )
    trainer = Trainer(config, show_progress=False)
    assert trainer.mixed_precision == ("bf16" if bf16 else "no")
    started = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - started
    losses = [json.loads(line)["loss"] for line in (out / LOG_FILE).read_text().splitlines()]
    return losses, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--tasks", default="qa,icl,chat", type=lambda s: s.split(","))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--tolerance", type=float, default=0.05, help="largest per-step relative loss deviation")
    args = parser.parse_args()
    print(
        f"CPU bf16 flags: {', '.join(cpu_bf16_flags()) or 'none (bf16 is emulated: expect it slower)'}; "
        f"bf16 probe: {bf16_speedup():.2f}x float32"
    )
    times: dict[bool, list[float]] = {False: [], True: []}
    losses: dict[bool, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for bf16 in (False, True) if r % 2 == 0 else (True, False):
                losses[bf16], elapsed = run(args, bf16, Path(tmp) / f"{int(bf16)}-{r}")
                times[bf16].append(elapsed)
    fp32, bf = losses[False], losses[True]
    dev = [abs(b - f) / abs(f) for f, b in zip(fp32, bf, strict=True)]
    print("step  fp32 loss  bf16 loss  rel. deviation")
    for step, (f, b, d) in enumerate(zip(fp32, bf, dev, strict=True), 1):
        print(f"{step:4d}  {f:9.4f}  {b:9.4f}  {d:8.2%}")
    speed = min(times[False]) / min(times[True])
    verdict = "within" if max(dev) <= args.tolerance else "OUTSIDE"
    print(
        f"deviation mean {sum(dev) / len(dev):.2%}, max {max(dev):.2%} ({verdict} the tolerance {args.tolerance:.0%}); "
        f"training loop fp32 {min(times[False]):.1f}s, bf16 {min(times[True]):.1f}s: speed ratio {speed:.2f}x"
    )


if __name__ == "__main__":
    main()
