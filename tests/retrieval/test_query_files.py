"""``search``'s files: query records in, hit records out, and the command end to end."""

from __future__ import annotations

import json

import pytest

from llm_embedder.cli import main as cli_main
from llm_embedder.errors import InputError
from llm_embedder.retrieval.query_files import read_queries, write_hits
from llm_embedder.retrieval.searcher import Hit, Searcher

DOCS = [
    "Paris is the capital and largest city of France.",
    "The Danube flows through ten countries before reaching the Black Sea.",
    "Bread is baked from flour, water, salt and yeast.",
    "The Seine runs through Paris on its way to the English Channel.",
]


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def test_read_queries_keeps_whole_records(tmp_path):
    records = [{"query": "river", "id": 1, "answers": ["Danube"]}, {"query": "bread", "extra": None}]
    assert read_queries(_write_jsonl(tmp_path / "q.jsonl", records)) == records
    assert read_queries(_write_jsonl(tmp_path / "t.jsonl", [{"text": "x"}]), "text") == [{"text": "x"}]


@pytest.mark.parametrize("record", [{"other": "x"}, {"query": ["a list"]}])
def test_read_queries_names_file_line_and_field(tmp_path, record):
    file = _write_jsonl(tmp_path / "q.jsonl", [{"query": "fine"}, record])
    with pytest.raises(InputError, match=r"q\.jsonl:2: field 'query': missing or not a string$"):
        read_queries(file)


def test_write_hits_adds_hits_to_each_record(tmp_path):
    out = tmp_path / "hits.jsonl"
    records = [{"query": "a", "id": 3}, {"query": "ü"}]
    hits = [[Hit(5, 0.5, "five"), Hit(1, 0.25, "one")], []]
    write_hits(out, records, hits)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        {
            "query": "a",
            "id": 3,
            "hits": [{"id": 5, "score": 0.5, "text": "five"}, {"id": 1, "score": 0.25, "text": "one"}],
        },
        {"query": "ü", "hits": []},
    ]
    assert "ü" in lines[1]  # text kept as it is, not escaped
    assert records == [{"query": "a", "id": 3}, {"query": "ü"}]  # the caller's records untouched


def test_write_hits_of_another_length_writes_nothing(tmp_path):
    with pytest.raises(ValueError):
        write_hits(tmp_path / "hits.jsonl", [{"query": "a"}, {"query": "b"}], [[Hit(1, 1.0, "x")]])
    assert list(tmp_path.iterdir()) == []


def test_search_command_writes_the_searchers_hits(tmp_path):
    corpus = _write_jsonl(tmp_path / "c.jsonl", [{"text": t} for t in DOCS])
    queries = _write_jsonl(tmp_path / "q.jsonl", [{"query": "Paris France", "n": 1}, {"query": "river sea"}])
    index, out = tmp_path / "idx", tmp_path / "hits.jsonl"
    assert cli_main(["-q", "index", "build", "--method", "bm25", "--corpus", str(corpus), "--out", str(index)]) == 0
    assert (
        cli_main(["-q", "search", "--index", str(index), "--queries", str(queries), "-k", "2", "--out", str(out)]) == 0
    )
    expected = Searcher.load(index).search(["Paris France", "river sea"], k=2)
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [g["n"] for g in got[:1]] == [1] and "n" not in got[1]
    assert [[(h["id"], h["score"], h["text"]) for h in g["hits"]] for g in got] == [
        [(h.id, h.score, h.text) for h in row] for row in expected
    ]
    assert got[0]["hits"][0]["text"] == DOCS[0]  # both words of the first query are in the first document only
