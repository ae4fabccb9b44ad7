"""``llm-embedder index build``: the parser and the handler."""

from __future__ import annotations

import argparse
from pathlib import Path

from llm_embedder.commands.common import claim, init_distributed, json_object, model_reference, progress
from llm_embedder.commands.options import (
    COUNT,
    MODEL,
    TASKS,
    add_embedder,
    add_overwrite,
    add_search_params,
    load_embedder,
    search_params,
    task_names,
)
from llm_embedder.outputs import FOLDER, Port, Spec

INDEX_MEMBERS = ("CURRENT", "searcher.json", "corpus.jsonl", "faiss.index", "bm25")


def is_index(path: Path) -> bool:
    """An index from before manifests: a searcher of a known method (either layout)."""
    from llm_embedder import versioned

    try:
        live = versioned.current(path)
    except (OSError, ValueError):
        return False
    return json_object((live or path) / "searcher.json").get("method") in ("dense", "bm25")


INDEX_BUILD = Spec(
    "index build",
    (Port("--corpus", "corpus"), MODEL, TASKS, Port("--out", "index", FOLDER, INDEX_MEMBERS, is_index)),
    (("--corpus", "{corpus}", "--method", "bm25"),),
)


def register(sub: argparse._SubParsersAction) -> None:
    index = sub.add_parser("index", help="build search indexes").add_subparsers(dest="index_command", required=True)
    p = index.add_parser("build", help="index a JSON-lines corpus (dense on faiss, or BM25)")
    p.add_argument("--corpus", required=True, help="JSON-lines corpus; a document's id is its row number")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--method", choices=("dense", "bm25"), default="dense")
    p.add_argument("--task", default="qa", help=f"task whose key instruction applies ({task_names()}); default qa")
    p.add_argument("--key-template", default="{text}", help="how a row becomes text, e.g. '{title} {text}'")
    p.add_argument("--id-field", default=None, help="integer id field (default: row number)")
    p.add_argument(
        "--factory",
        default="Flat",
        help="faiss index_factory string, or a preset sized to the corpus: ivf, ivf-sq8, ivf-pq, hnsw, sq8, pq "
        "(default: Flat, exact)",
    )
    p.add_argument("--train-size", type=COUNT, default=100_000, help="vectors sampled to train IVF/PQ/SQ (default 1e5)")
    p.add_argument("--shard-size", type=COUNT, default=50_000, help="documents per shard; a rerun resumes by shard")
    add_search_params(p, "saved with the index")
    add_embedder(p)
    add_overwrite(p)
    p.set_defaults(func=run_build, io=INDEX_BUILD)


def run_build(args: argparse.Namespace) -> int:
    from llm_embedder.retrieval.corpus import Corpus
    from llm_embedder.retrieval.searcher import Searcher

    output = claim(args, args.out, "index build", {"corpus": args.corpus}, is_dir=True, recognise=is_index)
    if args.method == "dense":
        return _build_dense(args, output)
    corpus = Corpus.from_jsonl(args.corpus, key_template=args.key_template, id_field=args.id_field)
    searcher = Searcher.build(corpus, args.method, task=args.task, show_progress=progress(args))
    searcher.save(args.out)
    output.seal()
    print(f"indexed {len(corpus)} documents ({args.method}, task {args.task}) into {args.out}")
    return 0


def _build_dense(args: argparse.Namespace, output) -> int:
    """Streamed, sharded and resumable; under torchrun the ranks share the shards (retrieval/build.py)."""
    from llm_embedder.retrieval.build import BuildSettings, build_dense_index

    args.device = init_distributed(args.device)
    settings = BuildSettings(
        task=args.task,
        factory=args.factory,
        key_template=args.key_template,
        id_field=args.id_field,
        shard_size=args.shard_size,
        train_size=args.train_size,
        search_params=search_params(args),
    )
    embedder = load_embedder(args)
    count = build_dense_index(
        args.corpus, args.out, embedder, settings, model=model_reference(args.model), show_progress=progress(args)
    )
    if count:  # rank 0
        output.seal()
        print(
            f"indexed {count} documents (dense, task {args.task}, {embedder.backend} {embedder.encoding_dtype}) "
            f"into {args.out}"
        )
    return 0
