"""``llm-embedder eval`` and ``eval compare``: the parsers and the handlers."""

from __future__ import annotations

import argparse
from pathlib import Path

from llm_embedder.commands.common import claim, json_object
from llm_embedder.commands.options import COUNT, add_overwrite
from llm_embedder.evaluation.grid import GRID_MEMBERS
from llm_embedder.outputs import FOLDER, Port, Spec


def is_results(path: Path) -> bool:
    """A results folder from before manifests: one holding evaluation cells."""
    return any({"evaluator", "key"} <= set(json_object(cell)) for cell in path.glob("cells/*.json"))


EVAL = Spec(
    "eval",
    (
        Port("--data", "eval-data"),
        Port("--retriever", "retriever"),
        Port("--lm", "lm"),
        Port("--out", "results", FOLDER, GRID_MEMBERS, is_results),
    ),
    (("--data", "{eval-data}", "--tasks", "tool", "--retriever", "bm25"),),
)
EVAL_COMPARE = Spec("eval compare", (Port("results_dir", "results"),), (("{results}", "--rows", "bm25,none"),))


def register(sub: argparse._SubParsersAction) -> None:
    from llm_embedder.evaluation import harness

    p = sub.add_parser(
        "eval",
        help="evaluate retrievers by what they do for an LLM; writes a leaderboard",
        description=harness.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", help="folder in the released evaluation layout (below); required")
    p.add_argument("--tasks", default="qa,icl,chat,lrlm,tool,convsearch", help="comma-separated tasks")
    p.add_argument(
        "--retriever",
        action="append",
        help="none, random, recency, bm25 or dense:<model>, optionally LABEL=SPEC; repeat the flag for a grid",
    )
    p.add_argument("--lm", default=None, help="causal LM (default smollm2-135m)")
    p.add_argument("--lm-dtype", default=None, help="float32 (CPU default), bfloat16 (GPU default), float16")
    p.add_argument("--out", help="output folder; rerun to resume; required")
    p.add_argument("--limit", type=COUNT, default=None, help="evaluate at most N examples per file")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--reference", default=None, help="row the others are tested against (▲/▼/=); default: base, if present"
    )
    add_overwrite(p)
    p.set_defaults(func=run, io=EVAL)
    compare = p.add_subparsers(dest="eval_command", metavar="compare")
    p = compare.add_parser(
        "compare",
        help="paired comparison of two rows of a results folder, every column",
        description="For each column: both numbers, the difference A - B with its paired bootstrap interval, "
        "the paired permutation test's p-value, the p-value after Holm's correction over the columns compared, "
        "and the verdict for A (from the corrected p-value).",
    )
    p.add_argument("results_dir", metavar="RESULTS_DIR", help="an `eval --out` folder (or a pipeline's eval/)")
    p.add_argument("--rows", required=True, metavar="A,B", help="two row labels (or retriever specs)")
    p.set_defaults(func=run_compare, io=EVAL_COMPARE)


def run(args: argparse.Namespace) -> int:
    from llm_embedder.evaluation.harness import build_evaluators, run_grid

    missing = [flag for flag in ("--data", "--retriever", "--out") if not getattr(args, flag[2:])]
    if missing:  # optional for argparse only because `eval compare` has none of them
        raise ValueError(f"eval needs {', '.join(missing)} (or: eval compare RESULTS_DIR --rows A,B)")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    evaluators = build_evaluators(args.data, tasks, limit=args.limit)
    output = claim(args, args.out, "eval", {}, settings={}, is_dir=True, recognise=is_results)
    output.seal()
    board = run_grid(
        evaluators,
        args.retriever,
        args.out,
        lm_name=args.lm,
        lm_dtype=args.lm_dtype,
        device=args.device,
        show_progress=not args.quiet,
        reference=args.reference,
    )
    print((Path(args.out) / "leaderboard.md").read_text(encoding="utf-8"), end="")
    print(f"leaderboard: {args.out}/leaderboard.{{md,json,png}} ({len(board['rows'])} retrievers)")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from llm_embedder.evaluation.harness import compare_rows, format_comparison

    rows = [r.strip() for r in args.rows.split(",")]
    if len(rows) != 2 or not all(rows):
        raise ValueError(f"--rows takes two row names separated by a comma, got {args.rows!r}")
    print(format_comparison(compare_rows(args.results_dir, *rows), *rows))
    return 0
