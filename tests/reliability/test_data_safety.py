"""Section 1 and 5 of issue 13: no command destroys what it did not write; partial work stays hidden
until complete; an index is replaced atomically.  Every case checks the exit code, the one-line
message and that inputs and earlier outputs are byte-for-byte unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from checks import CORPUS_ROWS, assert_one_line, snapshot, write_jsonl

from llm_embedder import versioned
from llm_embedder.fileio import make_token, temporary_name
from llm_embedder.outputs import claim, manifest_path, read_manifest
from llm_embedder.retrieval.searcher import Searcher


# ---------------------------------------------------------------------------- index build
def test_index_into_a_folder_holding_its_corpus_is_refused(tmp_path, run_cli):
    folder = tmp_path / "data"
    corpus = write_jsonl(folder / "c.jsonl", CORPUS_ROWS)
    (folder / "notes.txt").write_text("mine")
    before = snapshot(folder)
    for extra in ((), ("--overwrite",)):
        code, err = run_cli("index", "build", "--method", "bm25", "--corpus", corpus, "--out", folder, *extra)
        assert_one_line(code, err, r"data: the output holds the corpus .*c\.jsonl")
        assert snapshot(folder) == before


def test_index_into_an_unrelated_folder_needs_overwrite_and_keeps_its_files(tmp_path, corpus_file, run_cli):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"\xff\xd8 not really")
    before = snapshot(folder, corpus_file)
    code, err = run_cli("index", "build", "--method", "bm25", "--corpus", corpus_file, "--out", folder)
    assert_one_line(code, err, r"photos: an existing folder that `llm-embedder index build` did not write.*--overwrite")
    assert snapshot(folder, corpus_file) == before
    code, err = run_cli("index", "build", "--method", "bm25", "--corpus", corpus_file, "--out", folder, "--overwrite")
    assert code == 0, err
    assert (folder / "a.jpg").read_bytes() == b"\xff\xd8 not really"  # added to, not emptied
    assert Searcher.load(folder).search(["capital of France"], k=1)[0][0].id == 0


@pytest.mark.parametrize("target", ["corpus", "other"])
def test_index_onto_a_file_is_refused(tmp_path, corpus_file, run_cli, target):
    out = corpus_file if target == "corpus" else tmp_path / "report.txt"
    out.write_text("keep me") if target == "other" else None
    before = snapshot(tmp_path)
    code, err = run_cli("index", "build", "--method", "bm25", "--corpus", corpus_file, "--out", out)
    pattern = r"the output is the corpus" if target == "corpus" else r"an existing file, and --out names a folder"
    assert_one_line(code, err, pattern)
    code, err = run_cli("index", "build", "--method", "bm25", "--corpus", corpus_file, "--out", out, "--overwrite")
    assert_one_line(code, err, pattern)  # a file is never replaced by a folder
    assert snapshot(tmp_path) == before


def test_rebuild_replaces_its_own_index_and_leaves_no_leftovers(tmp_path, corpus_file, run_cli):
    out = tmp_path / "index"
    assert run_cli("index", "build", "--method", "bm25", "--corpus", corpus_file, "--out", out)[0] == 0
    first = versioned.current(out)
    # leftovers of a run that died mid-save (a pid that no longer exists)
    dead = _dead_pid()
    half = out / f".v-{make_token('version', dead)}.tmp"
    half.mkdir()
    (half / "corpus.jsonl").write_text("half")
    (out / f"v-{make_token('version', dead)}").mkdir()
    (out / f".CURRENT-{make_token('version', dead)}.tmp").write_text("v-x")
    # and a user's files that merely look like them: kept
    lookalikes = [f"v-{dead}-beef", f".v-{dead}-abcd.tmp", f".CURRENT-{dead}-0123456789abcdef.tmp"]
    for name in lookalikes:
        (out / name).write_text("mine")
    assert run_cli("index", "build", "--method", "bm25", "--corpus", corpus_file, "--out", out)[0] == 0
    second = versioned.current(out)
    assert second != first and not first.exists()
    expected = ["CURRENT", second.name, "llm-embedder-output.json", *lookalikes]
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)


@pytest.mark.parametrize("left", ["version", "temporary"])
def test_a_first_build_killed_before_its_pointer_is_built_again(tmp_path, corpus_file, run_cli, left):
    """Killed after the version folder was made but before CURRENT and the manifest were written, a
    first build left only its own leftovers: the same command builds again (a kill trial found it)."""
    out = tmp_path / "index"
    out.mkdir()
    token = make_token("version", _dead_pid())
    (out / (f"v-{token}" if left == "version" else f".v-{token}.tmp")).mkdir()
    assert run_cli("index", "build", "--method", "bm25", "--corpus", corpus_file, "--out", out)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["CURRENT", "llm-embedder-output.json", versioned.current(out).name]
    # a folder with anything else in it is still refused
    other = tmp_path / "other"
    other.mkdir()
    (other / f"v-{token}").mkdir()
    (other / "notes.txt").write_text("mine")
    code, err = run_cli("index", "build", "--method", "bm25", "--corpus", corpus_file, "--out", other)
    assert_one_line(code, err, "an existing folder that `llm-embedder index build` did not write")
    assert (other / "notes.txt").read_text() == "mine"


def test_a_kill_between_version_and_pointer_keeps_the_old_index(tmp_path, corpus_file):
    out = tmp_path / "index"
    from llm_embedder.retrieval.corpus import Corpus

    corpus = Corpus.from_jsonl(corpus_file)
    Searcher.build(corpus, "bm25").save(out)
    before = snapshot(out)
    # the new version was renamed into place, then the process died before the pointer moved
    dead = _dead_pid()
    version = out / f"v-{make_token('version', dead)}"
    version.mkdir()
    assert Searcher.load(out).search(["Seine"], k=1)[0][0].id == 1
    Searcher.build(corpus, "bm25").save(out)  # the next save removes the dead run's version
    assert not version.exists()
    assert set(snapshot(out)) != set(before) and Searcher.load(out).search(["Seine"], k=1)[0][0].id == 1


def test_an_older_flat_index_is_still_read_and_replaced(tmp_path, corpus_file):
    from llm_embedder.retrieval.corpus import Corpus

    out = tmp_path / "flat"
    searcher = Searcher.build(Corpus.from_jsonl(corpus_file), "bm25")
    searcher.save(out)
    live = versioned.current(out)
    for path in live.iterdir():  # lay the files out as the older versions did
        path.rename(out / path.name)
    live.rmdir()
    (out / "CURRENT").unlink()
    assert Searcher.load(out).search(["Berlin"], k=1)[0][0].id == 2
    searcher.save(out)
    assert sorted(p.name for p in out.iterdir()) == ["CURRENT", versioned.current(out).name]


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


# ---------------------------------------------------------------------------- encode, mine, search
def test_encode_onto_its_input_is_refused(tmp_path, tiny_encoder_dir, run_cli):
    queries = write_jsonl(tmp_path / "q.jsonl", [{"query": "hello"}])
    before = snapshot(queries)
    code, err = run_cli("encode", "--input", queries, "--out", queries, "--task", "qa", "--model", tiny_encoder_dir)
    assert_one_line(code, err, r"q\.jsonl: the output is the input")
    assert snapshot(queries) == before


def test_encode_onto_an_unrelated_file_needs_overwrite(tmp_path, tiny_encoder_dir, run_cli):
    queries = write_jsonl(tmp_path / "q.jsonl", [{"query": "hello"}, {"query": "world"}])
    out = tmp_path / "thesis.npy"
    out.write_bytes(b"my thesis")
    before = snapshot(tmp_path)
    args = ("encode", "--input", queries, "--out", out, "--task", "qa", "--model", tiny_encoder_dir)
    assert_one_line(*run_cli(*args), r"thesis\.npy: an existing file that `llm-embedder encode` did not write")
    assert snapshot(tmp_path) == before
    assert run_cli(*args, "--overwrite")[0] == 0
    assert read_manifest(out)["command"] == "encode"
    assert run_cli(*args)[0] == 0  # its own output: replaced without --overwrite


def test_mine_and_search_refuse_unrelated_outputs(tmp_path, corpus_file, run_cli):
    queries = write_jsonl(tmp_path / "q.jsonl", [{"query": "capital of France", "pos_index": [0]}])
    out = tmp_path / "notes.jsonl"
    out.write_text("precious\n")
    before = snapshot(tmp_path)
    code, err = run_cli("mine", "--queries", queries, "--corpus", corpus_file, "--out", out, "--range", "0:3")
    assert_one_line(code, err, r"notes\.jsonl: an existing file that `llm-embedder mine` did not write")
    code, err = run_cli("mine", "--queries", queries, "--corpus", corpus_file, "--out", queries, "--range", "0:3")
    assert_one_line(code, err, r"q\.jsonl: the output is the queries")
    index = tmp_path / "index"
    assert run_cli("index", "build", "--method", "bm25", "--corpus", corpus_file, "--out", index)[0] == 0
    before = snapshot(queries, out)
    code, err = run_cli("search", "--index", index, "--queries", queries, "--out", queries)
    assert_one_line(code, err, r"the output is the queries")
    code, err = run_cli("search", "--index", index, "--queries", queries, "--out", out)
    assert_one_line(code, err, r"an existing file that `llm-embedder search` did not write")
    assert snapshot(queries, out) == before


# ---------------------------------------------------------------------------- score
def _score_records(n: int) -> list[dict]:
    return [
        {
            "query": f"capital of country {i}?",
            "task": "qa",
            "pos": ["Paris is in France."],
            "neg": ["Cats."],
            "answers": ["Paris"],
        }
        for i in range(n)
    ]


def test_score_refuses_an_unrelated_output_and_its_input(tmp_path, tiny_lm_dir, run_cli):
    src = write_jsonl(tmp_path / "in.jsonl", _score_records(2))
    out = write_jsonl(tmp_path / "out.jsonl", [{"line": i} for i in range(100)])
    before = snapshot(tmp_path)
    args = ("score", "--lm", tiny_lm_dir, "--input", src)
    assert_one_line(*run_cli(*args, "--output", out), r"out\.jsonl: an existing file that `llm-embedder score`")
    assert_one_line(*run_cli(*args, "--output", src), r"in\.jsonl: the output is the input")
    assert snapshot(tmp_path) == before


def test_score_stops_when_the_input_changed_and_restarts_on_request(tmp_path, tiny_lm_dir, run_cli):
    src = write_jsonl(tmp_path / "in.jsonl", _score_records(2))
    out = tmp_path / "out.jsonl"
    args = ("score", "--lm", tiny_lm_dir, "--input", src, "--output", out)
    assert run_cli(*args)[0] == 0
    assert run_cli(*args) == (0, [])  # complete and current: nothing to do
    write_jsonl(src, _score_records(3))
    before = snapshot(out, manifest_path(out))
    assert_one_line(*run_cli(*args), r"out\.jsonl: an earlier run wrote out\.jsonl from .*input changed.*--restart")
    assert_one_line(*run_cli(*args, "--aggregate", "max"), r"aggregate: \"mean\" -> \"max\"")
    assert snapshot(out, manifest_path(out)) == before
    assert run_cli(*args, "--restart")[0] == 0
    assert len(out.read_text().splitlines()) == 3


# ---------------------------------------------------------------------------- eval and train folders
def test_eval_and_train_refuse_unrelated_folders(tmp_path, run_cli):
    folder = tmp_path / "home"
    folder.mkdir()
    (folder / "diary.txt").write_text("dear diary")
    data = tmp_path / "data" / "tool" / "toolbench"
    write_jsonl(data / "corpus.json", [{"text": "a tool"}])
    write_jsonl(data / "test.json", [{"query": "use a tool", "pos_index": [0]}])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"datasets: []\noutput_dir: {folder}\n")
    before = snapshot(folder)
    code, err = run_cli("eval", "--data", tmp_path / "data", "--tasks", "tool", "--retriever", "bm25", "--out", folder)
    assert_one_line(code, err, r"home: an existing folder that `llm-embedder eval` did not write")
    code, err = run_cli("train", "--config", recipe)
    assert_one_line(code, err, r"home: an existing folder that `llm-embedder train` did not write")
    assert snapshot(folder) == before


# ---------------------------------------------------------------------------- the rules themselves
def test_claim_rules(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("x")
    link = tmp_path / "link.txt"
    os.symlink(src, link)
    with pytest.raises(ValueError, match="the output is the input"):
        claim(link, "encode", inputs={"input": src})  # the same file under another name
    out = claim(tmp_path / "new.txt", "encode", inputs={"input": src}, settings={"a": 1})
    out.seal()
    assert json.loads(manifest_path(tmp_path / "new.txt").read_text())["settings"] == {"a": 1}
    (tmp_path / "new.txt").write_text("made")
    with pytest.raises(ValueError, match="did not write"):
        claim(tmp_path / "new.txt", "mine")  # another command's output is not ours either
    claim(tmp_path / "new.txt", "encode")  # ours
    empty = tmp_path / "empty"
    empty.mkdir()
    claim(empty, "index build", is_dir=True)  # nothing to lose in an empty folder


def test_atomic_folder_replacement_survives_a_kill_between_its_renames(tmp_path):
    from llm_embedder.fileio import atomic_path

    target = tmp_path / "model"
    with atomic_path(target, is_dir=True) as tmp:
        (tmp / "weights").write_text("v1")
    target.rename(tmp_path / ".model.old")  # the first rename done, the second never happened
    dead = _dead_pid()
    (tmp_path / temporary_name("model", dead)).mkdir()  # and the new version's temporary folder
    half = tmp_path / temporary_name("notes.txt", dead)
    half.write_text("a dead run's half file")
    lookalike = tmp_path / f".report.{dead}.draft.tmp"  # a user's file named like a temporary
    lookalike.write_text("mine")
    with atomic_path(target, is_dir=True) as tmp:
        assert (target / "weights").read_text() == "v1"  # the previous version is back at once
        (tmp / "weights").write_text("v2")
    assert (target / "weights").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([half.name, lookalike.name, "model"])
    claim(tmp_path / "notes.txt", "encode")  # claiming an output clears its folder's dead leftovers
    claim(tmp_path / "report", "encode")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([lookalike.name, "model"])
    assert lookalike.read_text() == "mine"
