"""Freshness (:mod:`llm_embedder.freshness`) and progress lines (:mod:`llm_embedder.progress`): an output
is reused only while fresh, and a stale one loses only what llm-embedder made."""

from __future__ import annotations

import json

import pytest

from llm_embedder.errors import InputError
from llm_embedder.fingerprint import files_digest
from llm_embedder.freshness import STAGE_FILE, Stage, finish_partial, resume_partial
from llm_embedder.outputs import claim, manifest_path, read_manifest, record_made
from llm_embedder.progress import Progress


def test_a_stage_folder_is_kept_only_for_the_same_settings(tmp_path):
    folder = tmp_path / "stage"
    Stage.folder(folder, {"a": 1, "b": (1, 2)}).begin()
    record_made(folder, ["out.json"])  # what Stage.made_from does before a stage writes a file
    (folder / "out.json").write_text("kept")
    (folder / ".out.json.inputs").write_text("digest")
    (folder / "notes.txt").write_text("the user's")  # issue 24: never the pipeline's to remove
    Stage.folder(folder, {"a": 1, "b": [1, 2]}).begin()  # read back from JSON, a tuple is a list: same settings
    assert (folder / "out.json").read_text() == "kept"
    Stage.folder(folder, {"a": 2, "b": [1, 2]}).begin()
    assert not (folder / "out.json").exists() and not (folder / ".out.json.inputs").exists()
    assert (folder / "notes.txt").read_text() == "the user's"
    assert json.loads((folder / STAGE_FILE).read_text()) == {"a": 2, "b": [1, 2]}
    unstamped = tmp_path / "older"  # files the pipeline did not list as its own stay
    unstamped.mkdir()
    (unstamped / "out.json").write_text("old")
    Stage.folder(unstamped, {"a": 1}).begin()
    assert (unstamped / "out.json").read_text() == "old"
    legacy = tmp_path / "legacy"  # a stage folder from before the list: the files stages name go
    (legacy / "train").mkdir(parents=True)
    (legacy / STAGE_FILE).write_text("{}")
    (legacy / "out.json").write_text("old")
    (legacy / "qa.json").write_text("stale")
    (legacy / ".qa.json.inputs").write_text("digest")
    (legacy / "train" / "tool.json").write_text("stale")
    Stage.folder(legacy, {"a": 1}).begin()
    assert sorted(p.relative_to(legacy).as_posix() for p in legacy.rglob("*")) == [
        "llm-embedder-output.json",
        "out.json",
        STAGE_FILE,
        "train",
    ]


def test_a_stage_started_again_removes_only_what_it_made(tmp_path):
    """Issue 24: a trainer's folder in a pipeline keeps a user's own checkpoint on a restart."""
    folder = tmp_path / "models" / "fine-tuned"
    Stage.folder(folder, {"lr": 1}, members=("checkpoints", "model")).begin()
    (folder / "checkpoints" / "step-000002").mkdir(parents=True)
    (folder / "model").mkdir()
    (folder / "mine").mkdir()
    (folder / "mine" / "step-1.bin").write_text("the user's")
    Stage.folder(folder, {"lr": 2}, members=("checkpoints", "model")).begin()
    assert sorted(p.name for p in folder.iterdir()) == ["llm-embedder-output.json", "mine", STAGE_FILE]


def test_a_file_made_from_inputs_is_made_again_when_their_bytes_change(tmp_path):
    source = tmp_path / "data.json"
    source.write_text("one\n")
    target = tmp_path / "stage" / "out.json"
    assert Stage.made_from(target, [source]).begin() is False  # nothing yet: stamped before the work
    stamp = tmp_path / "stage" / ".out.json.inputs"
    assert stamp.read_text() == files_digest([source])  # the digest itself, as earlier versions wrote it
    assert read_manifest(tmp_path / "stage", True)["made"] == ["out.json"]
    target.write_text("made from one")
    assert Stage.made_from(target, [source]).begin() is True and target.read_text() == "made from one"
    source.write_text("two\n")  # a rebuilt dataset under the same settings
    assert Stage.made_from(target, [source]).begin() is False
    assert not target.exists() and stamp.read_text() == files_digest([source])


def test_a_stage_made_whole_is_stamped_after_its_work_and_unstamped_when_stale(tmp_path):
    out = tmp_path / "data"
    stamp = tmp_path / ".data-stage.json"
    stage = Stage(stamp, {"seed": 1, "sizes": (1, 2)}, product=out / "manifest.json")
    assert stage.begin(resumable=False) is False and not stamp.exists()  # not stamped before the work
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    stage.seal()
    assert json.loads(stamp.read_text()) == {"seed": 1, "sizes": [1, 2]}
    assert Stage(stamp, {"seed": 1, "sizes": [1, 2]}, product=out / "manifest.json").fresh()
    # another key: the old stamp goes before the work, so a build killed halfway is never taken for the old one
    assert Stage(stamp, {"seed": 2}, product=out / "manifest.json").begin(resumable=False) is False
    assert not stamp.exists() and (out / "manifest.json").exists()  # the builder replaces the folder itself
    stamp.write_text("{not json")  # a damaged stamp is stale, not an error
    assert not Stage(stamp, {"seed": 1}).fresh()
    stamp.write_text(json.dumps({"seed": 1}))
    (out / "manifest.json").unlink()  # the work's last file is missing: not finished
    assert not Stage(stamp, {"seed": 1}, product=out / "manifest.json").fresh()
    assert Stage(stamp, {"seed": 1}).fresh()


def test_progress_numbers_come_from_the_stage_list(capsys):
    progress = Progress(("data", "mine", "select"))
    progress.ready("data", "in place")
    progress.start("select", "two models")
    progress.note("dev")
    progress.done("; more")
    progress.ready("train", "on its own")  # a stage outside the list: no number
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["[1/3] data: in place", "", "[3/3] select: two models"]
    assert lines[3] == "      dev" and lines[4].startswith("      done in ") and lines[4].endswith(" s; more")
    assert lines[5] == "train: on its own"


def test_a_record_carries_its_own_key(tmp_path):
    """An evaluation cell, a checkpoint's state: the key is a field of the output itself."""
    cell = tmp_path / "cells" / "qa__bm25.json"
    stage = Stage.record(cell, "k1")
    assert not stage.fresh() and stage.changes() == ["it records nothing of what it was made from"]
    stage.seal({"evaluator": "qa", "metrics": {"ndcg": 0.5}})
    assert json.loads(cell.read_text()) == {"evaluator": "qa", "metrics": {"ndcg": 0.5}, "key": "k1"}
    assert Stage.record(cell, "k1").fresh() and Stage.record(cell, "k1").changes() == []
    assert not Stage.record(cell, "k2").fresh()
    assert Stage.record(cell, "k2").changes() == ["made from other inputs"]
    cell.write_text("[1, 2]")  # not an object: no key, stale
    assert Stage.record(cell, "k1").recorded() is None and not Stage.record(cell, "k1").fresh()


def test_changes_name_each_input_and_setting_that_differs(tmp_path):
    state = tmp_path / "trainer_state.json"
    old = {"inputs": {"data": "aa", "model": "mm"}, "settings": {"lr": 1e-5, "steps": 10}}
    state.write_text(json.dumps({"step": 3, "recipe": old}))
    new = {"inputs": {"data": "bb", "model": "mm"}, "settings": {"lr": 1e-5, "steps": 20}, "extra": 1}
    assert Stage.record(state, new, field="recipe").changes() == [
        "input data changed",
        "steps: 10 -> 20",
        "extra: null -> 1",
    ]
    assert Stage.record(state, old, field="recipe").fresh()


def test_a_partial_resumes_only_under_its_own_manifest(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("{}\n")
    target, partial = tmp_path / "out.jsonl", tmp_path / ".out.jsonl.partial"

    def output(lr):
        return claim(target, "score", inputs={"input": source}, settings={"lr": lr})

    assert resume_partial(output(1), partial, restart=False) == "fresh"
    assert read_manifest(partial)["settings"] == {"lr": 1}
    partial.write_text("half\n")
    assert resume_partial(output(1), partial, restart=False) == "resume"
    with pytest.raises(InputError, match=r"lr: 1 -> 2.*--restart"):
        resume_partial(output(2), partial, restart=False)
    source.write_text("{}\n{}\n")
    with pytest.raises(InputError, match="input input changed"):
        resume_partial(output(1), partial, restart=False)
    assert resume_partial(output(1), partial, restart=True) == "fresh" and not partial.exists()
    partial.write_text("whole\n")
    finish_partial(output(1), partial)
    assert target.read_text() == "whole\n" and not partial.exists() and not manifest_path(partial).exists()
    assert resume_partial(output(1), partial, restart=False) == "done"
