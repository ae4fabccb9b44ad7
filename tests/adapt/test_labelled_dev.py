"""A user's labelled queries give the dev set of qa and tool, and none of their positives reaches training."""

from __future__ import annotations

import json

from llm_embedder.data.layout import train_corpus_path
from llm_embedder.fileio import read_jsonl, write_jsonl
from llm_embedder.userdata.build import UserDataSettings, UserInputs, _labelled_dev, _without_keys, build_user_data


def _labelled(n: int, task: str = "qa") -> list[dict]:
    return [
        {"query": f"question {i}", "pos": [f"answer {i}"], "neg": [f"answer {(i + 1) % n}", "noise"], "task": task}
        for i in range(n)
    ]


def test_queries_alone_give_a_dev_set_whose_positives_leave_training(tmp_path):
    records = _labelled(10) + _labelled(5, "tool")
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps(r) + "\n" for r in records))
    report = build_user_data(UserInputs(queries=str(queries)), tmp_path / "data", lm=None)

    for task, folder, n in (("qa", "qa/retrieval", 10), ("tool", "tool/toolbench", 5)):
        dev = read_jsonl(tmp_path / "data" / "dev" / folder / "test.json")
        corpus = [r["text"] for r in read_jsonl(tmp_path / "data" / "dev" / folder / "corpus.json")]
        assert len(dev) == round(0.2 * n)  # the default dev_share
        held = {r["query"] for r in dev}
        positives = set()
        for r in dev:
            i = int(r["query"].split()[1])
            assert [corpus[j] for j in r["pos_index"]] == [f"answer {i}"]
            positives.add(f"answer {i}")
        train = read_jsonl(tmp_path / "data" / "train" / f"{task}.json")
        assert not held & {r["query"] for r in train} and len(train) == n - len(dev)
        # by brute force: no held-out positive anywhere in a training record
        assert not any(p in json.dumps(r) for r in train for p in positives)
        assert report["queries"]["counts"][f"{task} held out as dev (in place of written ones)"] == len(dev)


def test_labelled_dev_replaces_written_dev_queries_and_keeps_their_corpus(tmp_path):
    folder = tmp_path / "dev" / "qa" / "retrieval"
    write_jsonl(folder / "test.json", [{"query": "written?", "pos_index": [1], "cluster": "d"}])
    write_jsonl(folder / "corpus.json", [{"title": "T", "text": "one"}, {"title": "T", "text": "two"}])
    records = [
        {"query": "real 0", "pos": ["T two"], "task": "qa"},  # its positive is already a corpus passage
        {"query": "real 1", "pos": ["new passage"], "neg": ["T one"], "task": "qa"},
        {"query": "real 2", "pos": ["other"], "task": "qa"},
    ]
    rest, gone = _labelled_dev("qa", records, UserDataSettings(dev_share=0.67, seed=0), tmp_path)
    dev = read_jsonl(folder / "test.json")
    corpus = read_jsonl(folder / "corpus.json")
    assert "written?" not in {r["query"] for r in dev} and len(dev) == 2 and len(rest) == 1
    texts = [f"{r['title']} {r['text']}".strip() for r in corpus]
    assert texts[:2] == ["T one", "T two"] and len(texts) == len(set(texts))  # written corpus kept, no repeats
    for r in dev:
        [labelled] = [x for x in records if x["query"] == r["query"]]
        assert [texts[j] for j in r["pos_index"]] == labelled["pos"]
    assert gone == {t for r in records if r not in rest for t in r["pos"]}


def test_without_keys_drops_records_negatives_and_corpus_rows_of_held_out_keys(tmp_path):
    write_jsonl(tmp_path / train_corpus_path("qa"), [{"title": "A", "text": "x"}, {"title": "B", "text": "y"}])
    records = [
        {"query": "q1", "pos": ["A x"], "task": "qa"},
        {"query": "q2", "pos": ["C z"], "neg": ["A x", "B y"], "task": "qa"},
    ]
    kept = _without_keys("qa", records, {"A x"}, tmp_path)
    assert kept == [{"query": "q2", "pos": ["C z"], "neg": ["B y"], "task": "qa"}]
    assert read_jsonl(tmp_path / train_corpus_path("qa")) == [{"title": "B", "text": "y"}]
    assert _without_keys("qa", records, set(), tmp_path) == records
