"""``llm-embedder merge``: the parser and the handler."""

from __future__ import annotations

import argparse
from pathlib import Path

from llm_embedder.commands.common import claim
from llm_embedder.commands.options import COUNT
from llm_embedder.outputs import WHOLE, Port, Spec


def is_merge_output(path: Path) -> bool:
    from llm_embedder.models.merge import is_merge_output

    return is_merge_output(path)


MERGE = Spec(
    "merge",
    (
        Port("--model", "encoder"),
        Port("--auto-weights", "eval-data"),
        Port("--out", "model", WHOLE, (), is_merge_output),
    ),
    (("--model", "{encoder}", "--model", "{encoder}", "--weights", "0.5,0.5"),),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "merge",
        help="average the weights of encoders (LM-Cocktail): a fine-tuned model with its base",
        description="Weighted average of the parameters of models of one architecture; the output is an "
        "Embedder folder with merge.json. Weights are non-negative and divided by their sum. With --auto-weights, "
        "the first model's weight is chosen on a grid by dev retrieval (no LLM): the mean over the dev folder's "
        "retrieval evaluators of each score divided by the second model's (the base); the other models share "
        "the rest equally; ties go to the smaller weight.",
    )
    p.add_argument(
        "--model", action="append", required=True, help="a model to merge; repeat it; the fine-tuned one first"
    )
    p.add_argument("--weights", default=None, help="one weight per model, comma-separated, e.g. 0.7,0.3")
    p.add_argument(
        "--auto-weights", default=None, metavar="DEV_DIR", help="choose the weights on dev data (eval layout)"
    )
    p.add_argument(
        "--grid",
        default=",".join(f"{i / 10:g}" for i in range(11)),
        help="fine-tuned weights tried by --auto-weights (default 0,0.1,...,1)",
    )
    p.add_argument("--limit", type=COUNT, default=None, help="--auto-weights: at most N dev queries per evaluator")
    p.add_argument(
        "--tasks-from",
        type=COUNT,
        default=1,
        help="position (1-based) of the model whose task table is kept; default 1",
    )
    p.add_argument("--out", required=True, help="output folder (written under a temporary name, then renamed)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="accepted for symmetry: an earlier merge output is replaced without it, and a folder merge did not "
        "write is never replaced (a model is written as a whole folder)",
    )
    p.add_argument("--device", default="cpu", help="where the models are loaded (and scored with --auto-weights)")
    p.set_defaults(func=run, io=MERGE)


def run(args: argparse.Namespace) -> int:
    from llm_embedder.models.merge import MergeError, merge_models, parse_weights

    if len(args.model) < 2:
        raise MergeError("give at least two --model (the fine-tuned one first)")
    if (args.weights is None) == (args.auto_weights is None):
        raise MergeError("give either --weights W1,W2,... or --auto-weights DEV_DIR")
    if not 1 <= args.tasks_from <= len(args.model):
        raise MergeError(f"--tasks-from {args.tasks_from}: expected a model position from 1 to {len(args.model)}")
    # written as a whole folder: recognised by its merge.json, no manifest of its own
    claim(args, args.out, "merge", {}, settings={}, is_dir=True, whole=True, recognise=is_merge_output)
    options = {"tasks_from": args.tasks_from - 1, "overwrite": args.overwrite, "device": args.device}
    if args.auto_weights is None:
        record = merge_models(args.model, parse_weights(args.weights), args.out, **options)
    else:
        from llm_embedder.evaluation.merge_weights import CRITERION, auto_merge, parse_grid

        grid = parse_grid(args.grid)
        record, choice = auto_merge(
            args.model, args.auto_weights, args.out, grid, limit=args.limit, show_progress=not args.quiet, **options
        )
        print(choice.table())
        print(f"criterion: {CRITERION}")
    shares = ", ".join(f"{m['model']} {m['weight']:.4g}" for m in record["models"])
    print(f"merged {shares} into {args.out} (task table of {record['tasks_from']}; see merge.json)")
    return 0
