"""Sections 2-4 of issue 13: stale state is never answered as current, wrong input is never turned
into a silent wrong result, and bad input gives one line naming file, line and field, not a traceback."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from checks import CORPUS_ROWS, assert_one_line, snapshot, write_jsonl

from llm_embedder import versioned
from llm_embedder.retrieval.corpus import Corpus
from llm_embedder.retrieval.searcher import Searcher

BOM = b"\xef\xbb\xbf"


def _bm25_index(run_cli, corpus_file, out):
    assert run_cli("index", "build", "--method", "bm25", "--corpus", corpus_file, "--out", out)[0] == 0
    return versioned.current(out)


# ---------------------------------------------------------------------------- corpus and key templates
@pytest.mark.parametrize(
    ("value", "got"), [(None, "null"), (42, "int"), ([["a", "b"]], "list"), ({"x": 1}, "dict"), (True, "bool")]
)
def test_corpus_field_of_another_type_is_refused(tmp_path, run_cli, value, got):
    corpus = write_jsonl(tmp_path / "c.jsonl", [CORPUS_ROWS[0], {"title": "t", "text": value}])
    code, err = run_cli("index", "build", "--method", "bm25", "--corpus", corpus, "--out", tmp_path / "i")
    assert_one_line(code, err, rf"c\.jsonl:2: field 'text': expected a string, got {got}")
    assert not (tmp_path / "i").exists()


@pytest.mark.parametrize("template", ["{}", "{title", "{0} {text}", "{title.upper}", "{text[0]}", "plain"])
def test_bad_key_template_is_one_line(tmp_path, corpus_file, run_cli, template):
    args = ("index", "build", "--method", "bm25", "--corpus", corpus_file, "--out", tmp_path / "i")
    assert_one_line(*run_cli(*args, "--key-template", template), r"key template")


def test_bm25_corpus_of_stop_words_only(tmp_path, run_cli):
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"text": "the a of"}, {"text": "and or"}])
    code, err = run_cli("index", "build", "--method", "bm25", "--corpus", corpus, "--out", tmp_path / "i")
    assert_one_line(code, err, r"no document has a word BM25 can index")


def test_bm25_unknown_task_is_refused(tmp_path, corpus_file, run_cli):
    args = ("--method", "bm25", "--corpus", corpus_file, "--task", "qq")
    assert_one_line(*run_cli("index", "build", *args, "--out", tmp_path / "i"), r"unknown task 'qq'")
    queries = write_jsonl(tmp_path / "q.jsonl", [{"query": "x"}])
    assert_one_line(*run_cli("mine", *args, "--queries", queries, "--out", tmp_path / "m"), r"unknown task 'qq'")


def test_duplicate_ids_in_a_corpus_object():
    with pytest.raises(ValueError, match="not unique"):
        Corpus(["a", "b"], [1, 1])


# ---------------------------------------------------------------------------- searching
def test_search_takes_a_list_and_caps_k(tmp_path, corpus_file, run_cli):
    _bm25_index(run_cli, corpus_file, tmp_path / "i")
    searcher = Searcher.load(tmp_path / "i")
    with pytest.raises(ValueError, match="list of strings"):
        searcher.search("Paris")
    with pytest.raises(ValueError, match="list of strings"):
        searcher.search([None])
    with pytest.raises(ValueError, match="positive integer"):
        searcher.search(["Paris"], k=0)
    assert len(searcher.search(["Paris capital France Seine river"], k=10**9)[0]) <= len(CORPUS_ROWS)
    code, err = run_cli("search", "--index", tmp_path / "i", "--query", "Paris", "-k", "1000000000")
    assert code == 0, err


def test_broken_index_files_are_named(tmp_path, corpus_file, run_cli):
    cases = {
        "corpus.jsonl": (lambda f: f.write_text(f.read_text().splitlines()[0] + "\n"), r"corpus\.jsonl: holds 1"),
        "bm25/ids.json": (lambda f: f.write_text(json.dumps(json.loads(f.read_text())[:3])), r"ids\.json: expected"),
        "searcher.json": (lambda f: f.write_text(json.dumps({"task": "qa"})), r"searcher\.json: field 'method'"),
        "searcher.json ": (lambda f: f.write_text("[1, 2]"), r"searcher\.json: expected a JSON object"),
        "CURRENT": (lambda f: f.write_text("v-1-ff\n"), r"broken index"),
    }
    for name, (damage, pattern) in cases.items():
        out = tmp_path / f"i{len(name)}{name[0]}"
        live = _bm25_index(run_cli, corpus_file, out)
        damage((out if name == "CURRENT" else live) / name.strip())
        before = snapshot(out)
        assert_one_line(*run_cli("search", "--index", out, "--query", "Paris"), pattern)
        assert snapshot(out) == before


def test_dense_index_refuses_another_model_of_the_same_size(
    tmp_path, corpus_file, tiny_encoder_dir, other_encoder_dir, run_cli
):
    out = tmp_path / "i"
    assert run_cli("index", "build", "--corpus", corpus_file, "--out", out, "--model", tiny_encoder_dir)[0] == 0
    assert run_cli("search", "--index", out, "--query", "Paris")[0] == 0
    before = snapshot(out)
    code, err = run_cli("search", "--index", out, "--query", "Paris", "--model", other_encoder_dir)
    assert_one_line(code, err, r"searcher\.json: field 'encoder_fingerprint': the model .* is not the one")
    assert snapshot(out) == before


# ---------------------------------------------------------------------------- mining
@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"query": "q", "pos_index": ["0"]}, "pos_index"),
        ({"query": "q", "pos": [1]}, "pos"),
        ({"query": "q", "answers": [None]}, "answers"),
        ({"query": "q", "pos": "Paris"}, "pos"),
        ({"query": 5}, "query"),
    ],
)
def test_mine_checks_field_types(tmp_path, corpus_file, run_cli, record, field):
    queries = write_jsonl(tmp_path / "q.jsonl", [{"query": "ok"}, record])
    code, err = run_cli(
        "mine", "--queries", queries, "--corpus", corpus_file, "--out", tmp_path / "m", "--range", "0:3"
    )
    assert_one_line(code, err, rf"q\.jsonl:2: field '{field}'")
    assert not (tmp_path / "m").exists()


def test_mine_range_beyond_the_corpus(tmp_path, corpus_file, run_cli):
    queries = write_jsonl(tmp_path / "q.jsonl", [{"query": "Paris"}])
    code, err = run_cli(
        "mine", "--queries", queries, "--corpus", corpus_file, "--out", tmp_path / "m", "--range", "50:60"
    )
    assert_one_line(code, err, r"starts beyond the corpus \(10 documents\)")


# ---------------------------------------------------------------------------- evaluation
def _tool_data(root, rows):
    folder = root / "tool" / "toolbench"
    write_jsonl(folder / "corpus.json", CORPUS_ROWS)
    write_jsonl(folder / "test.json", rows)
    return root


EVAL_ROWS = [
    {"query": "capital of France", "pos_index": [0]},
    {"query": "capital of Germany", "pos_index": [2]},
    {"query": "sleeping cats", "pos_index": [4]},  # BM25 ranks doc 3 first: a miss
]


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_eval_limit_must_be_positive(tmp_path, run_cli, limit):
    data = _tool_data(tmp_path / "d", EVAL_ROWS)
    args = ("eval", "--data", data, "--tasks", "tool", "--retriever", "bm25", "--out", tmp_path / "o")
    assert_one_line(*run_cli(*args, "--limit", limit), r"argument --limit: expected at least 1, got " + limit)


@pytest.mark.parametrize(
    ("grades", "pattern"), [(5, r"test\.json:1: field 'pos_relevance'"), ([], r"test\.json:1: field 'pos_relevance'")]
)
def test_eval_pos_relevance_is_checked(tmp_path, run_cli, grades, pattern):
    data = _tool_data(tmp_path / "d", [{**EVAL_ROWS[0], "pos_relevance": grades}])
    args = ("eval", "--data", data, "--tasks", "tool", "--retriever", "bm25", "--out", tmp_path / "o")
    assert_one_line(*run_cli(*args), pattern)


def test_eval_cells_follow_the_data_and_the_limit(tmp_path, run_cli):
    data = _tool_data(tmp_path / "d", EVAL_ROWS)
    out = tmp_path / "o"
    args = ("eval", "--data", data, "--tasks", "tool", "--retriever", "bm25", "--out", out)

    def mrr() -> float:
        cell = json.loads((out / "cells" / "tool__bm25.json").read_text())
        return cell["metrics"]["mrr@10"] if "mrr@10" in cell["metrics"] else next(iter(cell["metrics"].values()))

    assert run_cli(*args, "--limit", "2")[0] == 0
    two = mrr()
    assert run_cli(*args)[0] == 0  # the limit changed: the cell is run again
    three = mrr()
    assert three != two
    write_jsonl(data / "tool" / "toolbench" / "test.json", EVAL_ROWS[2:])  # the data changed
    assert run_cli(*args)[0] == 0
    assert mrr() != three
    before = snapshot(out / "cells")
    assert run_cli(*args)[0] == 0  # nothing changed: the cell is reused as it is
    assert snapshot(out / "cells") == before


# ---------------------------------------------------------------------------- recipes, tasks, pipelines
def _recipe(tmp_path, text: str | bytes):
    path = tmp_path / "r.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("data_root: 5\ndatasets: [{path: a.json}]\n", r"r\.yaml: field 'data_root'"),
        (b"model: caf\xe9\n", r"r\.yaml: not UTF-8 text"),
        ("datasets: [\n", r"r\.yaml:2: invalid YAML"),
        ("- a list\n", r"r\.yaml: a recipe is a mapping"),
        ("tasks: {qa: {training: {teacher_temperature: hot}}}\ndatasets: []\n", r"teacher_temperature must be"),
    ],
)
def test_bad_recipe_is_one_line(tmp_path, run_cli, text, pattern):
    recipe = _recipe(tmp_path, text)
    before = snapshot(recipe)
    assert_one_line(*run_cli("train", "--config", recipe, "--output-dir", tmp_path / "out"), pattern)
    assert snapshot(recipe) == before


def test_malformed_pipeline_yaml(tmp_path, run_cli):
    path = _recipe(tmp_path, "work_dir: x\nmine: {range: [\n")
    assert_one_line(*run_cli("run", path), r"r\.yaml:3: invalid YAML")


@pytest.mark.parametrize(
    ("tasks", "pattern"),
    [
        ({"qa": {"lm_template": 42}}, r"lm_template must be a string"),
        ({"qa": {"lm_template": "{key {answer}"}}, r"lm_template '\{key \{answer\}': unexpected '\{'"),
        ({"qa": {"lm_template": "{key} {answer"}}, r"lm_template .*expected '\}'"),
        ({"qa": {"training": {"teacher_temperature": "hot"}}}, r"teacher_temperature must be a number"),
        ({"qa": {"training": {"group_size": "8"}}}, r"group_size must be an integer"),
    ],
)
def test_bad_tasks_file(tmp_path, corpus_file, run_cli, tasks, pattern):
    tasks_file = tmp_path / "tasks.yaml"
    tasks_file.write_text(yaml.safe_dump({"tasks": tasks}))
    src = write_jsonl(tmp_path / "in.jsonl", [{"query": "q", "task": "qa", "pos": ["p"], "answers": ["a"]}])
    code, err = run_cli(
        "score", "--lm", "smollm2-135m", "--input", src, "--output", tmp_path / "o", "--tasks-file", tasks_file
    )
    assert_one_line(code, err, r"tasks\.yaml: field 'qa': " + pattern)


def test_byte_order_marks_are_accepted(tmp_path, run_cli):
    corpus = write_jsonl(tmp_path / "c.jsonl", CORPUS_ROWS, raw=BOM)
    assert run_cli("index", "build", "--method", "bm25", "--corpus", corpus, "--out", tmp_path / "i")[0] == 0
    tasks_file = tmp_path / "t.yaml"
    tasks_file.write_bytes(BOM + b"tasks:\n  qa:\n    query_instruction: 'Q: '\n")
    from llm_embedder.tasks import TaskTable

    assert TaskTable.from_yaml(tasks_file)["qa"].query_instruction == "Q: "


# ---------------------------------------------------------------------------- models and the Python API
def test_a_deleted_model_folder_is_named(tmp_path, corpus_file, run_cli):
    missing = tmp_path / "runs" / "gone" / "model"
    code, err = run_cli("index", "build", "--corpus", corpus_file, "--out", tmp_path / "i", "--model", missing)
    assert_one_line(code, err, r"gone/model: no such model folder")


def test_python_api_names_the_bad_element(tiny_embedder):
    for texts, pattern in [(None, "list of texts"), ([1], r"texts\[0\] is int"), (["ok", None], r"texts\[1\] is None")]:
        with pytest.raises(TypeError, match=pattern):
            tiny_embedder.encode_queries(texts, task="qa")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        tiny_embedder.encode_queries(["a"], task="qa", batch_size=-1)
    assert tiny_embedder.encode_queries(np.array(["a", "b"]), task="qa").shape[0] == 2


def test_an_unavailable_device(tiny_encoder_dir):
    from llm_embedder import Embedder

    with pytest.raises(ValueError, match=r"device 'cuda:7' is not available"):
        Embedder.from_pretrained(tiny_encoder_dir, device="cuda:7")
    with pytest.raises(ValueError, match="unknown device"):
        Embedder.from_pretrained(tiny_encoder_dir, device="gpu please")


def test_unexpected_errors_are_one_line_and_debug_shows_them(tmp_path, corpus_file, run_cli, monkeypatch, capsys):
    from llm_embedder.retrieval import bm25

    def boom(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(bm25.BM25Index, "add", boom)
    args = ("index", "build", "--method", "bm25", "--corpus", corpus_file, "--out", tmp_path / "i")
    code, err = run_cli(*args)
    assert code == 1 and len(err) == 1 and "ZeroDivisionError: a bug" in err[0] and "--debug" in err[0]
    from llm_embedder.cli import main

    with pytest.raises(ZeroDivisionError):
        main(["--debug", "-q", *map(str, args)])
