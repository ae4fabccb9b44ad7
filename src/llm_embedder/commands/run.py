"""``llm-embedder run`` (the main job): the parser and the handler."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from llm_embedder.commands.common import claim, json_object
from llm_embedder.outputs import FOLDER, Port, Spec


def pipeline_config(args: argparse.Namespace):
    """The pipeline file with ``--quick`` and ``--set`` applied (read once)."""
    if getattr(args, "_pipeline", None) is None:
        from llm_embedder.pipeline import PipelineConfig

        args._pipeline = PipelineConfig.from_yaml(args.config, quick=args.quick, overrides=args.set)
    return args._pipeline


def _pipeline_inputs(args: argparse.Namespace, path: Path):
    """Every setting of a pipeline file that names an existing file or folder (a model, the user's data)."""
    from llm_embedder.outputs import path_of

    def walk(value, key):
        if isinstance(value, dict):
            for k, v in value.items():
                yield from walk(v, f"{key}.{k}")
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                yield from walk(v, f"{key}[{i}]")
        elif isinstance(value, str) and (found := path_of(value)) is not None:
            yield f"{key.lstrip('.')} of the pipeline file", found

    settings = dataclasses.asdict(pipeline_config(args))
    settings.pop("work_dir", None)
    yield from walk(settings, "")


def is_pipeline_work(path: Path) -> bool:
    """A pipeline work folder from before manifests: its data stage names its builder."""
    from llm_embedder.pipeline import DATA_STAMP

    return "builder" in json_object(path / DATA_STAMP)


RUN = Spec(
    "run",
    (
        Port("config", "pipeline", inside=_pipeline_inputs),
        Port(
            "work_dir",
            "work",
            FOLDER,
            (),
            is_pipeline_work,
            paths=lambda args: [pipeline_config(args).work_dir],
            setting="work_dir",
        ),
    ),
    (("{pipeline}",),),
)


def register(sub: argparse._SubParsersAction) -> None:
    from llm_embedder.pipeline import ABLATIONS

    p = sub.add_parser(
        "run",
        help="the main job: build data, mine, score with the LLM, train, evaluate (cached, resumable)",
        description="Runs the pipeline of a YAML file (e.g. recipes/demo.yaml). Re-running skips finished stages.",
    )
    p.add_argument("config", help="pipeline YAML, e.g. recipes/demo.yaml")
    p.add_argument("--quick", action="store_true", help="apply the file's `quick` settings (a few minutes)")
    p.add_argument(
        "--ablate", default="", help=f"also train variants without: {', '.join(ABLATIONS)} (comma-separated)"
    )
    p.add_argument(
        "--select",
        action="store_true",
        help="model selection instead of the run: train the file's `select.variants`, score them on dev only",
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    p.set_defaults(func=run, io=RUN)


def run(args: argparse.Namespace) -> int:
    from llm_embedder.pipeline import Pipeline

    config = pipeline_config(args)
    claim(args, config.work_dir, "run", {}, settings={}, is_dir=True).seal()
    ablate = tuple(a.strip() for a in args.ablate.split(",") if a.strip()) if args.ablate else ()
    pipeline = Pipeline(config, ablate=ablate, show_progress=not args.quiet)
    pipeline.run_selection() if args.select else pipeline.run()
    return 0
