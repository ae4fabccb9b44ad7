"""``llm-embedder mine``: the parser and the handler."""

from __future__ import annotations

import argparse

from llm_embedder.commands.common import claim, progress
from llm_embedder.commands.options import (
    COUNT,
    MODEL,
    SEED,
    TASKS,
    add_embedder,
    add_overwrite,
    load_embedder,
    number,
    task_names,
)
from llm_embedder.outputs import FILE, Port, Spec

MINE = Spec(
    "mine",
    (Port("--queries", "records"), Port("--corpus", "corpus"), MODEL, TASKS, Port("--out", "records", FILE)),
    (
        ("--queries", "{records}", "--corpus", "{corpus}", "--range", "0:3"),
        ("--queries", "{records}", "--teacher-guard"),
    ),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mine", help="mine hard negatives for training queries (BM25 or dense)")
    p.add_argument("--queries", required=True, help="JSON-lines records with query (and pos / pos_index to exclude)")
    p.add_argument("--corpus", default=None, help="JSON-lines corpus; a document's id is its row number (required)")
    p.add_argument("--out", required=True, help="output: the records with neg and neg_index filled in")
    p.add_argument("--method", choices=("dense", "bm25"), default="bm25")
    p.add_argument("--task", default="qa", help=f"task whose instructions apply ({task_names()}); default qa")
    p.add_argument("--key-template", default="{text}", help="how a corpus row becomes text")
    p.add_argument("--id-field", default=None, help="integer id field (default: row number)")
    p.add_argument("--range", default="10:100", help="ranks to sample negatives from, START:END (default 10:100)")
    p.add_argument("--count", type=COUNT, default=16, help="negatives per query (default 16)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--filter-answers", action="store_true", help="also drop hits that contain an answer")
    p.add_argument(
        "--guard-margin",
        type=number(float, -2, 2),
        default=None,
        help="false-negative guard: drop hits the --model encoder scores >= the best positive + MARGIN (default off)",
    )
    p.add_argument(
        "--teacher-guard",
        action="store_true",
        help="instead of mining: copy the scored --queries file to --out less the negatives whose teacher score "
        "is at least the best positive's",
    )
    add_embedder(p)
    add_overwrite(p)
    p.set_defaults(func=run, io=MINE)


def run(args: argparse.Namespace) -> int:
    from llm_embedder.data.split import teacher_guard_file
    from llm_embedder.retrieval.corpus import Corpus
    from llm_embedder.rewards.mine import MineSettings, mine_corpus, needs_encoder, parse_rank_range

    if args.teacher_guard:
        claim(args, args.out, "mine", {"queries": args.queries}).seal()
        n, dropped = teacher_guard_file(args.queries, args.out)
        print(f"teacher guard: dropped {dropped} negatives scored at least as high as the positive ({n} records)")
        return 0
    if args.corpus is None:
        raise ValueError("mine: --corpus is required (except with --teacher-guard)")
    start, end = parse_rank_range(args.range)
    settings = MineSettings(start, end, args.count, args.seed, args.filter_answers, guard_margin=args.guard_margin)
    output = claim(args, args.out, "mine", {"queries": args.queries, "corpus": args.corpus})
    corpus = Corpus.from_jsonl(args.corpus, key_template=args.key_template, id_field=args.id_field)
    embedder = load_embedder(args) if needs_encoder(args.method, settings) else None
    if embedder is not None:
        embedder.tasks.get_task(args.task)
    output.seal()
    n = mine_corpus(
        corpus,
        args.queries,
        args.out,
        settings,
        method=args.method,
        embedder=embedder,
        task=args.task,
        show_progress=progress(args),
    )
    print(f"mined negatives (ranks {start}-{end}, {args.count} each) for {n} queries into {args.out}")
    return 0
