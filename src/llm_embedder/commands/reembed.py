"""``llm-embedder collections reembed``: the parser and the handler."""

from __future__ import annotations

import argparse

from llm_embedder.commands.common import model_reference, progress
from llm_embedder.commands.options import MODEL, TASKS, add_embedder, load_embedder
from llm_embedder.commands.serve import SERVE_MEMBERS, is_store
from llm_embedder.outputs import FOLDER, Port, Spec

COLLECTIONS_REEMBED = Spec(
    "collections reembed",
    (MODEL, TASKS, Port("--data-dir", "store", FOLDER, SERVE_MEMBERS, is_store)),
    (("--model", "{encoder}", "--device", "cpu"),),
)


def register(sub: argparse._SubParsersAction) -> None:
    collections = sub.add_parser("collections", help="manage a serving data dir").add_subparsers(
        dest="collections_command", required=True
    )
    p = collections.add_parser(
        "reembed",
        help="re-embed every collection of a data dir with another model (switches only once all is done)",
        description="Embeds every stored record again with --model (and --backend/--dtype), then switches all "
        "collections at once; until then the data dir holds the old vectors. Resumable: a rerun embeds only what "
        "is missing. Runs beside a server on the data dir; the switch waits for it to stop.",
    )
    p.add_argument("--data-dir", required=True, help="the folder given to serve --data-dir (SQLite store)")
    add_embedder(p)
    p.set_defaults(func=run, io=COLLECTIONS_REEMBED)


def run(args: argparse.Namespace) -> int:
    from llm_embedder.serving.reembed import reembed

    embedder = load_embedder(args)
    summary = reembed(args.data_dir, embedder, model_name=model_reference(args.model), progress=progress(args))
    print(summary)
    return 0
