"""Leaderboard marks and ``llm-embedder eval compare`` on a hand-made results folder (no LM): rows
whose per-example results make one column clearly better, one clearly worse and one level."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from llm_embedder.cli import main as cli_main
from llm_embedder.evaluation import leaderboard, stats
from llm_embedder.evaluation.cells import cell_stem
from llm_embedder.evaluation.compare import compare_rows

N = 40
ROWS = {"base": "base=dense:minilm", "tuned": "tuned=dense:runs/x/model", "bm25": "bm25"}


def write_cell(out: Path, evaluator: str, spec: str, metric: str, lower: bool, value: float, details: list) -> None:
    name = cell_stem(evaluator, spec)
    cell = {"evaluator": evaluator, "task": "t", "retriever": spec, "metrics": {metric: value}}
    cell.update(main_metric=metric, lower_is_better=lower, seconds=0.0)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    (out / "details").mkdir(parents=True, exist_ok=True)
    (out / "cells" / f"{name}.json").write_text(json.dumps(cell), encoding="utf-8")
    (out / "details" / f"{name}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in details), encoding="utf-8")


@pytest.fixture
def results(tmp_path) -> Path:
    """msc: tuned's log-loss 0.3 lower on every example (better); popqa: tuned answers 12 fewer
    questions (worse); tool: tuned ranks exactly as base (level)."""
    rng = np.random.default_rng(0)
    nll = rng.uniform(2.0, 4.0, size=N)
    correct = (np.arange(N) < 20).astype(float)
    queries = [f"q{i}" for i in range(N)]
    per_row = {
        "base": (nll, correct, [0, 1, 2]),
        "tuned": (nll - 0.3 + rng.normal(0, 0.05, size=N), np.where(np.arange(N) < 12, 0.0, correct), [0, 1, 2]),
        "bm25": (nll + rng.normal(0, 0.05, size=N), correct, [1, 0, 2]),
    }
    out = tmp_path / "results"
    for label, (losses, answers, ranking) in per_row.items():
        spec = ROWS[label]
        msc = [{"query": q, "nll": float(v), "tokens": 10} for q, v in zip(queries, losses, strict=True)]
        write_cell(out, "msc", spec, "perplexity", True, math.exp(losses.mean()), msc)
        popqa = [{"query": q, "correct": float(c)} for q, c in zip(queries, answers, strict=True)]
        write_cell(out, "popqa", spec, "accuracy", False, float(answers.mean()), popqa)
        tool = [{"query": q, "retrieved": ranking, "relevant": [0]} for q in queries]
        value = 1.0 if ranking[0] == 0 else 1 / math.log2(3)
        write_cell(out, "tool", spec, "ndcg@5", False, value, tool)
    return out


def test_leaderboard_marks_are_direction_aware(results):
    board = leaderboard.write_leaderboard(results, ["popqa", "msc", "tool"], list(ROWS.values()), "lm")
    assert board["reference"] == ROWS["base"]  # the row labelled base, by default
    tuned = board["confidence"][ROWS["tuned"]]
    assert tuned["msc"]["vs_reference"]["verdict"] == "better"  # lower perplexity
    assert tuned["msc"]["vs_reference"]["difference"] < 0 and tuned["msc"]["vs_reference"]["p_value"] < 0.001
    assert tuned["popqa"]["vs_reference"]["verdict"] == "worse"
    # Twelve discordant pairs, all against tuned: the exact McNemar p-value, 2 / 2^12.
    assert tuned["popqa"]["vs_reference"]["exact"] and tuned["popqa"]["vs_reference"]["p_value"] == 2 / 2**12
    assert tuned["tool"]["vs_reference"] == {
        "difference": 0.0,
        "interval": [0.0, 0.0],
        "p_value": 1.0,
        "exact": True,
        "verdict": "same",
        "p_holm": 1.0,
    }
    assert tuned["popqa"]["unit"] == "example" and tuned["popqa"]["units"] == N
    assert "vs_reference" not in board["confidence"][ROWS["base"]]["msc"]
    # Holm over the table's six comparisons (two rows x three columns); marks from the corrected p
    tests = [
        board["confidence"][ROWS[r]][c]["vs_reference"] for r in ("tuned", "bm25") for c in ("popqa", "msc", "tool")
    ]
    assert board["statistics"]["comparisons"] == 6
    assert [t["p_holm"] for t in tests] == pytest.approx(stats.holm([t["p_value"] for t in tests]))
    assert all(t["p_holm"] >= t["p_value"] for t in tests)
    lower = [False, True, False] * 2  # popqa, msc (perplexity), tool
    expected = [stats.verdict_of(t["difference"], t["p_holm"], low) for t, low in zip(tests, lower, strict=True)]
    assert [t["verdict"] for t in tests] == expected
    lines = (results / "leaderboard.md").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "| retriever | popqa accuracy ↑ | msc perplexity ↓ | tool ndcg@5 ↑ |"
    cells = [c.strip() for c in lines[3].strip("|").split("|")]
    low, high = tuned["popqa"]["interval"]
    assert cells[:2] == ["tuned", f"0.200 [{low:.3f}, {high:.3f}] ▼"]
    assert cells[2].endswith("▲") and cells[3] == "1.000 [1.000, 1.000] ="
    assert "than `base`" in lines[-1] and "Holm's correction over the table's 6 comparisons" in lines[-1]
    # the paired differences, with their intervals and corrected p, below the table
    start = lines.index("Difference from `base` [95% paired bootstrap interval], Holm-corrected p:")
    assert lines[start + 2] == "| retriever | popqa | msc | tool |"
    tuned_line = next(line for line in lines[start:] if line.startswith("| tuned |"))
    versus = tuned["popqa"]["vs_reference"]
    low, high = versus["interval"]
    expected = f"{versus['difference']:+.3f} [{low:+.3f}, {high:+.3f}] p={versus['p_holm']:.3f}"
    assert [c.strip() for c in tuned_line.strip("|").split("|")][1] == expected


def test_clustered_details_are_resampled_by_cluster(results):
    """popqa's questions, said to come from four articles: its intervals and test resample articles,
    and the JSON and the legend name the unit."""
    for label in ("base", "tuned", "bm25"):
        file = results / "details" / f"{cell_stem('popqa', ROWS[label])}.jsonl"
        details = [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines()]
        for i, d in enumerate(details):
            d.update(cluster=f"article {i % 4}", cluster_unit="article")
        file.write_text("".join(json.dumps(d) + "\n" for d in details), encoding="utf-8")
    board = leaderboard.write_leaderboard(results, ["popqa", "msc", "tool"], list(ROWS.values()), "lm")
    cell = board["confidence"][ROWS["tuned"]]["popqa"]
    assert (cell["unit"], cell["units"], cell["n"]) == ("article", 4, N)
    assert board["confidence"][ROWS["tuned"]]["msc"]["unit"] == "example"
    read = [
        [json.loads(line) for line in (results / "details" / f"{cell_stem('popqa', ROWS[r])}.jsonl").open()]
        for r in ("tuned", "base")
    ]
    samples = [stats.sample_from_details("accuracy", d) for d in read]
    expected = stats.paired_test(*samples)
    assert expected.exact and expected.unit == "article"  # 2^4 swaps of whole articles
    assert cell["vs_reference"]["p_value"] == pytest.approx(expected.p_value)
    assert cell["interval"] == pytest.approx(list(stats.bootstrap_interval(samples[0])))
    legend = (results / "leaderboard.md").read_text(encoding="utf-8").splitlines()[-1]
    assert "resampling whole clusters in popqa: article (4)" in legend


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli_main(["eval", "compare", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_compare_prints_every_column(results, capsys):
    code, out, err = run_cli(capsys, str(results), "--rows", "tuned,base")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["column", "tuned", "base", "difference", "95%", "interval", "p", "Holm", "p", "verdict"]
    by_column = {line.split()[0]: line for line in lines[1:4]}
    assert list(by_column) == ["popqa", "msc", "tool"]  # the evaluators' usual order
    assert by_column["popqa"].split()[3:6] == ["0.200", "0.500", "-0.300"] and by_column["popqa"].endswith("▼ worse")
    assert f"{2 / 2**12:.4f}" in by_column["popqa"]
    assert by_column["msc"].endswith("▲ better") and by_column["tool"].endswith("= not significant")
    assert lines[-1].startswith("tuned - base: paired bootstrap interval (10,000 resamples, seed 0)")
    rows = compare_rows(results, "tuned", "base")
    assert [r["comparison"]["verdict"] for r in rows] == ["worse", "better", "same"]
    # Holm over the three columns compared: popqa's 2/2^12 is the second smallest p, times 2
    p = {r["evaluator"]: r["comparison"]["p_value"] for r in rows}
    assert p["msc"] < p["popqa"] < p["tool"] == 1.0
    expected = max(3 * p["msc"], 2 * p["popqa"])
    assert rows[0]["comparison"]["p_holm"] == pytest.approx(expected) and f"{expected:.4f}" in by_column["popqa"]
    # Full specs name rows too; A and B swap the sign.
    swapped = compare_rows(results, ROWS["base"], "tuned")
    assert [r["comparison"]["difference"] for r in swapped] == [-r["comparison"]["difference"] for r in rows]


def test_cli_compare_without_details_shows_numbers_only(results, capsys):
    (results / "details" / f"{cell_stem('msc', ROWS['bm25'])}.jsonl").unlink()
    code, out, _ = run_cli(capsys, str(results), "--rows", "bm25,base")
    msc = next(line for line in out.splitlines() if line.startswith("msc"))
    assert code == 0 and msc.endswith("no paired per-example results")


@pytest.mark.parametrize(
    "args,message",
    [
        (["{dir}", "--rows", "tuned,nope"], "row 'nope' is not on the leaderboard; rows: base, bm25, tuned"),
        (["{dir}/missing", "--rows", "tuned,base"], "not an evaluation results folder (no cells/*.json)"),
        (["{dir}", "--rows", "tuned"], "--rows takes two row names separated by a comma, got 'tuned'"),
        (["{dir}", "--rows", "base,base"], "--rows names the same row twice ('base')"),
    ],
    ids=["row", "dir", "one-row", "same-row"],
)
def test_cli_compare_bad_input_exits_2_with_one_line(results, capsys, args, message):
    code, out, err = run_cli(capsys, *[a.format(dir=results) for a in args])
    assert code == 2 and out == ""
    assert err.startswith("llm-embedder: error: ") and message in err and err.count("\n") == 1


def test_cli_compare_names_a_broken_cell_file(results, capsys):
    (results / "cells" / "zz.json").write_text("{oops", encoding="utf-8")
    code, _, err = run_cli(capsys, str(results), "--rows", "tuned,base")
    assert code == 2 and err == f"llm-embedder: error: {results / 'cells' / 'zz.json'}: not a JSON cell file\n"


def test_chart_draws_an_interval_that_misses_its_number(tmp_path):
    """A percentile interval of a small or skewed sample can lie wholly on one side of the number."""
    confidence = {"a": {"x": {"n": 2, "interval": [0.6, 0.9]}}, "b": {"x": None}}
    table = {"a": {"x": 0.5}, "b": {"x": None}}
    leaderboard._chart(tmp_path / "chart.png", [("x", "accuracy", False)], table, confidence, ["a", "b"])
    assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG")


def test_cli_eval_without_its_options_exits_2(capsys, tmp_path):
    """``eval`` options are optional to argparse (``eval compare`` has none of them), so eval checks them."""
    assert cli_main(["eval", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == "llm-embedder: error: eval needs --retriever, --out (or: eval compare RESULTS_DIR --rows A,B)\n"
