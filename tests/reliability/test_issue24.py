"""Issue 24: the probe's cases, one test each (each failed before the fix).

Section 1 (data loss) is covered in general by test_output_safety.py; here are its named cases.
Section 2: stale answers; section 3: silent wrong results; section 4: errors users can act on.
"""

from __future__ import annotations

import errno
import json
import os
import shutil

import numpy as np
import pytest
import yaml
from checks import CORPUS_ROWS, assert_one_line, snapshot, write_jsonl

from llm_embedder import outputs, versioned
from llm_embedder.errors import InputError
from llm_embedder.fileio import atomic_path

TRAIN_TASKS = {"qa": {"query_max_length": 24, "key_max_length": 24, "training": {"group_size": 2}}}


def _recipe(tmp_path, model, toy_dir, **settings):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    shutil.copy(toy_dir / "qa.json", data / "qa.json")
    recipe = {
        "model": str(model),
        "datasets": [{"path": str(data / "qa.json")}],
        "tasks": TRAIN_TASKS,
        "batch_size": 2,
        "max_steps": 1,
        "logging_steps": 1,
        "save_steps": 1000,
        "device": "cpu",
        "output_dir": str(tmp_path / "out"),
        **settings,
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return tmp_path / "r.yaml"


def _tool_data(root, rows=({"query": "capital of France", "pos_index": [0]},)):
    folder = root / "tool" / "toolbench"
    write_jsonl(folder / "corpus.json", CORPUS_ROWS)
    write_jsonl(folder / "test.json", list(rows))
    return root


# ---------------------------------------------------------------------------- 1. data loss: the named cases
def test_mine_teacher_guard_claims_its_output(tmp_path, run_cli):
    record = {"query": "q", "pos": ["p"], "neg": ["n"], "teacher_scores": [0, 1]}
    scored = write_jsonl(tmp_path / "scored.jsonl", [record])
    other = tmp_path / "thesis.jsonl"
    other.write_text("mine\n")
    before = snapshot(tmp_path)
    args = ("mine", "--teacher-guard", "--queries", scored, "--out")
    for extra in ((), ("--overwrite",)):
        assert_one_line(*run_cli(*args, scored, *extra), r"scored\.jsonl: the output is the queries")
    assert_one_line(*run_cli(*args, other), r"thesis\.jsonl: an existing file that `llm-embedder mine` did not write")
    assert snapshot(tmp_path) == before
    assert run_cli(*args, tmp_path / "guarded.jsonl")[0] == 0
    assert outputs.read_manifest(tmp_path / "guarded.jsonl")["command"] == "mine"


def test_train_and_eval_never_write_onto_their_own_data(tmp_path, run_cli, tiny_encoder_dir, toy_dir):
    recipe = _recipe(tmp_path, tiny_encoder_dir, toy_dir)
    dataset = tmp_path / "data" / "qa.json"
    data = _tool_data(tmp_path / "eval")
    test_file = data / "tool" / "toolbench" / "test.json"
    before = snapshot(tmp_path)
    for extra in ((), ("--overwrite",), ("--overwrite", "--restart")):
        code, err = run_cli("train", "--config", recipe, "--output-dir", dataset, *extra)
        assert_one_line(code, err, r"qa\.json: the output is the dataset 1 of the recipe")
    for extra in ((), ("--overwrite",)):
        code, err = run_cli("eval", "--data", data, "--retriever", "bm25", "--out", test_file, *extra)
        assert_one_line(code, err, r"test\.json: the output is inside the data")
    assert snapshot(tmp_path) == before


def test_search_never_writes_into_the_index_it_searches(tmp_path, run_cli, corpus_file):
    index = tmp_path / "index"
    assert run_cli("index", "build", "--method", "bm25", "--corpus", corpus_file, "--out", index)[0] == 0
    inside = versioned.current(index) / "corpus.jsonl"
    before = snapshot(index)
    code, err = run_cli("search", "--index", index, "--query", "Paris", "--out", inside, "--overwrite")
    assert_one_line(code, err, r"corpus\.jsonl: the output is inside the index")
    assert snapshot(index) == before


def test_overwrite_never_replaces_a_folder_with_a_file(tmp_path, run_cli, tiny_encoder_dir, corpus_file):
    folder = tmp_path / "mine"
    (folder / "deep").mkdir(parents=True)
    (folder / "deep" / "notes.txt").write_text("keep")
    queries = write_jsonl(tmp_path / "q.jsonl", [{"query": "hello"}])
    index = tmp_path / "index"
    assert run_cli("index", "build", "--method", "bm25", "--corpus", corpus_file, "--out", index)[0] == 0
    before = snapshot(folder)
    code, err = run_cli(
        "encode", "--input", queries, "--task", "qa", "--model", tiny_encoder_dir, "--out", folder, "--overwrite"
    )
    assert_one_line(code, err, r"mine: an existing folder, and --out names a file; a folder is never replaced")
    code, err = run_cli("search", "--index", index, "--queries", queries, "--out", folder, "--overwrite")
    assert_one_line(code, err, r"mine: an existing folder, and --out names a file")
    assert snapshot(folder) == before


def test_restarts_remove_only_what_they_made(tmp_path, run_cli, tiny_encoder_dir, toy_dir):
    # train --restart into a folder holding the user's own checkpoints/step-1
    recipe = _recipe(tmp_path, tiny_encoder_dir, toy_dir)
    out = tmp_path / "user"
    (out / "checkpoints" / "step-1").mkdir(parents=True)
    (out / "checkpoints" / "step-1" / "weights.bin").write_bytes(b"my own run")
    before = snapshot(out)
    code, err = run_cli("train", "--config", recipe, "--output-dir", out, "--overwrite", "--restart")
    assert_one_line(code, err, r"user/checkpoints: `llm-embedder train` writes checkpoints in .* did not write this")
    assert snapshot(out) == before
    # run with a work_dir holding the user's mined/notes.txt
    work = tmp_path / "work"
    (work / "mined").mkdir(parents=True)
    (work / "mined" / "notes.txt").write_text("my notes")
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(f"work_dir: {work}\n")
    before = snapshot(work)
    assert_one_line(*run_cli("run", pipeline), r"work: an existing folder that `llm-embedder run` did not write")
    assert snapshot(work) == before


def test_a_write_the_command_did_not_declare_is_refused(tmp_path):
    spec = outputs.Spec("encode", (outputs.Port("--out", "npy", outputs.FILE),))

    class Args:
        out = str(tmp_path / "declared.npy")

    outputs.declare(spec, Args())
    try:
        with atomic_path(tmp_path / "declared.npy") as tmp:
            tmp.write_text("ok")
        with pytest.raises(RuntimeError, match=r"elsewhere\.txt, which it did not declare"):
            atomic_path(tmp_path / "elsewhere.txt").__enter__()
        with pytest.raises(RuntimeError, match="did not declare"):
            outputs.claim(tmp_path / "other.npy", "encode")
    finally:
        outputs.release()
    assert not (tmp_path / "elsewhere.txt").exists()


def test_a_foreign_manifest_name_and_a_lookalike_member_are_refused(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / outputs.FOLDER_MANIFEST).write_text("my own file")
    with pytest.raises(InputError, match="not a manifest llm-embedder wrote"):
        outputs.claim(folder, "eval", is_dir=True, overwrite=True)
    (folder / outputs.FOLDER_MANIFEST).unlink()
    (folder / "cells").mkdir()
    with pytest.raises(InputError, match="writes cells in .* did not write this one"):
        outputs.claim(folder, "eval", is_dir=True, overwrite=True, members=("cells",))


# ---------------------------------------------------------------------------- 2. stale answers
def test_replaced_base_weights_are_trained_again(
    tmp_path, run_cli, capsys, tiny_encoder_dir, other_encoder_dir, toy_dir
):
    base = tmp_path / "base"
    shutil.copytree(tiny_encoder_dir, base)
    recipe = _recipe(tmp_path, base, toy_dir)
    assert run_cli("train", "--config", recipe)[0] == 0
    first = json.loads((tmp_path / "out" / "model" / "training.json").read_text())["recipe"]
    for name in ("model.safetensors", "config.json"):  # the user replaces the folder's weights
        shutil.copy(other_encoder_dir / name, base / name)
    capsys.readouterr()
    code = run_cli("train", "--config", recipe)[0]
    assert code == 0
    assert "already trained" not in capsys.readouterr().out
    second = json.loads((tmp_path / "out" / "model" / "training.json").read_text())["recipe"]
    assert outputs.changes(first, second) == [f"input model {base} changed"]


# ---------------------------------------------------------------------------- 3. silent wrong results
@pytest.mark.parametrize(("doc_id", "pattern"), [(-1, "is negative"), (-7, "is negative"), (10**23, "is too large")])
@pytest.mark.parametrize("method", ["bm25", "dense"])
def test_ids_the_indexes_cannot_hold_are_refused(tmp_path, run_cli, tiny_encoder_dir, doc_id, pattern, method):
    rows = [{"id": i, "text": r["text"]} for i, r in enumerate(CORPUS_ROWS[:4])] + [{"id": doc_id, "text": "Paris"}]
    corpus = write_jsonl(tmp_path / "c.jsonl", rows)
    args = ("index", "build", "--corpus", corpus, "--id-field", "id", "--method", method, "--out", tmp_path / "i")
    code, err = run_cli(*args, "--model", tiny_encoder_dir)
    assert_one_line(code, err, rf"c\.jsonl:5: field 'id': id {doc_id} {pattern}")
    assert not (tmp_path / "i").exists()
    from llm_embedder.retrieval.corpus import Corpus

    with pytest.raises(ValueError, match=pattern):
        Corpus(["a", "b"], [0, doc_id])


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (("search", "--index", "I", "--query", "q", "--ef-search", "0"), "--ef-search"),
        (("search", "--index", "I", "--query", "q", "--ef-search", "-3"), "--ef-search"),
        (("search", "--index", "I", "--query", "q", "--nprobe", "0"), "--nprobe"),
        (("search", "--index", "I", "--query", "q", "-k", "0"), "-k/--k"),
        (("index", "build", "--corpus", "C", "--out", "O", "--ef-search", "0"), "--ef-search"),
        (("index", "build", "--corpus", "C", "--out", "O", "--shard-size", "-1"), "--shard-size"),
        (("score", "--input", "C", "--output", "O", "--max-key-tokens", "-3"), "--max-key-tokens"),
        (("score", "--input", "C", "--output", "O", "--token-budget", "0"), "--token-budget"),
        (("encode", "--input", "C", "--out", "O", "--task", "qa", "--batch-size", "0"), "--batch-size"),
        (("mine", "--queries", "C", "--out", "O", "--count", "0"), "--count"),
        (("mine", "--queries", "C", "--out", "O", "--guard-margin", "nan"), "--guard-margin"),
        (("mine", "--queries", "C", "--out", "O", "--seed", "-1"), "--seed"),
        (("eval", "--limit", "x"), "--limit"),
        (("merge", "--model", "a", "--model", "b", "--out", "O", "--tasks-from", "0"), "--tasks-from"),
        (("demo", "-k", "0"), "-k/--k"),
    ],
)
def test_numeric_options_are_checked_in_one_place_with_their_name(run_cli, argv, option, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written, and surely not into the repository
    code, err = run_cli(*argv)
    assert_one_line(code, err, rf"argument {option}: expected (at least|an integer|a finite number)")


def test_search_parameters_from_the_python_api_or_an_index_are_checked(tmp_path, tiny_embedder):
    from llm_embedder.retrieval.dense import DenseIndex
    from llm_embedder.rewards.score import ScoreSettings

    index = DenseIndex(8, "HNSW8")
    for value in (0, -1, 1.5):
        with pytest.raises(ValueError, match=r"--ef-search: expected a positive integer"):
            index.set_search_params(efSearch=value)
    with pytest.raises(ValueError, match=r"--max-key-tokens: expected a positive integer, got -3"):
        ScoreSettings(max_key_tokens=-3)


def test_eval_rows_whose_paths_flatten_alike_keep_their_own_results(
    tmp_path, run_cli, tiny_encoder_dir, other_encoder_dir, monkeypatch
):
    (tmp_path / "r" / "mx").mkdir(parents=True)
    shutil.copytree(tiny_encoder_dir, tmp_path / "r" / "mx" / "a")
    shutil.copytree(other_encoder_dir, tmp_path / "r" / "mx-a")
    data = _tool_data(tmp_path / "d", [{"query": r["text"], "pos_index": [i]} for i, r in enumerate(CORPUS_ROWS)])
    out = tmp_path / "o"
    specs = ["dense:r/mx/a", "dense:r/mx-a"]
    monkeypatch.chdir(tmp_path)
    args = ("eval", "--data", data, "--tasks", "tool", "--retriever", specs[0], "--retriever", specs[1])
    code, err = run_cli(*args, "--out", out)
    assert code == 0, err
    cells = [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))]
    assert sorted(c["retriever"] for c in cells) == sorted(specs)  # two files, each its own row
    alone = tmp_path / "alone"
    assert run_cli("eval", "--data", data, "--tasks", "tool", "--retriever", specs[0], "--out", alone)[0] == 0
    board = json.loads((out / "leaderboard.json").read_text())
    single = json.loads((alone / "leaderboard.json").read_text())
    assert json.dumps(board["rows"][specs[0]], sort_keys=True) == json.dumps(single["rows"][specs[0]], sort_keys=True)


def test_a_damaged_shard_is_encoded_again(tmp_path, run_cli, tiny_encoder_dir, monkeypatch):
    from llm_embedder.retrieval import build

    corpus = write_jsonl(tmp_path / "c.jsonl", CORPUS_ROWS)
    args = ("index", "build", "--corpus", corpus, "--model", tiny_encoder_dir, "--device", "cpu", "--backend", "torch")
    args += ("--shard-size", "4")
    assert run_cli(*args, "--out", tmp_path / "clean")[0] == 0
    real = build._assemble

    def killed(*a, **k):
        raise RuntimeError("killed before assembly")

    monkeypatch.setattr(build, "_assemble", killed)
    assert run_cli(*args, "--out", tmp_path / "i")[0] == 2
    work = build.work_folder(tmp_path / "i")
    vectors = work / "000000.vectors.npy"
    wrong = np.zeros_like(np.load(vectors))
    with vectors.open("wb") as handle:  # a wrong vectors file of the right shape
        np.save(handle, wrong)
    monkeypatch.setattr(build, "_assemble", real)
    assert run_cli(*args, "--out", tmp_path / "i")[0] == 0
    clean, rebuilt = (versioned.current(tmp_path / n) / "faiss.index" for n in ("clean", "i"))
    assert clean.read_bytes() == rebuilt.read_bytes()


def test_a_damaged_line_in_a_partial_is_scored_again(tmp_path, run_cli, tiny_lm_dir, monkeypatch):
    from llm_embedder.models.lm import CausalLM

    records = [
        {"query": f"capital of country {i}?", "task": "qa", "pos": ["Paris."], "neg": ["Cats."], "answers": ["Paris"]}
        for i in range(3)
    ]
    src = write_jsonl(tmp_path / "in.jsonl", records)
    args = ("score", "--lm", tiny_lm_dir, "--device", "cpu", "--input", src, "--chunk-records", "1", "--output")
    assert run_cli(*args, tmp_path / "clean.jsonl")[0] == 0
    real, calls = CausalLM.span_log_probs, []

    def dies_on_the_third_chunk(self, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(CausalLM, "span_log_probs", dies_on_the_third_chunk)
    out = tmp_path / "out.jsonl"
    assert run_cli(*args, out)[0] == 130
    partial = tmp_path / ".out.jsonl.partial"
    lines = partial.read_text().splitlines(keepends=True)
    assert len(lines) == 2
    partial.write_text('{"query": "garbage", "teacher_scores": [9, 9]}\n' + lines[1])  # the same line count
    monkeypatch.setattr(CausalLM, "span_log_probs", real)
    assert run_cli(*args, out)[0] == 0
    assert out.read_bytes() == (tmp_path / "clean.jsonl").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == [".out.jsonl.manifest.json"]


# ---------------------------------------------------------------------------- 4. errors users can act on
def test_an_emptied_bm25_file_names_the_file(tmp_path, run_cli, corpus_file):
    index = tmp_path / "i"
    assert run_cli("index", "build", "--method", "bm25", "--corpus", corpus_file, "--out", index)[0] == 0
    data = sorted((versioned.current(index) / "bm25").glob("*.npy"))[0]
    data.write_bytes(b"")
    code, err = run_cli("search", "--index", index, "--query", "Paris")
    assert_one_line(code, err, r"bm25.*: broken BM25 index .*rebuild it with `llm-embedder index build`")


def test_a_lone_surrogate_names_file_line_and_field(tmp_path, run_cli, tiny_encoder_dir):
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"query": "fine"}\n{"query": "bad \\ud800 text"}\n', encoding="utf-8")
    code, err = run_cli("encode", "--input", queries, "--out", tmp_path / "o.npy", "--task", "qa")
    assert_one_line(code, err, r"q\.jsonl:2: field 'query': holds a lone surrogate escape")


def test_a_truncated_checkpoint_names_itself_and_restart(tmp_path, run_cli, tiny_encoder_dir, toy_dir):
    recipe = _recipe(tmp_path, tiny_encoder_dir, toy_dir, max_steps=2, save_steps=1)
    assert run_cli("train", "--config", recipe)[0] == 0
    shutil.rmtree(tmp_path / "out" / "model")  # as if killed after the checkpoint
    checkpoint = tmp_path / "out" / "checkpoints" / "step-000001"
    weights = max((p for p in checkpoint.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    weights.write_bytes(weights.read_bytes()[:100])
    code, err = run_cli("train", "--config", recipe)
    assert_one_line(code, err, r"step-000001: cannot resume from this checkpoint .*pass --restart")
    assert run_cli("train", "--config", recipe, "--restart")[0] == 0
    assert (tmp_path / "out" / "model" / "training.json").is_file()


def test_a_full_disk_names_the_file_and_leaves_no_manifest(tmp_path, run_cli, tiny_encoder_dir, monkeypatch):
    queries = write_jsonl(tmp_path / "q.jsonl", [{"query": "hello"}])
    out = tmp_path / "v.npy"

    def full(handle, array, *a, **k):
        raise OSError("153600 requested and 15328 written")

    monkeypatch.setattr(np, "save", full)
    code, err = run_cli("encode", "--input", queries, "--out", out, "--task", "qa", "--model", tiny_encoder_dir)
    assert_one_line(code, err, r"v\.npy: no space left on the device, nothing was written")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.jsonl"]


def test_system_errors_are_told_in_words_with_the_file():
    from llm_embedder.cli import _message

    text = _message(OSError(errno.EACCES, os.strerror(errno.EACCES), "/data/x"))
    assert text.startswith("/data/x: permission denied;") and "Errno" not in text
    assert _message(OSError(errno.ENOSPC, "/data/y: no space left")) == "/data/y: no space left"


def test_an_index_built_with_torch_is_searched_with_torch(tmp_path, run_cli, corpus_file, tiny_encoder_dir):
    pytest.importorskip("onnxruntime")
    index = tmp_path / "i"
    build = ("index", "build", "--corpus", corpus_file, "--model", tiny_encoder_dir, "--device", "cpu")
    assert run_cli(*build, "--backend", "torch", "--out", index)[0] == 0
    assert run_cli("search", "--index", index, "--query", "Paris", "--device", "cpu")[0] == 0  # auto: as built
    code, err = run_cli("search", "--index", index, "--query", "Paris", "--device", "cpu", "--backend", "onnx")
    assert_one_line(code, err, r"built with --backend torch --dtype float32 .*search with --backend torch")


def test_damaged_files_of_ours_are_named_or_made_again(tmp_path, run_cli, corpus_file, tiny_encoder_dir):
    index = tmp_path / "i"
    build = ("index", "build", "--corpus", corpus_file, "--model", tiny_encoder_dir, "--device", "cpu")
    assert run_cli(*build, "--backend", "torch", "--out", index)[0] == 0
    (versioned.current(index) / "faiss.index").write_bytes(b"garbage")
    code, err = run_cli("search", "--index", index, "--query", "Paris", "--device", "cpu")
    assert_one_line(code, err, r"faiss\.index: not a readable faiss index .*rebuild it")
    work = tmp_path / ".j.building"
    work.mkdir()
    (work / "build.json").write_text("{oops")
    code, err = run_cli(*build, "--backend", "torch", "--out", tmp_path / "j")
    assert_one_line(code, err, r"build\.json:1: malformed JSON")
    # a damaged cached embedding in an evaluation folder is encoded again, never an error
    data = _tool_data(tmp_path / "d")
    args = ("eval", "--data", data, "--tasks", "tool", "--retriever", f"dense:{tiny_encoder_dir}", "--out")
    assert run_cli(*args, tmp_path / "o", "--device", "cpu")[0] == 0
    for cached in (tmp_path / "o" / "cache").glob("*.npy"):
        cached.write_bytes(b"garbage")
    for cell in (tmp_path / "o" / "cells").glob("*.json"):
        cell.unlink()
    assert run_cli(*args, tmp_path / "o", "--device", "cpu")[0] == 0
