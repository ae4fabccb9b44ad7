"""``llm-embedder serve``: the parser and the handler."""

from __future__ import annotations

import argparse
from pathlib import Path

from llm_embedder.commands.common import model_reference
from llm_embedder.commands.options import MODEL, TASKS, add_embedder, load_embedder
from llm_embedder.outputs import FOLDER, Port, Spec

SERVE_MEMBERS = ("collections.sqlite3", "collections.sqlite3-wal", "collections.sqlite3-shm", "collection", "meta.json")
"""What a serving data dir holds (also ``collections reembed``'s output)."""


def is_store(path: Path) -> bool:
    """A serving data dir from before manifests: an SQLite store, or a local Qdrant's layout."""
    try:
        with (path / SERVE_MEMBERS[0]).open("rb") as handle:
            return handle.read(16) == b"SQLite format 3\x00"
    except OSError:
        return (path / "collection").is_dir() and (path / "meta.json").is_file()


SERVE = Spec(
    "serve",
    (MODEL, TASKS, Port("--api-key-file", "keys"), Port("--data-dir", "store", FOLDER, SERVE_MEMBERS, is_store)),
    (("--model", "{encoder}", "--device", "cpu"),),
    seal=True,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve embeddings over HTTP (OpenAI-compatible, per-request task and side)",
        description="POST /v1/embeddings with `task` and `input_type` (or model `<name>/<task>.<side>`); "
        "GET /v1/tasks, /info, /health, /ready, /metrics, /docs.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--served-name", default="llm-embedder", help="the `model` name clients send")
    p.add_argument("--data-dir", default=None, help="folder of the collections (enables /v1/collections, /v1/augment)")
    p.add_argument("--store", default=None, help="sqlite (default, in --data-dir), qdrant-local or qdrant://HOST:PORT")
    p.add_argument("--api-key-file", default=None, help="file of API keys, one a line (also: $LLM_EMBEDDER_API_KEYS)")
    p.add_argument("--max-batch-tokens", type=int, default=8192, help="padded tokens per forward pass")
    p.add_argument("--max-queue", type=int, default=8192, help="inputs waiting at most; beyond: 429")
    p.add_argument(
        "--threads", type=int, default=None, help="model threads (default: the cores less the tokenizers' share)"
    )
    p.add_argument(
        "--tokenizer-workers", type=int, default=None, help="inputs tokenised at once (default: a quarter of the cores)"
    )
    p.add_argument("--access-log", action="store_true", help="log one line per request")
    add_embedder(p)
    p.set_defaults(func=run, io=SERVE)


def run(args: argparse.Namespace) -> int:
    from llm_embedder.serving.app import ServeSettings
    from llm_embedder.serving.collections import Collections
    from llm_embedder.serving.server import model_names, read_api_keys, serve_model, set_threads
    from llm_embedder.serving.stores import open_store

    store = open_store(args.store, args.data_dir) if args.data_dir or args.store else None
    settings = ServeSettings(
        served_name=args.served_name,
        model=model_reference(args.model),
        model_names=model_names(args.model),
        access_log=args.access_log,
    )
    settings.api_keys = read_api_keys(args.api_key_file)
    threads, tokenizer_workers = set_threads(args.threads, args.tokenizer_workers)  # before the model loads
    embedder = load_embedder(args)
    print(
        f"serving {settings.model} as {args.served_name!r} on http://{args.host}:{args.port} (docs at /docs); "
        f"{embedder.backend} {embedder.encoding_dtype}, {threads} model threads, {tokenizer_workers} tokenizers"
    )
    serve_model(
        embedder,
        host=args.host,
        port=args.port,
        settings=settings,
        max_batch_tokens=args.max_batch_tokens,
        max_queue_inputs=args.max_queue,
        tokenizer_workers=tokenizer_workers,
        collections_factory=(lambda engine: Collections(store, engine)) if store else None,
    )
    return 0
