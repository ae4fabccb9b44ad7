"""``llm-embedder adapt``: the parser and the handler."""

from __future__ import annotations

import argparse
from pathlib import Path

from llm_embedder.outputs import FOLDER, WHOLE, Port, Spec

WORK_MARKER = ".llm-embedder-adapt-work"
"""Written into a work folder this command created: it never reuses or empties a folder without it."""
WORK_MEMBERS = ("data", "check-data", "mined", "capped", "scored", "split", "select", ".data-stage.json")


def _work_dir(args: argparse.Namespace) -> Path:
    if args.work_dir:
        return Path(args.work_dir)
    out = Path(args.out or "adapted")
    return out.with_name(out.name + ".work")


ADAPT = Spec(
    "adapt",
    (
        Port("--corpus", "corpus"),
        Port("--tools", "records"),
        Port("--conversations", "records"),
        Port("--documents", "corpus"),
        Port("--examples", "records"),
        Port("--queries", "records"),
        Port("--lm", "lm"),
        Port("--writer", "lm"),
        Port("--base", "encoder"),
        Port("--check", "eval-data"),
        Port("--recipe", "pipeline"),
        Port("--out", "model", WHOLE, (), lambda path: (path / "report.json").is_file()),
        Port(
            "--work-dir",
            "work",
            FOLDER,
            WORK_MEMBERS,
            lambda path: (path / WORK_MARKER).is_file(),
            paths=lambda args: [_work_dir(args)],
        ),
    ),
    # records are no {input, output} examples: adapt stops at reading them, after the path checks
    (("--examples", "{records}", "--lm", "{lm}", "--base", "{encoder}"),),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "adapt",
        help="tune the embedder to your own documents, tools, chats and examples with your LLM (no labels)",
        description="Writes training data from your files with your LLM, mines, scores, trains variants, selects "
        "on a held-out dev part and a generality check, and writes the chosen model with a report to --out.",
    )
    p.add_argument("--corpus", help="knowledge: JSON lines (text, title, id) or a folder of .txt/.md files")
    p.add_argument("--tools", help="tools: OpenAI function definitions (a JSON list or one per line)")
    p.add_argument("--conversations", help="memory: JSON lines of OpenAI chat messages {'messages': [...]}")
    p.add_argument("--documents", help="long documents: a folder of .txt/.md files or JSON lines (text, title)")
    p.add_argument("--examples", help="in-context examples: JSON lines of {'input', 'output'}")
    p.add_argument("--queries", help="labelled queries you have (released LLM-Embedder format), used as they are")
    p.add_argument("--lm", default=None, help="the LLM: zoo name, Hugging Face folder or .gguf file (default: recipe)")
    p.add_argument("--writer", default=None, help="LLM that writes queries (default: --lm); rewards stay --lm's")
    p.add_argument("--base", default=None, help="the encoder to adapt: zoo name or folder (default: recipe)")
    p.add_argument("--out", help="folder of the adapted model (an Embedder folder with a report); required")
    p.add_argument("--work-dir", default=None, help="cache of every stage (default: OUT.work); a rerun resumes")
    p.add_argument("--check", default=None, help="evaluation folder for the generality check (default: demo dev)")
    p.add_argument("--recipe", default=None, help="settings file (default: the packaged recipes/adapt.yaml)")
    p.add_argument("--quick", action="store_true", help="few questions per key, few steps, one variant (minutes)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe setting")
    p.set_defaults(func=run, io=ADAPT)


def run(args: argparse.Namespace) -> int:
    from llm_embedder.adapt import DEFAULT_RECIPE, AdaptConfig, AdaptPipeline
    from llm_embedder.errors import InputError
    from llm_embedder.outputs import claim
    from llm_embedder.userdata.build import INPUT_KINDS, UserInputs

    if not args.out:
        raise InputError(None, None, "--out", "adapt needs --out, the folder of the adapted model")
    inputs = UserInputs(**{kind: getattr(args, kind) for kind in INPUT_KINDS})
    if not inputs.given():
        raise InputError(None, None, None, "adapt needs at least one of --" + ", --".join(INPUT_KINDS))
    for kind, path in inputs.given().items():
        if not Path(path).exists():
            raise InputError(path, None, None, f"--{kind}: no such file or folder")
    out, work = Path(args.out), _work_dir(args)
    overrides = [*args.set, f"work_dir={work}"]
    overrides += [f"lm={args.lm}"] if args.lm else []
    overrides += [f"writer={args.writer}"] if args.writer else []
    overrides += [f"encoder={args.base}"] if args.base else []
    overrides += [f"check={args.check}"] if args.check else []
    config = AdaptConfig.from_yaml(args.recipe or DEFAULT_RECIPE, quick=args.quick, overrides=overrides)
    sources = {kind: Path(path) for kind, path in inputs.given().items()}
    output = claim(out, "adapt", inputs=sources, settings={"recipe": str(args.recipe or "default")}, is_dir=True)
    _claim_work_folder(work, sources)
    AdaptPipeline(config, inputs, show_progress=not args.quiet).adapt(out)
    output.seal()
    return 0


def _claim_work_folder(work: Path, sources: dict[str, Path]) -> None:
    """The work folder is this command's own: new, or made by an earlier ``adapt`` (its marker)."""
    from llm_embedder.errors import InputError

    for kind, source in sources.items():
        if source.resolve().is_relative_to(work.resolve()) or work.resolve().is_relative_to(source.resolve()):
            raise InputError(work, None, None, f"the work folder and the --{kind} input overlap; choose another")
    if work.exists() and any(work.iterdir()) and not (work / WORK_MARKER).is_file():
        raise InputError(work, None, None, "an existing folder that `adapt` did not make; choose another --work-dir")
    work.mkdir(parents=True, exist_ok=True)
    (work / WORK_MARKER).touch()
