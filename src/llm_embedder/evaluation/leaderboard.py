"""The leaderboard of a results folder: ``leaderboard.{md,json,png}`` from its cell files.

Each number comes with a 95% bootstrap interval over the test examples (over whole clusters, e.g.
articles, where the eval records carry a ``cluster``), and each row is compared with a reference row
(default ``base``) by a paired test on the same examples: ▲ / ▼ mark a row significantly better /
worse (lower perplexity is better) after Holm's correction over all the table's comparisons, = not
significantly different (see ``stats.py`` and ``compare.py``); the markdown also gives each paired
difference with its interval.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm_embedder.evaluation import stats
from llm_embedder.evaluation.cells import cell_file, cell_sample, reference_row
from llm_embedder.evaluation.compare import decimals, holm_correct, paired_comparison
from llm_embedder.evaluation.retrievers import split_label
from llm_embedder.fileio import atomic_path, read_json, write_json

STATISTICS = {
    "level": stats.LEVEL,
    "alpha": stats.ALPHA,
    "resamples": stats.RESAMPLES,
    "seed": stats.SEED,
    "interval": "percentile bootstrap over the cell's units (its `unit`: examples, or whole clusters such as "
    "articles), a macro average over the groups each resample holds",
    "test": "paired permutation test (swaps of each unit's two results), two-sided",
    "correction": "Holm over the table's comparisons with the reference (`comparisons`): `p_value` is raw, "
    "`p_holm` corrected, and the verdicts (marks) come from `p_holm`",
}
"""How the leaderboard's intervals and tests were made (its JSON's ``statistics``)."""


def write_leaderboard(
    out: Path, evaluator_names: list[str], specs: list[str], lm_name: str | None, reference: str | None = None
) -> dict[str, Any]:
    """Markdown, JSON and a PNG chart (one panel per evaluator) from the cell files, each number with
    its bootstrap interval and its paired test against the ``reference`` row (see
    :func:`~llm_embedder.evaluation.cells.reference_row`)."""
    cells, files = {}, {}
    for spec in specs:
        for name in evaluator_names:
            file = cell_file(out, name, spec)
            if file.exists():
                cells[(name, spec)] = read_json(file, "cell file")
                files[(name, spec)] = file
    columns = []
    for name in evaluator_names:
        done = [c for (n, _), c in cells.items() if n == name and "metrics" in c]
        if done:
            columns.append((name, done[0]["main_metric"], done[0]["lower_is_better"]))
    table = {
        spec: {
            name: cells[(name, spec)]["metrics"][metric] if "metrics" in cells.get((name, spec), {}) else None
            for name, metric, _ in columns
        }
        for spec in specs
    }
    samples = {key: cell_sample(files[key], cell) for key, cell in cells.items() if "metrics" in cell}
    ref = reference_row(specs, reference)
    confidence = {
        spec: {
            name: _confidence(samples.get((name, spec)), None if spec == ref else samples.get((name, ref)), low)
            for name, _, low in columns
        }
        for spec in specs
    }
    tests = [
        (versus, low)
        for spec in specs
        for name, _, low in columns
        if (versus := (confidence[spec][name] or {}).get("vs_reference"))
    ]
    holm_correct(tests)
    board = {
        "lm": lm_name,
        "columns": [{"evaluator": n, "metric": m, "lower_is_better": low} for n, m, low in columns],
        "rows": table,
        "reference": ref,
        "statistics": {**STATISTICS, "comparisons": len(tests)},
        "confidence": confidence,
    }
    write_json(out / "leaderboard.json", board)
    with atomic_path(out / "leaderboard.md") as tmp:  # a reader never sees half a table
        tmp.write_text(leaderboard_markdown(board), encoding="utf-8")
    _chart(out / "leaderboard.png", columns, table, confidence, specs)
    return board


def leaderboard_markdown(board: dict[str, Any]) -> str:
    """The Markdown of a leaderboard from its JSON alone (what ``make tables`` renders from ``results/``)."""
    columns = [(c["evaluator"], c["metric"], c["lower_is_better"]) for c in board["columns"]]
    table, confidence, ref = board["rows"], board["confidence"], board["reference"]
    specs = list(table)
    header = " | ".join(f"{n} {m} {'↓' if low else '↑'}" for n, m, low in columns)
    lines = [f"| retriever | {header} |", "|---" * (len(columns) + 1) + "|"]
    for spec in specs:
        values = " | ".join(_markdown_cell(table[spec][n], confidence[spec][n]) for n, _, _ in columns)
        lines.append(f"| {split_label(spec)[0]} | {values} |")
    comparisons = board["statistics"]["comparisons"]
    if comparisons:
        lines += ["", *_difference_table(columns, specs, ref, confidence)]
    lines += ["", _legend(ref, comparisons, _units(columns, specs, confidence))]
    return "\n".join(lines) + "\n"


def _confidence(
    sample: stats.Sample | None, reference: stats.Sample | None, lower_is_better: bool
) -> dict[str, Any] | None:
    if sample is None:
        return None
    out: dict[str, Any] = {"n": sample.n, "unit": sample.unit, "units": sample.units}
    out["interval"] = list(stats.bootstrap_interval(sample))
    if reference is not None:
        out["vs_reference"] = paired_comparison(sample, reference, lower_is_better)
    return out


def _difference_table(
    columns: list[tuple[str, str, bool]], specs: list[str], ref: str | None, confidence: dict
) -> list[str]:
    """Markdown lines: each row's paired difference from the reference per column, with its interval
    and Holm-corrected p."""
    lines = [
        f"Difference from `{split_label(ref)[0]}` [{stats.LEVEL:.0%} paired bootstrap interval], Holm-corrected p:",
        "",
        "| retriever | " + " | ".join(name for name, _, _ in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for spec in specs:
        if spec == ref:
            continue
        cells = []
        for name, _, _ in columns:
            versus = (confidence[spec][name] or {}).get("vs_reference")
            if not versus:
                cells.append("–")
                continue
            d = decimals(max(abs(versus["difference"]), *map(abs, versus["interval"])))
            low, high = versus["interval"]
            cells.append(f"{versus['difference']:+.{d}f} [{low:+.{d}f}, {high:+.{d}f}] p={versus['p_holm']:.3f}")
        lines.append(f"| {split_label(spec)[0]} | " + " | ".join(cells) + " |")
    return lines


def _units(columns: list[tuple[str, str, bool]], specs: list[str], confidence: dict) -> dict[str, str]:
    """Column -> its resampled unit, where that is not the example (``article (22)``)."""
    out = {}
    for name, _, _ in columns:
        cell = next((confidence[s][name] for s in specs if confidence[s][name]), None)
        if cell and cell.get("unit", "example") != "example":
            out[name] = f"{cell['unit']} ({cell['units']})"
    return out


def _markdown_cell(value: float | None, confidence: dict[str, Any] | None) -> str:
    """``0.524 [0.471, 0.580] ▲``; the bare number when there are no per-example results."""
    if value is None:
        return "–"
    d = decimals(value)
    if confidence is None:
        return f"{value:.{d}f}"
    low, high = confidence["interval"]
    text = f"{value:.{d}f} [{low:.{d}f}, {high:.{d}f}]"
    versus = confidence.get("vs_reference")
    return f"{text} {stats.MARKS[versus['verdict']]}" if versus else text


def _legend(reference: str | None, comparisons: int = 0, units: dict[str, str] | None = None) -> str:
    text = (
        f"[low, high]: {stats.LEVEL:.0%} bootstrap interval over the test examples "
        f"({stats.RESAMPLES:,} resamples, seed {stats.SEED})"
    )
    if units:
        text += "; resampling whole clusters in " + ", ".join(f"{n}: {u}" for n, u in units.items())
    text += "."
    if reference is not None:
        text += (
            f" ▲ / ▼: significantly better / worse than `{split_label(reference)[0]}` (paired permutation test "
            f"over the same units, p < {stats.ALPHA} after Holm's correction over the table's {comparisons} "
            "comparisons; raw p in leaderboard.json); =: not significantly different."
        )
    return text


_COLORS = {"better": "#55a868", "worse": "#c44e52", "same": "#4c72b0"}


def _chart(path: Path, columns: list[tuple[str, str, bool]], table: dict, confidence: dict, specs: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not columns:
        return
    fig, axes = plt.subplots(1, len(columns), figsize=(3.2 * len(columns), 3.6), squeeze=False)
    for ax, (name, metric, low) in zip(axes[0], columns, strict=True):
        values = [0.0 if table[s][name] is None else table[s][name] for s in specs]
        cis = [confidence[s][name] for s in specs]
        # A percentile interval need not hold the number itself (small or skewed samples): clip the bars.
        below = [max(0.0, v - c["interval"][0]) if c else 0.0 for v, c in zip(values, cis, strict=True)]
        above = [max(0.0, c["interval"][1] - v) if c else 0.0 for v, c in zip(values, cis, strict=True)]
        verdicts = [((c or {}).get("vs_reference") or {}).get("verdict") for c in cis]  # None: reference, no test
        colors = [_COLORS[v or "same"] for v in verdicts]
        ax.bar(range(len(specs)), values, color=colors, yerr=[below, above], capsize=2, ecolor="#333333")
        for x, (v, up, verdict) in enumerate(zip(values, above, verdicts, strict=True)):
            if verdict:
                ax.annotate(stats.MARKS[verdict], (x, v + up), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(specs)), [split_label(s)[0] for s in specs], rotation=45, ha="right", fontsize=7)
        ax.set_title(f"{name}\n{metric} ({'lower' if low else 'higher'} is better)", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.margins(y=0.12)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
