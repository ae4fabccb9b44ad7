"""``llm-embedder train``: the parser and the handler."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from llm_embedder.commands.common import claim, json_object
from llm_embedder.commands.options import add_overwrite
from llm_embedder.outputs import FOLDER, Port, Spec

TRAIN_MEMBERS = ("checkpoints", "model", "train_log.jsonl")  # training.trainer: CHECKPOINT_DIR, MODEL_DIR, LOG_FILE


def recipe_config(args: argparse.Namespace):
    """The recipe with its overrides (read once)."""
    if getattr(args, "_recipe", None) is None:
        from llm_embedder.training.config import TrainConfig

        overrides = list(args.set) + ([f"output_dir={args.output_dir}"] if args.output_dir else [])
        args._recipe = TrainConfig.from_yaml(args.config, overrides)
    return args._recipe


def _recipe_inputs(args: argparse.Namespace, path: Path):
    """The files a training recipe names: its datasets and a base model folder."""
    from llm_embedder.outputs import path_of

    config = recipe_config(args)
    for i, spec in enumerate(config.datasets):
        yield f"dataset {i + 1} of the recipe", Path(spec.path)
    model = path_of(config.model)
    if model is not None:
        yield "model of the recipe", model


def is_training_output(path: Path) -> bool:
    """A training output from before manifests: a model or checkpoint that names its recipe."""
    if "recipe" in json_object(path / "model" / "training.json"):
        return True
    return any("recipe" in json_object(state) for state in path.glob("checkpoints/step-*/trainer_state.json"))


TRAIN = Spec(
    "train",
    (
        Port("--config", "recipe", inside=_recipe_inputs),
        Port(
            "--output-dir",
            "model",
            FOLDER,
            TRAIN_MEMBERS,
            is_training_output,
            paths=lambda args: [recipe_config(args).output_dir],
        ),
    ),
    (("--config", "{recipe}"),),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train an embedder from a recipe (one process, or many with torchrun)",
        description="Train from a YAML recipe. Many processes: torchrun --nproc_per_node N -m llm_embedder.cli train",
    )
    p.add_argument("--config", required=True, help="recipe YAML, e.g. recipes/toy-cpu.yaml")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting, e.g. max_steps=100"
    )
    p.add_argument("--output-dir", default=None, help="override output_dir")
    add_overwrite(p, restart=True)
    p.set_defaults(func=run, io=TRAIN)


def run(args: argparse.Namespace) -> int:
    from llm_embedder.training.trainer import train

    config = recipe_config(args)
    # Under torchrun every rank runs this command. Only the first claims the folder: two claims race, and
    # one rank could find the other's half-made folder and refuse it. The other ranks wait for the first
    # in train(), where the process group forms, before they write anything there.
    if int(os.environ.get("RANK", "0")) == 0:
        output = claim(args, config.output_dir, "train", {}, settings={}, is_dir=True, recognise=is_training_output)
        output.seal()
    train(config, show_progress=not args.quiet, restart=args.restart)
    return 0
