"""Every look at the real-query test, corrected together: each ``adapt`` run's chosen model against the base.

``evaluate.py`` corrects within one table.  When later runs are scored on the same test queries in
tables of their own (their folders are not kept, so they cannot join one grid), the number of looks
at the test grows with each table; a claim about the best of them must be corrected over all of them.
This script reads the committed results of each evaluation (``leaderboard.json`` and
``adapt-summary.json``), takes each run's chosen model (the row ``RUN.CHOSEN``; a run that kept the
base has none), and applies Holm's correction to their raw paired p-values over every column::

    .venv/bin/python benchmarks/adapt_eval/looks.py --results results/adapt-eval \\
        --results results/adapt-eval/final --out results/adapt-eval/looks.json

``make tables`` renders the JSON into ``looks.md`` beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from llm_embedder.evaluation.stats import ALPHA, holm, verdict_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/figures.py
from figures import check_out, write_figures  # noqa: E402

BENCHMARK = "adapt looks"


def chosen_rows(results: Path) -> list[dict[str, Any]]:
    """One entry per run and column of the evaluation in ``results``: the chosen model's comparison."""
    board = json.loads((results / "leaderboard.json").read_text(encoding="utf-8"))
    summary = json.loads((results / "adapt-summary.json").read_text(encoding="utf-8"))
    by_name = {row.split("=", 1)[0]: row for row in board["confidence"]}
    out = []
    for run, info in summary["runs"].items():
        if not info["chosen"]:
            continue
        row = by_name[f"{run}.{info['chosen']}"]
        for column in board["columns"]:
            evaluator = column["evaluator"]
            versus = board["confidence"][row][evaluator]["vs_reference"]
            out.append(
                {
                    "run": run,
                    "model": info["chosen"],
                    "column": f"{evaluator} {column['metric']}",
                    "lower_is_better": column["lower_is_better"],
                    "difference": versus["difference"],
                    "interval": versus["interval"],
                    "p_value": versus["p_value"],
                    "table": str(results),
                }
            )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, action="append", required=True, help="a folder evaluate.py wrote")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    check_out(args.out, BENCHMARK)
    looks = [entry for folder in args.results for entry in chosen_rows(folder)]
    for entry, p_holm in zip(looks, holm([e["p_value"] for e in looks]), strict=True):
        entry["p_holm"] = p_holm
        entry["verdict"] = verdict_of(entry["difference"], p_holm, entry["lower_is_better"])
    write_figures(args.out, {"benchmark": BENCHMARK, "alpha": ALPHA, "comparisons": looks})
    print(f"{len(looks)} comparisons -> {args.out}")


if __name__ == "__main__":
    main()
