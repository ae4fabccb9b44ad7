"""The main job end to end on the quick demo data, with tiny random models so it runs in CI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_embedder.cli import main
from llm_embedder.pipeline import ABLATIONS, STAGE_FILE, Pipeline, PipelineConfig, _claim

RECIPE = Path(__file__).parents[1] / "recipes" / "demo.yaml"
VARIANTS = ("fine-tuned", "no-reward", "no-stable-distill", "no-instructions", "no-homogeneous")


def _overrides(work: Path, encoder: Path, lm: Path) -> list[str]:
    return [
        f"work_dir={work}",
        f"encoder={encoder}",
        f"lm={lm}",
        "score.max_candidates=2",
        "train.max_steps=2",
        "train.batch_size=2",
        "train.save_steps=1",
        "eval.limit=2",
        # sized for the tiny LM's 512-token window
        'eval.options={"lrlm": {"chunk_size": 16, "window_chunks": 4, "target_chunks": 2, "top_k": 1},'
        ' "icl": {"context_tokens": 128}, "popqa": {"knowledge_tokens": 128}, "mmlu": {"knowledge_tokens": 128}}',
    ]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_encoder_dir, tiny_lm_dir):
    work = tmp_path_factory.mktemp("pipeline")
    args = ["-q", "run", str(RECIPE), "--quick", "--ablate", ",".join(ABLATIONS)]
    for override in _overrides(work, tiny_encoder_dir, tiny_lm_dir):
        args += ["--set", override]
    assert main(args) == 0
    return work, args


def test_quick_pipeline_writes_every_stage_and_a_leaderboard(finished_run):
    work, _ = finished_run
    for task in ("qa", "icl", "chat", "lrlm"):
        scored = [json.loads(line) for line in (work / "scored" / f"{task}.json").read_text().splitlines()]
        assert scored and all(len(r["teacher_scores"]) >= 2 for r in scored)
    for task in ("tool", "convsearch"):
        assert all(json.loads(line)["neg"] for line in (work / "mined" / f"{task}.json").read_text().splitlines())
    for variant in VARIANTS:
        assert (work / "models" / variant / "model" / "llm_embedder.json").is_file()
    board = json.loads((work / "eval" / "leaderboard.json").read_text())
    assert list(board["rows"]) == [
        "none",
        "random",
        "bm25",
        f"base=dense:{board_encoder(work)}",
        *(f"{variant}=dense:{work / 'models' / variant / 'model'}" for variant in VARIANTS),
    ]
    evaluators = {c["evaluator"] for c in board["columns"]}
    assert evaluators == {"mmlu", "popqa", "qa-retrieval", "icl", "msc", "lrlm", "tool", "convsearch"}
    markdown = (work / "eval" / "leaderboard.md").read_text()
    assert all(f"| {variant} |" in markdown for variant in VARIANTS)
    assert (work / "eval" / "leaderboard.png").stat().st_size > 1000


def board_encoder(work: Path) -> str:
    config = json.loads((work / "models" / "fine-tuned" / "model" / "training.json").read_text())
    return config["config"]["model"]


def test_rerun_skips_every_finished_stage(finished_run, capsys):
    work, args = finished_run
    cells = {p: p.stat().st_mtime_ns for p in (work / "eval" / "cells").iterdir()}
    model = work / "models" / "fine-tuned" / "model" / "model.safetensors"
    before = model.stat().st_mtime_ns
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "[1/5] data:" in out and "is built" in out
    assert "negatives are in place" in out and "teacher scores are in place" in out
    assert all(f"{variant} is trained" in out for variant in VARIANTS)
    assert model.stat().st_mtime_ns == before
    assert {p: p.stat().st_mtime_ns for p in (work / "eval" / "cells").iterdir()} == cells


def test_interrupted_scoring_resumes_to_the_same_file(finished_run):
    work, args = finished_run
    scored = work / "scored" / "chat.json"
    complete = scored.read_bytes()
    lines = complete.splitlines(keepends=True)
    scored.write_bytes(b"".join(lines[:3]) + lines[3][:10])  # as if killed mid-write
    assert main(args) == 0
    assert scored.read_bytes() == complete


def test_unknown_ablation_and_setting_are_clear_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown ablation 'rewards'"):
        Pipeline(PipelineConfig(), ablate=("rewards",))
    assert main(["run", str(RECIPE), "--set", "nonsense=1"]) == 2
    assert "nonsense" in capsys.readouterr().err


def test_claim_keeps_a_folder_only_for_the_same_settings(tmp_path):
    folder = tmp_path / "stage"
    _claim(folder, {"a": 1, "b": (1, 2)})
    (folder / "out.json").write_text("kept")
    _claim(folder, {"a": 1, "b": [1, 2]})  # read back from JSON, a tuple is a list: same settings
    assert (folder / "out.json").read_text() == "kept"
    _claim(folder, {"a": 2, "b": [1, 2]})
    assert not (folder / "out.json").exists()
    assert json.loads((folder / STAGE_FILE).read_text()) == {"a": 2, "b": [1, 2]}
    unstamped = tmp_path / "older"  # outputs of unknown settings are not trusted either
    unstamped.mkdir()
    (unstamped / "out.json").write_text("old")
    _claim(unstamped, {"a": 1})
    assert not (unstamped / "out.json").exists()


def test_changed_training_settings_retrain_and_reevaluate_only_the_models(finished_run, capsys):
    """Runs last in this module: it changes the finished run in place."""
    work, args = finished_run
    scored = {p: p.stat().st_mtime_ns for p in (work / "scored").iterdir()}
    cells = {p.name: p.stat().st_mtime_ns for p in (work / "eval" / "cells").iterdir()}
    assert main([*args, "--set", "train.learning_rate=1e-4"]) == 0
    out = capsys.readouterr().out
    assert "teacher scores are in place" in out
    assert out.count("was made with other settings: starting it again") == len(VARIANTS)
    assert {p: p.stat().st_mtime_ns for p in (work / "scored").iterdir()} == scored
    after = {p.name: p.stat().st_mtime_ns for p in (work / "eval" / "cells").iterdir()}
    redone = {name for name in cells if after[name] != cells[name]}
    assert redone == {name for name in cells if any(f"__{variant}-dense" in name for variant in VARIANTS)}
    assert redone
