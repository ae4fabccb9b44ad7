"""The main job end to end on the quick demo data, with tiny random models so it runs in CI."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from llm_embedder.cli import main
from llm_embedder.data.records import load_train_file, make_group
from llm_embedder.errors import InputError
from llm_embedder.fingerprint import file_digest
from llm_embedder.freshness import STAGE_FILE
from llm_embedder.outputs import FOLDER_MANIFEST
from llm_embedder.pipeline import ABLATIONS, Pipeline, PipelineConfig
from llm_embedder.selection import worst_check
from llm_embedder.tasks import DEFAULT_TASKS

RECIPE = Path(__file__).parents[1] / "recipes" / "demo.yaml"
VARIANTS = ("fine-tuned", "no-reward", "no-stable-distill", "no-instructions", "no-homogeneous")
ROWS = (*VARIANTS, "merged")


def _overrides(work: Path, encoder: Path, lm: Path) -> list[str]:
    return [
        f"work_dir={work}",
        f"encoder={encoder}",
        f"lm={lm}",
        "score.max_candidates=2",
        "train.max_steps=2",
        "train.batch_size=2",
        "train.save_steps=1",
        # pinned, whatever the recipe says: with instructions on, the no-instructions ablation is a model of its own
        "train.techniques.instructions=true",
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


@pytest.mark.slow  # shares the end-to-end run (about 2 minutes idle)
def test_quick_pipeline_writes_every_stage_and_a_leaderboard(finished_run):
    work, _ = finished_run
    for task in ("qa", "icl", "chat", "lrlm"):
        scored = [json.loads(line) for line in (work / "scored" / f"{task}.json").read_text().splitlines()]
        assert scored and all(len(r["teacher_scores"]) >= 2 for r in scored)
    for task in ("tool", "convsearch"):
        assert all(json.loads(line)["neg"] for line in (work / "mined" / f"{task}.json").read_text().splitlines())
    for variant in VARIANTS:
        assert (work / "models" / variant / "model" / "llm_embedder.json").is_file()
        assert json.loads((work / "models" / variant / "diagnostics.json").read_text())[variant]
    merge = json.loads((work / "merged" / "model" / "merge.json").read_text())
    assert [m["weight"] for m in merge["models"]] == [0.75, 0.25]  # the recipe's weight on the fine-tuned model
    board = json.loads((work / "eval" / "leaderboard.json").read_text())
    trained = [f"{v}=dense:{work / 'models' / v / 'model'}" for v in VARIANTS]
    merged = f"merged=dense:{work / 'merged' / 'model'}"
    base = f"base=dense:{board_encoder(work)}"
    assert list(board["rows"]) == ["none", "bm25", base, *trained, merged]
    evaluators = {c["evaluator"] for c in board["columns"]}
    assert evaluators == {"popqa", "qa-retrieval", "icl", "msc", "lrlm", "tool", "convsearch"}
    markdown = (work / "eval" / "leaderboard.md").read_text()
    assert all(f"| {row} " in markdown for row in ROWS)
    assert (work / "eval" / "leaderboard.png").stat().st_size > 1000
    ood = json.loads((work / "eval-ood" / "leaderboard.json").read_text())
    assert list(ood["rows"]) == [base, *trained, merged]
    assert {c["evaluator"] for c in ood["columns"]} == {"qa-retrieval", "tool", "convsearch", "msc"}


@pytest.mark.slow  # shares the end-to-end run (about 2 minutes idle)
@pytest.mark.parametrize("group_size", [2, 3, 8])
def test_no_training_group_from_the_scored_data_repeats_a_key(finished_run, group_size):
    work, _ = finished_run
    # what training reads: the scored file of a distilled task, else the mined one
    scored, mined = (
        {p.stem: p for p in (work / stage).glob("[!.]*.json") if p.name not in (STAGE_FILE, FOLDER_MANIFEST)}
        for stage in ("scored", "mined")
    )
    files = list({**mined, **scored}.values())
    assert {p.stem for p in files} >= {"qa", "icl", "chat", "lrlm", "tool", "convsearch"}
    for path in files:
        data = load_train_file(path, DEFAULT_TASKS)
        settings = dataclasses.replace(data.settings, group_size=group_size)
        for row, r in enumerate(data.records):
            for seed in range(5):
                g = make_group(r, settings, np.random.default_rng((seed, row)))
                assert len(set(g.keys)) == len(g.keys), f"{path.name} line {r.line}: {g.keys}"
                # and the group is as full as the record's distinct candidates allow
                negatives = set(r.candidates[r.num_positives :]) - {g.keys[0]}
                assert len(g.keys) == min(group_size, 1 + len(negatives))


def board_encoder(work: Path) -> str:
    config = json.loads((work / "models" / "fine-tuned" / "model" / "training.json").read_text())
    return config["config"]["model"]


@pytest.mark.slow  # shares the end-to-end run (about 2 minutes idle)
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


@pytest.mark.slow  # shares the end-to-end run (about 2 minutes idle)
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


@pytest.mark.slow  # shares the end-to-end run (about 2 minutes idle)
def test_select_scores_variants_and_merges_on_dev_and_ood_only(finished_run, capsys):
    """Selection reads dev, ood-dev and the recipe's extra checks; the report's out-of-domain check (``run``)
    reads ood-test."""
    work, args = finished_run
    natural = work.parent / "natural-check"  # an extra check folder (eval layout): here a copy of dev's tools
    shutil.copytree(work / "data" / "dev" / "tool", natural / "tool", dirs_exist_ok=True)
    select = [
        "--set",
        'select={"variants": [{"name": "slow", "learning_rate": 1e-6}], "merge_weights": [0.5],'
        f' "dev_evaluators": ["tool", "msc"], "ood_evaluators": ["tool"], "check": ["{natural}"]}}',
    ]
    assert main([*args, *select, "--select"]) == 0
    out = capsys.readouterr().out
    result = json.loads((work / "select" / "selection.json").read_text())
    assert set(result["candidates"]) == {"slow", "slow+base@0.5"}
    assert result["chosen"] in result["candidates"] and f"chosen: {result['chosen']}" in out
    dev = json.loads((work / "select" / "eval-dev" / "leaderboard.json").read_text())
    assert {c["evaluator"] for c in dev["columns"]} == {"tool", "msc"}
    ood = json.loads((work / "select" / "eval-ood" / "leaderboard.json").read_text())
    assert {c["evaluator"] for c in ood["columns"]} == {"tool"}
    check = json.loads((work / "select" / "eval-check-1" / "leaderboard.json").read_text())
    assert {c["evaluator"] for c in check["columns"]} == {"tool"}  # every evaluator the folder has data for
    assert result["checks"] == {"ood": str(work / "data" / "ood-dev"), "check-1": str(natural)}
    for name, candidate in result["candidates"].items():  # the rule's floor reads the worse of the two checks
        scores = result["scores"][name]
        assert set(scores) == {"dev", "ood", "check-1"}
        assert candidate == {"dev": scores["dev"], "ood": worst_check(scores)}  # worst_check: tests/test_selection.py
    # each grid's stage records the digest of the folder it evaluated
    read_by = {
        grid: json.loads((work / grid / STAGE_FILE).read_text())["data"] for grid in ("select/eval-ood", "eval-ood")
    }
    assert read_by == {
        "select/eval-ood": file_digest(work / "data" / "ood-dev"),
        "eval-ood": file_digest(work / "data" / "ood-test"),
    }
    assert file_digest(work / "data" / "ood-dev") != file_digest(work / "data" / "ood-test")
    # the relative scores are the dev numbers divided by base's (tool: higher is better)
    rows = dev["rows"]
    base = next(v for k, v in rows.items() if k.startswith("base="))
    slow = next(v for k, v in rows.items() if k.startswith("slow="))
    value = [x if not isinstance(x, dict) else x["value"] for x in (slow["tool"], base["tool"])]
    if value[1]:
        relative = next(v for k, v in result["relative"]["dev"].items() if k.startswith("slow="))
        assert relative["tool"] == pytest.approx(value[0] / value[1])


def test_demo_full_is_the_demo_recipe_with_larger_tests():
    """``extends`` + ``set``: demo-full.yaml holds only what differs from demo.yaml."""
    demo = dataclasses.asdict(PipelineConfig.from_yaml(RECIPE))
    full = dataclasses.asdict(PipelineConfig.from_yaml(RECIPE.with_name("demo-full.yaml")))
    assert {k for k in demo if demo[k] != full[k]} == {"work_dir", "data", "merge", "eval", "quick"}
    assert full["data"] == {**demo["data"], "size": "full"} and full["merge"] == {}
    assert full["eval"]["options"]["popqa"] == {"limit": None}
    lrlm = demo["eval"]["options"]["lrlm"]
    assert full["eval"]["options"]["lrlm"] == {**lrlm, "limit": None}
    assert {k: v for k, v in full["eval"].items() if k != "options"} == {
        k: v for k, v in demo["eval"].items() if k != "options"
    }
    assert full["quick"] == {**demo["quick"], "work_dir": "runs/demo-full-quick"}


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("extends: missing.yaml\n", "extends", "is not a file"),
        ("extends: recipe.yaml\n", "extends", "a cycle"),
        ("set: {data.size: full}\n", "set", "extends none"),
        ("extends: base.yaml\nset: [data.size]\n", "set", "a mapping"),
    ],
)
def test_a_bad_extends_names_the_file_and_field(tmp_path, text, field, message):
    (tmp_path / "base.yaml").write_text("work_dir: w\nlm: smollm2-135m\n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    with pytest.raises(InputError, match=message) as caught:
        PipelineConfig.from_yaml(recipe)
    assert (caught.value.path, caught.value.field) == (str(recipe), field)


def test_extends_replaces_top_level_settings_and_sets_dotted_ones(tmp_path):
    (tmp_path / "base.yaml").write_text("work_dir: w\ndata: {size: small, seed: 3}\nmerge: {weight: 0.5}\n")
    (tmp_path / "mid.yaml").write_text("extends: base.yaml\nmerge: {}\nset: {data.size: full}\n")
    (tmp_path / "top.yaml").write_text("extends: mid.yaml\nset: {data.seed: 4}\n")
    config = PipelineConfig.from_yaml(tmp_path / "top.yaml", overrides=["work_dir=v"])
    assert (config.work_dir, config.data, config.merge) == ("v", {"size": "full", "seed": 4}, {})


def test_choose_applies_the_recipes_dev_tie():
    scores = {"instr": {"dev": 1.12, "ood": 1.01}, "plain": {"dev": 1.10, "ood": 1.09}}
    assert Pipeline(PipelineConfig()).choose(scores)["chosen"] == "plain"  # within the default tie: safer ood
    assert Pipeline(PipelineConfig(select={"dev_tie": 0.0})).choose(scores)["chosen"] == "instr"  # dev alone


@pytest.mark.slow  # shares the end-to-end run (about 2 minutes idle)
def test_changed_training_settings_retrain_and_reevaluate_only_the_models(finished_run, capsys):
    """Runs last in this module: it changes the finished run in place."""
    work, args = finished_run
    scored = {p: p.stat().st_mtime_ns for p in (work / "scored").iterdir()}
    cells = {p.name: p.stat().st_mtime_ns for p in (work / "eval" / "cells").iterdir()}
    assert main([*args, "--set", "train.learning_rate=1e-4"]) == 0
    out = capsys.readouterr().out
    assert "teacher scores are in place" in out
    # every trained model, and the merge of the fine-tuned one
    assert out.count("was made with other settings: starting it again") == len(ROWS)
    assert {p: p.stat().st_mtime_ns for p in (work / "scored").iterdir()} == scored
    after = {p.name: p.stat().st_mtime_ns for p in (work / "eval" / "cells").iterdir()}
    redone = {name for name in cells if after[name] != cells[name]}
    assert redone == {name for name in cells if any(f"__{row}-dense" in name for row in ROWS)}
    assert redone


@pytest.mark.slow  # shares the end-to-end run (about 2 minutes idle)
def test_mining_applies_the_encoder_guard_of_the_recipe(finished_run, tiny_encoder_dir, tmp_path):
    work, _ = finished_run
    mined = {}
    for margin in (None, 2.0, -2.0):
        mine = {"method": "bm25", "start": 0, "end": 30, "count": 7}
        if margin is not None:
            mine["guard_margin"] = margin
        config = PipelineConfig(work_dir=str(tmp_path / str(margin)), encoder=str(tiny_encoder_dir), mine=mine)
        files = Pipeline(config, show_progress=False).mine(work / "data")
        mined[margin] = [json.loads(line) for line in files["tool"].read_text().splitlines()]
    # No cosine lies 2 above the positive's: nothing dropped; every one lies above it minus 2: all dropped.
    assert mined[2.0] == mined[None] and all(r["neg"] for r in mined[None])
    assert all(r["neg"] == [] for r in mined[-2.0])
