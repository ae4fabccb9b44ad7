"""``llm-embedder demo``: the parser and the handler."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from llm_embedder.commands.common import claim
from llm_embedder.commands.options import COUNT, MODEL, add_overwrite
from llm_embedder.outputs import FILE, Port, Spec

DEMO = Spec(
    "demo",
    (Port("--data", "task-files"), MODEL, Port("--out", "figures", FILE)),
    (("--data", "{task-files}", "--model", "{encoder}"),),
)


def default_data() -> Path:
    return Path(os.environ.get("LLM_EMBEDDER_DEMO_DATA", "data/flagembedding-toy"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="index the toy records of each task and show what the embedder retrieves")
    p.add_argument("--data", default=str(default_data()), help="folder of released-format task files")
    p.add_argument("--model", default=None, help="encoder to demonstrate (default: minilm)")
    p.add_argument("-k", "--k", type=COUNT, default=3, help="hits shown per query")
    p.add_argument("--out", default=None, help="also write the per-task figures as JSON")
    add_overwrite(p)
    p.set_defaults(func=run, io=DEMO)


def run(args: argparse.Namespace) -> int:
    from llm_embedder.demo import run_retrieval_demo

    if args.out:
        claim(args, args.out, "demo", {"data": args.data}).seal()
    run_retrieval_demo(Path(args.data), model=args.model, k=args.k, out=Path(args.out) if args.out else None)
    return 0
