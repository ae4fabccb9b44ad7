"""``llm-embedder search``: the parser and the handler."""

from __future__ import annotations

import argparse
from textwrap import shorten

from llm_embedder.commands.common import claim, progress
from llm_embedder.commands.options import (
    COUNT,
    MODEL,
    TASKS,
    add_embedder,
    add_overwrite,
    add_search_params,
    embedder_options,
    search_params,
)
from llm_embedder.outputs import FILE, Port, Spec

SEARCH = Spec(
    "search",
    (Port("--index", "index"), Port("--queries", "records"), MODEL, TASKS, Port("--out", "hits", FILE)),
    (("--index", "{index}", "--queries", "{records}"),),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search an index with a query string or a file of queries")
    p.add_argument("--index", required=True, help="folder written by `index build`")
    p.add_argument("--query", default=None, help="one query string")
    p.add_argument("--queries", default=None, help="JSON-lines file of queries")
    p.add_argument("--field", default="query", help="query field in --queries (default: query)")
    p.add_argument("--task", default=None, help="task of the queries (default: the index's task)")
    p.add_argument("-k", "--k", type=COUNT, default=10, help="hits per query (default 10)")
    p.add_argument("--out", default=None, help="write hits as JSON lines instead of printing them")
    p.add_argument("--mmap", action="store_true", help="map the index from disk instead of reading it into memory")
    add_search_params(p, "default: as saved")
    add_embedder(p)
    add_overwrite(p)
    p.set_defaults(func=run, io=SEARCH)


def run(args: argparse.Namespace) -> int:
    from llm_embedder.retrieval.query_files import read_queries, write_hits
    from llm_embedder.retrieval.searcher import Searcher

    Searcher.read_meta(args.index)  # fail fast on a wrong folder, before reading queries
    if (args.query is None) == (args.queries is None):
        raise ValueError("give either --query TEXT or --queries FILE")
    records = [{args.field: args.query}] if args.query is not None else read_queries(args.queries, args.field)
    searcher = Searcher.load(
        args.index, model=args.model, mmap=args.mmap, search_params=search_params(args), **embedder_options(args)
    )
    if args.task:
        if searcher.embedder is not None:
            searcher.embedder.tasks.get_task(args.task)
        searcher.task = args.task
    output = claim(args, args.out, "search", {"queries": args.queries, "index": args.index}) if args.out else None
    hits = searcher.search([r[args.field] for r in records], k=args.k, show_progress=progress(args))
    if output is not None:
        output.seal()
        write_hits(args.out, records, hits)
        print(f"wrote the top {args.k} hits of {len(records)} queries to {args.out}")
    else:
        for record, row in zip(records, hits, strict=True):
            print(f"query: {shorten(record[args.field], 100, placeholder='…')}")
            for rank, h in enumerate(row, start=1):
                print(f"  {rank:>2}. [{h.id}] {h.score:.4f}  {shorten(h.text, 90, placeholder='…')}")
    return 0
