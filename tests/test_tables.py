"""The docs' tables are what the committed results say: ``benchmarks/tables.py`` renders them from results/."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def _tables():
    spec = importlib.util.spec_from_file_location("tables", ROOT / "benchmarks" / "tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_committed_table_equals_what_its_results_render():
    tables = _tables()
    rendered = tables.tables()
    assert rendered, "results/ holds no JSON with a renderer"
    for path, text in rendered.items():
        assert path.is_file(), f"{path.relative_to(ROOT)} is missing: run make tables"
        assert path.read_text(encoding="utf-8") == text, f"{path.relative_to(ROOT)} is stale: run make tables"


def test_check_mode_finds_a_stale_table_and_writes_nothing(tmp_path):
    tables = _tables()
    figures = {
        "benchmark": "generate_queries", "lm": "w", "dtype": "bfloat16", "prompts": 4, "threads": 2, "cpu": "x",
        "naive_questions_per_s": 1.0, "ours_questions_per_s": 3.0, "ratio": 3.0, "differ": 1,
        "load_before": [0.5, 0.5, 0.5], "load_after": [1.0, 1.0, 1.0],
    }  # fmt: skip
    (tmp_path / "gen.json").write_text(json.dumps(figures))
    (tmp_path / "gen.md").write_text("old\n")
    assert tables.main(["--results", str(tmp_path), "--check"]) == 1
    assert (tmp_path / "gen.md").read_text() == "old\n"
    assert tables.main(["--results", str(tmp_path)]) == 0
    text = (tmp_path / "gen.md").read_text()
    assert "| w | bfloat16 | 4 | 1.00 | 3.00 | **3.00x** | 1 |" in text
    assert "before 0.50 / 0.50 / 0.50, after 1.00 / 1.00 / 1.00" in text
    assert tables.main(["--results", str(tmp_path), "--check"]) == 0


def test_a_readme_block_is_replaced_by_its_rendered_table_and_nothing_else(tmp_path):
    tables = _tables()
    readme = tmp_path / "README.md"
    readme.write_text("# R\n<!-- --8<-- [start:test-table] -->\nold\n<!-- --8<-- [end:test-table] -->\ntail\n")
    source = tmp_path / "results" / "demo" / "test" / "leaderboard.md"
    text = tables._readme_with_blocks(readme, {source: "| new |\n"}, tmp_path / "results")
    assert text == "# R\n<!-- --8<-- [start:test-table] -->\n| new |\n<!-- --8<-- [end:test-table] -->\ntail\n"
    assert tables._readme_with_blocks(readme, {}, tmp_path / "results") == readme.read_text()


def test_a_benchmark_out_replaces_only_its_own_figures(tmp_path):
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from figures import check_out, write_figures

    out = tmp_path / "figures.json"
    write_figures(out, {"benchmark": "b", "value": 1})
    write_figures(out, {"benchmark": "b", "value": 2})
    assert json.loads(out.read_text()) == {"benchmark": "b", "value": 2}
    (tmp_path / "mine.json").write_text("a user's file\n")
    with pytest.raises(SystemExit, match="not an output of this benchmark"):
        check_out(tmp_path / "mine.json", "b")
    assert (tmp_path / "mine.json").read_text() == "a user's file\n"
    with pytest.raises(SystemExit, match="folder"):
        check_out(tmp_path, "b")


def test_adapt_runs_table_counts_what_each_run_generated_and_chose():
    tables = _tables()
    run = {
        "differs": "no filter", "chosen": "plain", "seconds": {"data": 60, "train": 120},
        "candidates": {"plain": {"dev": 1.1, "ood": 1.0046}},
        "generated": {"qa": {"written": 10, "kept": 4, "train": 3, "dev": 1}},
    }  # fmt: skip
    kept_base = {**run, "chosen": None}
    text = tables.adapt_runs(
        {"runs": {"a": run, "b": kept_base}, "test queries the LLM also wrote": {"qa": ["Why?"], "tool": []}}
    )
    assert "| a | no filter | 4 of 10 | 0 of 0 | 3 / 1, 0 / 0 | plain | 1.005 | 3 |" in text
    assert "| b | no filter | 4 of 10 | 0 of 0 | 3 / 1, 0 / 0 | base (kept) | — | 3 |" in text
    assert 'qa: "Why?".' in text


def test_selection_table_shows_each_check_and_the_worst():
    figures = {
        "kind": "llm-embedder selection",
        "chosen": "plain",
        "rule": "best in-domain dev score among models with out-of-domain score >= 1.0",
        "checks": {"ood": "runs/demo/data/ood-dev", "check-1": "runs/natural/ood-dev"},
        "scores": {
            "base": {"dev": 1.0, "ood": 1.0, "check-1": 1.0},
            "instr": {"dev": 1.12, "ood": 1.05, "check-1": 0.9},
            "plain": {"dev": 1.1, "ood": 1.02, "check-1": None},
        },
    }
    lines = _tables().selection(figures).splitlines()
    assert lines[0] == "| model | dev | ood (data/ood-dev) | check-1 (natural/ood-dev) | worst check | |"
    assert lines[2] == "| base | 1.000 | 1.000 | 1.000 | 1.000 | reference |"
    assert lines[3] == "| instr | 1.120 | 1.050 | 0.900 | 0.900 |  |"
    assert lines[4] == "| plain | 1.100 | 1.020 | — | 1.020 | **chosen** |"
    assert lines[-1].startswith("Rule: best in-domain") and "check-1: `runs/natural/ood-dev`" in lines[-1]


def _evaluation(folder: Path, runs: dict[str, str | None], p_values: dict[str, tuple[float, float]]) -> None:
    """A folder as ``evaluate.py`` writes it: each run's chosen model with a raw p-value per column."""
    columns = [("qa-retrieval", "ndcg@10"), ("tool", "ndcg@5")]
    confidence = {"base=dense:minilm": {}}
    for run, chosen in runs.items():
        if chosen:
            confidence[f"{run}.{chosen}=dense:x"] = {
                name: {"vs_reference": {"difference": 0.01, "interval": [0.0, 0.02], "p_value": p}}
                for (name, _), p in zip(columns, p_values[run], strict=True)
            }
    folder.mkdir()
    board = {"columns": [{"evaluator": e, "metric": m, "lower_is_better": False} for e, m in columns]}
    (folder / "leaderboard.json").write_text(json.dumps({**board, "confidence": confidence}))
    summary = {"runs": {run: {"chosen": chosen} for run, chosen in runs.items()}}
    (folder / "adapt-summary.json").write_text(json.dumps(summary))


def test_looks_corrects_every_chosen_model_of_every_table_together(tmp_path):
    spec = importlib.util.spec_from_file_location("looks", ROOT / "benchmarks" / "adapt_eval" / "looks.py")
    looks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(looks)
    _evaluation(tmp_path / "one", {"a": "plain", "kept": None}, {"a": (0.01, 0.5)})
    _evaluation(tmp_path / "two", {"b": "plain+base@0.5"}, {"b": (0.002, 0.04)})
    out = tmp_path / "looks.json"
    looks.main(["--results", str(tmp_path / "one"), "--results", str(tmp_path / "two"), "--out", str(out)])
    found = json.loads(out.read_text())["comparisons"]
    # by hand, 4 looks sorted 0.002, 0.01, 0.04, 0.5: Holm 4 x 0.002, 3 x 0.01, 2 x 0.04, 1 x 0.5
    assert [(c["run"], c["model"]) for c in found] == [("a", "plain")] * 2 + [("b", "plain+base@0.5")] * 2
    assert [c["p_holm"] for c in found] == pytest.approx([0.03, 0.5, 0.008, 0.08])
    assert [c["verdict"] for c in found] == ["better", "same", "better", "same"]
    table = _tables().adapt_looks(json.loads(out.read_text()))
    assert "| b | plain+base@0.5 | qa-retrieval ndcg@10 | +0.010 [+0.000, +0.020] | 0.0020 | 0.008 | ▲ |" in table
