"""``llm-embedder encode``: the parser and the handler."""

from __future__ import annotations

import argparse

from llm_embedder.commands.common import claim, progress
from llm_embedder.commands.options import MODEL, TASKS, add_embedder, add_overwrite, load_embedder, task_names
from llm_embedder.outputs import FILE, Port, Spec

ENCODE = Spec(
    "encode",
    (Port("--input", "records"), MODEL, TASKS, Port("--out", "npy", FILE)),
    (("--input", "{records}", "--task", "qa", "--model", "{encoder}", "--device", "cpu"),),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encode", help="embed the texts of a JSON-lines file into a .npy array")
    p.add_argument("--input", required=True, help="JSON-lines file")
    p.add_argument("--field", default="query", help="the text field of each line (default: query)")
    p.add_argument("--task", required=True, help=f"task whose instruction and length apply ({task_names()})")
    p.add_argument("--side", choices=("query", "key"), default="query", help="encode as queries or as keys")
    p.add_argument("--out", required=True, help="output .npy file")
    add_embedder(p)
    add_overwrite(p)
    p.set_defaults(func=run, io=ENCODE)


def run(args: argparse.Namespace) -> int:
    from llm_embedder.models.embedding_files import read_texts, save_embeddings

    texts = read_texts(args.input, args.field)  # a bad line is reported before the model loads
    output = claim(args, args.out, "encode", {"input": args.input})
    embedder = load_embedder(args)
    encode = embedder.encode_queries if args.side == "query" else embedder.encode_keys
    vectors = encode(texts, task=args.task, show_progress=progress(args))
    output.seal()
    save_embeddings(args.out, vectors)
    print(f"wrote {vectors.shape[0]} x {vectors.shape[1]} float32 embeddings to {args.out}")
    return 0
