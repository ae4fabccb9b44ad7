"""``llm-embedder data build-demo``: the parser and the handler."""

from __future__ import annotations

import argparse
from pathlib import Path

from llm_embedder.commands.common import claim, json_object
from llm_embedder.commands.options import SEED
from llm_embedder.outputs import WHOLE, Port, Spec


def is_demo_build(path: Path) -> bool:
    """A demo dataset from before manifests: its manifest says so."""
    return json_object(path / "manifest.json").get("kind") == "llm-embedder-demo-data"


DATA_BUILD_DEMO = Spec("data build-demo", (Port("--out", "data", WHOLE, (), is_demo_build),), (("--size", "quick"),))


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="build datasets").add_subparsers(dest="data_command", required=True)
    p = data.add_parser(
        "build-demo",
        help="build a small six-task dataset (train, eval, corpora) from real public text in pip packages",
        description="Sources: gensim's Wikipedia sample and test data, bfcl-eval, chitchat-dataset, chatterbot-corpus "
        "(pip install --no-deps -r requirements-demo.txt). Same seed, same bytes.",
    )
    p.add_argument("--out", required=True, help="output folder (replaced atomically if it holds an earlier build)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument(
        "--size",
        choices=("small", "full", "quick"),
        default="small",
        help="small: 150 train, 200 test queries per retrieval task, 100 per LLM-only task, 13 lrlm articles "
        "(make demo); full: 150 train, 500 test queries (fewer where a source ends) and 16 lrlm articles "
        "(recipes/demo-full.yaml); quick: tiny, for tests",
    )
    p.set_defaults(func=run_build_demo, io=DATA_BUILD_DEMO)


def run_build_demo(args: argparse.Namespace) -> int:
    from llm_embedder.data.demo import build_demo

    claim(args, args.out, "data build-demo", {}, settings={}, is_dir=True, whole=True)
    manifest = build_demo(args.out, seed=args.seed, size=args.size, progress=not args.quiet)
    shown = ("train", "dev", "test", "ood-dev", "ood-test", "corpus")
    for task, counts in manifest["tasks"].items():
        print(f"{task:>10}: " + ", ".join(f"{k} {counts[k]}" for k in shown if k in counts))
    print(f"demo data in {args.out} (see SOURCES.md and manifest.json)")
    return 0
