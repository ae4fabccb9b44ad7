"""Paired comparisons between rows of a results folder, on the same test examples.

The leaderboard compares every row with its reference row; ``llm-embedder eval compare RESULTS_DIR
--rows A,B`` (:func:`compare_rows`, :func:`format_comparison`) compares any two.  Each comparison is a
paired bootstrap interval of the difference and a paired permutation test, Holm-corrected over the
comparisons of one table (see ``stats.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llm_embedder.errors import InputError
from llm_embedder.evaluation import stats
from llm_embedder.evaluation.cells import cell_sample, find_row
from llm_embedder.evaluation.registry import EVALUATORS


def paired_comparison(a: stats.Sample, b: stats.Sample, lower_is_better: bool) -> dict[str, Any] | None:
    """A - B: the difference, its paired interval, the raw p-value and the verdict for A; None when
    the two are not results on the same examples."""
    try:
        result = stats.paired_test(a, b)
    except ValueError:  # not the same examples: no paired test
        return None
    return {
        "difference": result.difference,
        "interval": list(result.interval),
        "p_value": result.p_value,
        "exact": result.exact,
        "verdict": result.verdict(lower_is_better),
    }


def holm_correct(tests: list[tuple[dict[str, Any], bool]]) -> None:
    """Holm's correction over one table's comparisons ``(comparison, lower_is_better)``: each gets
    ``p_holm`` and its verdict from it (the raw ``p_value`` stays)."""
    for (versus, low), p in zip(tests, stats.holm([v["p_value"] for v, _ in tests]), strict=True):
        versus["p_holm"] = p
        versus["verdict"] = stats.verdict_of(versus["difference"], p, low)


def decimals(value: float) -> int:
    """Decimals to print a number of this size with (3 below 10, 2 below 1000, else 1)."""
    return 3 if abs(value) < 10 else 2 if abs(value) < 1000 else 1


def compare_rows(out_dir: str | Path, row_a: str, row_b: str) -> list[dict[str, Any]]:
    """Row A against row B of a results folder, for every column both have: their numbers, the
    difference A - B with its paired bootstrap interval, the p-value and the verdict for A."""
    out = Path(out_dir)
    files = sorted((out / "cells").glob("*.json")) if (out / "cells").is_dir() else []
    if not files:
        raise FileNotFoundError(f"{out}: not an evaluation results folder (no cells/*.json)")
    cells = {}
    for file in files:
        try:
            cell = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputError(file, None, None, "not a JSON cell file") from None
        for field in ("evaluator", "retriever"):
            if not isinstance(cell.get(field), str):
                raise InputError(file, None, field, "missing: not a cell file of `llm-embedder eval`")
        cells[(cell["evaluator"], cell["retriever"])] = (file, cell)
    specs = list(dict.fromkeys(spec for _, spec in cells))
    a, b = (find_row(specs, row) for row in (row_a, row_b))
    if a == b:
        raise ValueError(f"--rows names the same row twice ({row_a!r})")
    order = {name: i for i, name in enumerate(EVALUATORS)}
    names = sorted({name for name, _ in cells}, key=lambda n: (order.get(n, len(order)), n))
    rows = []
    for name in names:
        (file_a, cell_a), (file_b, cell_b) = cells.get((name, a), (None, {})), cells.get((name, b), (None, {}))
        if "metrics" not in cell_a or "metrics" not in cell_b:
            continue
        metric, low = cell_a["main_metric"], cell_a["lower_is_better"]
        row = {"evaluator": name, "metric": metric, "lower_is_better": low}
        row.update(a=cell_a["metrics"][metric], b=cell_b["metrics"][metric])
        sample_a, sample_b = cell_sample(file_a, cell_a), cell_sample(file_b, cell_b)
        row["comparison"] = paired_comparison(sample_a, sample_b, low) if sample_a and sample_b else None
        if sample_a:
            row["unit"] = sample_a.unit
        rows.append(row)
    if not rows:
        raise ValueError(f"rows {row_a!r} and {row_b!r} share no finished column in {out}")
    holm_correct([(r["comparison"], r["lower_is_better"]) for r in rows if r["comparison"]])
    return rows


def format_comparison(rows: list[dict[str, Any]], row_a: str, row_b: str) -> str:
    """The table ``llm-embedder eval compare`` prints."""
    head = ["column", row_a, row_b, "difference", f"{stats.LEVEL:.0%} interval", "p", "Holm p", "verdict"]
    body = []
    for r in rows:
        d = decimals(max(abs(r["a"]), abs(r["b"])))
        line = [f"{r['evaluator']} {r['metric']} {'↓' if r['lower_is_better'] else '↑'}", f"{r['a']:.{d}f}"]
        line.append(f"{r['b']:.{d}f}")
        c = r["comparison"]
        if c is None:
            line += ["", "", "", "", "no paired per-example results"]
        else:
            low, high = c["interval"]
            mark = stats.MARKS[c["verdict"]]
            line += [f"{c['difference']:+.{d}f}", f"[{low:+.{d}f}, {high:+.{d}f}]", f"{c['p_value']:.4f}"]
            line.append(f"{c['p_holm']:.4f}")
            line.append(f"{mark} {c['verdict']}" if c["verdict"] != "same" else f"{mark} not significant")
        body.append(line)
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    text = ["  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip() for line in [head, *body]]
    text.append(
        f"{row_a} - {row_b}: paired bootstrap interval ({stats.RESAMPLES:,} resamples, seed {stats.SEED}); "
        f"p: paired permutation test; Holm p: corrected over the {sum(bool(r['comparison']) for r in rows)} "
        f"columns compared; verdict for {row_a} from Holm p at alpha {stats.ALPHA}"
    )
    return "\n".join(text)
