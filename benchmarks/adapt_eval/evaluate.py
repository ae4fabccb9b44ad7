"""The adapted model on real human queries that ``adapt`` never saw: base, adapted and every variant it trained.

Run from the repository root after ``build_data.py`` and an ``adapt`` run on its corpus and tools::

    .venv/bin/llm-embedder adapt --corpus runs/adapt-eval/corpus.jsonl --tools runs/adapt-eval/tools.json \\
        --out runs/adapt-exp/adapted
    .venv/bin/python benchmarks/adapt_eval/evaluate.py --data runs/adapt-eval --adapted runs/adapt-exp/adapted

Rows: BM25, the zero-shot base encoder, the adapted output, and each variant under the work folder's
``select/models`` (trained, and merged with the base).  Columns: qa-retrieval nDCG@10 over the FAQ answers
and tool nDCG@5 over the ToolTalk APIs, with intervals and Holm-corrected paired tests against ``base``
(the harness's).  The leaderboard and the adapt report's generation counts and choice are copied to
``--results`` (committed: the docs include the table from there).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from llm_embedder.evaluation.grid import run_grid
from llm_embedder.evaluation.registry import build_evaluators


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("runs/adapt-eval"))
    parser.add_argument("--adapted", type=Path, default=Path("runs/adapt-exp/adapted"))
    parser.add_argument("--work", type=Path, default=None, help="adapt's work folder (default: ADAPTED.work)")
    parser.add_argument("--base", default="minilm")
    parser.add_argument("--out", type=Path, default=Path("runs/adapt-exp/eval-real"))
    parser.add_argument("--results", type=Path, default=Path("results/adapt-eval"))
    args = parser.parse_args(argv)

    work = args.work or args.adapted.with_name(args.adapted.name + ".work")
    specs = ["bm25", f"base=dense:{args.base}", f"adapted=dense:{args.adapted}"]
    for model in sorted((work / "select" / "models").glob("*/model")):
        specs.append(f"{model.parent.name}=dense:{model}")
    evaluators = build_evaluators(args.data / "eval", ["qa", "tool"])
    run_grid(evaluators, specs, args.out, reference="base", show_progress=True)
    args.results.mkdir(parents=True, exist_ok=True)
    for name in ("leaderboard.md", "leaderboard.json"):
        shutil.copyfile(args.out / name, args.results / name)
    report = json.loads((args.adapted / "report.json").read_text(encoding="utf-8"))
    summary = {
        "chosen": report["chosen"],
        "rule": report["selection"]["rule"],
        "candidates": report["selection"]["candidates"],
        "generated": {task: part.get("counts") for task, part in report["generated"].items()},
        "seconds": report["seconds"],
        "lm": report["lm"],
        "base": report["base"],
    }
    (args.results / "adapt-summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print((args.results / "leaderboard.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
