"""Hard-negative mining: positives excluded, the requested rank range (checked against a brute-force
ranking), count, seeding, answer filtering, the ``mine`` command and its input errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from llm_embedder.cli import main as cli_main
from llm_embedder.errors import InputError
from llm_embedder.retrieval.corpus import Corpus
from llm_embedder.retrieval.searcher import Hit, Searcher
from llm_embedder.rewards.mine import (
    MineSettings,
    encoder_guard,
    mine_corpus,
    mine_file,
    needs_encoder,
    parse_rank_range,
)


def write_records(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def corpus(toy_records) -> Corpus:
    """~100 distinct real MS MARCO passages (the toy qa positives and some of their negatives),
    with external, non-contiguous ids."""
    records = toy_records("qa")
    texts = list(dict.fromkeys([r["pos"][0] for r in records] + [t for r in records for t in r["neg"][:12]]))
    return Corpus(texts, [5 * i + 3 for i in range(len(texts))])


@pytest.fixture(scope="module")
def queries(toy_records, corpus) -> list[dict]:
    """The toy qa records, their positive given by corpus id, by text, or by both."""
    out = []
    for i, r in enumerate(toy_records("qa")):
        pos_id = corpus.ids[corpus.texts.index(r["pos"][0])]
        record = {"query": r["query"], "answers": r["answers"], "task": "qa", "teacher_scores": [1.0, 2.0]}
        if i % 3 == 0:
            record["pos_index"] = [pos_id]  # by id only
        elif i % 3 == 1:
            record["pos"] = [" " + r["pos"][0] + "\n"]  # by text only (compared stripped)
        else:
            record.update(pos=[r["pos"][0]], pos_index=[pos_id])
        out.append(record)
    return out


@pytest.fixture(scope="module")
def bm25(corpus) -> Searcher:
    return Searcher.build(corpus, "bm25", task="qa")


@pytest.fixture(scope="module")
def dense(corpus, tiny_embedder) -> Searcher:
    return Searcher.build(corpus, "dense", task="qa", embedder=tiny_embedder)


_KEY_VECTORS: dict[tuple[str, ...], object] = {}  # a corpus's key embeddings, computed once


def brute_force_ranking(searcher: Searcher, corpus: Corpus, query: str, tiny_embedder) -> list[tuple[int, float]]:
    """Every document as (id, score), best first, scored without the index's top-k search."""
    if searcher.method == "dense":
        q = tiny_embedder.encode_queries([query], task="qa")[0]
        texts = tuple(corpus.texts)  # not id(corpus): a freed corpus's id is reused by the next
        if texts not in _KEY_VECTORS:
            _KEY_VECTORS[texts] = tiny_embedder.encode_keys(corpus.texts, task="qa")
        scores = _KEY_VECTORS[texts] @ q
        ranked = [(corpus.ids[j], float(scores[j])) for j in range(len(corpus))]
    else:  # BM25 scores of every document (those sharing no term with the query are never hits)
        hits = searcher.search([query], k=len(corpus))[0]
        ranked = [(h.id, h.score) for h in hits]
    return sorted(ranked, key=lambda x: -x[1])


def positive_ids(record: dict, corpus: Corpus) -> set[int]:
    texts = {p.strip() for p in record.get("pos", [])}
    return set(record.get("pos_index", [])) | {i for i, t in zip(corpus.ids, corpus.texts, strict=True) if t in texts}


def expected_pool(ranking, positives: set[int], start: int, end: int) -> tuple[list[int], bool]:
    """Ids at ranks start..end after removing the positives, and whether the range's edges are
    free of score ties (with a tie either of the tied documents may sit at the edge)."""
    rest = [(i, s) for i, s in ranking if i not in positives]
    pool = [i for i, _ in rest[start:end]]
    scores = [s for _, s in rest]
    edges = [(start - 1, start), (end - 1, end)]
    clean = all(not (a >= 0 and b < len(scores)) or abs(scores[a] - scores[b]) > 1e-5 for a, b in edges)
    return pool, clean


@pytest.mark.parametrize("method", ["bm25", "dense"])
def test_negatives_are_the_rank_range_without_positives(method, request, corpus, queries, tiny_embedder, tmp_path):
    searcher = request.getfixturevalue(method)
    src = write_records(tmp_path / "queries.jsonl", queries)
    out = tmp_path / "mined.jsonl"
    start, end = 2, 12
    # count >= the range: the whole pool is kept, so it can be compared with brute force
    assert mine_file(searcher, src, out, MineSettings(start, end, count=50), show_progress=False) == len(queries)
    compared = full = 0
    for record, mined in zip(queries, read_records(out), strict=True):
        positives = positive_ids(record, corpus)
        assert len(positives) == 1
        assert not positives & set(mined["neg_index"])
        assert not {p.strip() for p in record.get("pos", [])} & {t.strip() for t in mined["neg"]}
        text_of = dict(zip(corpus.ids, corpus.texts, strict=True))
        assert mined["neg"] == [text_of[i] for i in mined["neg_index"]]
        ranking = brute_force_ranking(searcher, corpus, record["query"], tiny_embedder)
        pool, clean = expected_pool(ranking, positives, start, end)
        assert len(mined["neg_index"]) == len(pool)
        full += len(pool) == end - start
        if clean:
            assert mined["neg_index"] == pool
            compared += 1
        else:
            assert len(set(mined["neg_index"]) & set(pool)) >= len(pool) - 2
    assert compared >= len(queries) - 2  # ties at the edges are rare: most records are compared exactly
    assert full >= len(queries) - 2  # (BM25 only returns documents sharing a term with the query)


def test_positive_ranked_inside_the_range_is_replaced_by_the_next_hit(bm25, corpus, queries, tmp_path):
    # the positive is usually among the top five BM25 hits: range 0:5 still gives the five best *other* documents
    src = write_records(tmp_path / "queries.jsonl", queries)
    out = tmp_path / "mined.jsonl"
    mine_file(bm25, src, out, MineSettings(0, 5, count=5), show_progress=False)
    top_is_positive = 0
    for record, mined in zip(queries, read_records(out), strict=True):
        ranking = brute_force_ranking(bm25, corpus, record["query"], None)
        positives = positive_ids(record, corpus)
        top_is_positive += bool(positives & {i for i, _ in ranking[:5]})
        pool, clean = expected_pool(ranking, positives, 0, 5)
        assert len(mined["neg_index"]) == len(pool) == min(5, len(ranking) - 1)
        if clean:
            assert mined["neg_index"] == pool
    assert top_is_positive >= 4, top_is_positive  # the range would have lost a hit to the positive


def test_count_seed_and_rank_order(bm25, corpus, queries, tmp_path):
    src = write_records(tmp_path / "queries.jsonl", queries)
    runs = {}
    for seed in (0, 0, 1):
        out = tmp_path / f"seed{seed}.jsonl"
        mine_file(bm25, src, out, MineSettings(1, 30, count=4, seed=seed), show_progress=False)
        runs.setdefault(seed, []).append(out.read_bytes())
    assert runs[0][0] == runs[0][1]  # same seed, same bytes
    assert runs[0][0] != runs[1][0]  # another seed, other negatives (29 choose 4 per record)
    for seed in (0, 1):
        for record, mined in zip(queries, read_records(tmp_path / f"seed{seed}.jsonl"), strict=True):
            ranking = brute_force_ranking(bm25, corpus, record["query"], None)
            pool, _ = expected_pool(ranking, positive_ids(record, corpus), 1, 30)
            assert len(mined["neg_index"]) == min(4, len(pool)) == len(set(mined["neg_index"]))
            ranks = [pool.index(i) for i in mined["neg_index"] if i in pool]
            assert len(ranks) >= len(mined["neg_index"]) - 1 and ranks == sorted(ranks)  # in rank order
    # records differ in their draws: the generator is seeded per line, not once
    drawn = [tuple(m["neg_index"]) for m in read_records(tmp_path / "seed0.jsonl")]
    assert len(set(drawn)) == len(drawn)


def test_records_keep_their_fields_but_lose_stale_teacher_scores(bm25, queries, tmp_path):
    src = write_records(tmp_path / "queries.jsonl", queries)
    out = tmp_path / "mined.jsonl"
    mine_file(bm25, src, out, MineSettings(0, 10, count=3), show_progress=False)
    for record, mined in zip(queries, read_records(out), strict=True):
        assert "teacher_scores" not in mined
        assert {k: v for k, v in mined.items() if k not in ("neg", "neg_index")} == {
            k: v for k, v in record.items() if k != "teacher_scores"
        }


def test_a_range_beyond_the_hits_gives_fewer_negatives_or_an_error(bm25, corpus, queries, tmp_path):
    src = write_records(tmp_path / "queries.jsonl", queries)
    out = tmp_path / "mined.jsonl"
    n = len(corpus)
    mine_file(bm25, src, out, MineSettings(n - 3, n + 50, count=10), show_progress=False)
    for mined in read_records(out):
        assert len(mined["neg_index"]) <= 2  # at most the two documents left after the positive
    before = out.read_bytes()
    # a range that starts past the corpus can give no negative at all: an error, not `neg: []`
    with pytest.raises(ValueError, match=rf"starts beyond the corpus \({n} documents\)"):
        mine_file(bm25, src, out, MineSettings(n + 5, n + 50, count=10), show_progress=False)
    assert out.read_bytes() == before


def test_filter_answers_drops_hits_that_contain_an_answer(tmp_path):
    texts = [
        "Paris is the capital of France and its largest city.",
        "The capital of France has been PARIS since the Middle Ages.",
        "France is a country in Europe; its capital city is well known.",
        "Lyon is a large city of France, but not the capital.",
        "Marseille is a port city in the south of France.",
        "The capital of Italy is Rome.",
    ]
    searcher = Searcher.build(Corpus(texts, list(range(len(texts)))), "bm25")
    record = {"query": "What is the capital city of France?", "answers": ["Paris", " "], "pos_index": [0]}
    src = write_records(tmp_path / "q.jsonl", [record])
    for filter_answers, expected in [(False, {1, 2, 3, 4, 5}), (True, {2, 3, 4, 5})]:
        out = tmp_path / "out.jsonl"
        mine_file(searcher, src, out, MineSettings(0, 10, count=10, filter_answers=filter_answers))
        found = set(read_records(out)[0]["neg_index"])
        assert found == expected & {h.id for h in searcher.search([record["query"]], k=10)[0]}
        assert (1 in found) is not filter_answers  # "PARIS" matches case-insensitively


def test_mine_command_end_to_end(toy_records, tmp_path, capsys):
    qa = toy_records("qa")
    texts = list(dict.fromkeys([r["pos"][0] for r in qa] + [t for r in qa for t in r["neg"][:20]]))
    corpus_file = write_records(
        tmp_path / "corpus.jsonl", [{"title": f"doc {i}", "text": t} for i, t in enumerate(texts)]
    )
    queries = [{**r, "pos_index": [texts.index(r["pos"][0])]} for r in qa]
    for r in queries:
        del r["neg"], r["neg_index"]
    queries_file = write_records(tmp_path / "queries.jsonl", queries)
    out = tmp_path / "mined" / "train.jsonl"
    argv = [
        "-q",
        "mine",
        "--queries",
        str(queries_file),
        "--corpus",
        str(corpus_file),
        "--out",
        str(out),
        "--range",
        "3:40",
        "--count",
        "7",
        "--seed",
        "5",
    ]
    assert cli_main(argv) == 0
    assert "for 8 queries" in capsys.readouterr().out
    mined = read_records(out)
    assert len(mined) == len(queries)
    full = 0
    for record, m in zip(queries, mined, strict=True):
        assert m["query"] == record["query"] and m["pos"] == record["pos"] and "teacher_scores" not in m
        assert len(m["neg"]) == len(m["neg_index"]) <= 7
        full += len(m["neg"]) == 7
        assert record["pos_index"][0] not in m["neg_index"] and record["pos"][0] not in m["neg"]
        assert m["neg"] == [texts[i] for i in m["neg_index"]]  # ids are corpus row numbers
    assert full >= 6  # the one-word queries match few documents
    # the same command again: the same file (seeded); --filter-answers is accepted
    first = out.read_bytes()
    assert cli_main(argv) == 0 and out.read_bytes() == first
    assert cli_main([*argv, "--filter-answers"]) == 0


def test_bad_query_records_name_file_line_and_field(bm25, tmp_path):
    good = {"query": "what is the capital of france", "pos_index": [3]}
    cases = [
        ({"pos": ["x"]}, "query"),
        ({"query": 7}, "query"),
        ({"query": "q", "pos": "x"}, "pos"),
        ({"query": "q", "pos_index": 3}, "pos_index"),
        ({"query": "q", "answers": "a"}, "answers"),
    ]
    for bad, field in cases:
        src = tmp_path / "queries.jsonl"
        src.write_text(json.dumps(good) + "\n\n" + json.dumps(bad) + "\n", encoding="utf-8")  # bad is line 3
        out = tmp_path / "out.jsonl"
        with pytest.raises(InputError) as info:
            mine_file(bm25, src, out, MineSettings(0, 5, count=2), show_progress=False)
        assert (info.value.path, info.value.line, info.value.field) == (str(src), 3, field)
        assert not out.exists()


def test_cli_reports_bad_input_and_bad_ranges(tmp_path, capsys):
    corpus_file = write_records(tmp_path / "corpus.jsonl", [{"text": "a cat sat on the mat"}, {"text": "dogs"}])
    queries_file = write_records(tmp_path / "queries.jsonl", [{"query": "cat"}, {"pos": ["dogs"]}])
    base = ["-q", "mine", "--queries", str(queries_file), "--corpus", str(corpus_file), "--out", str(tmp_path / "o")]
    assert cli_main(base) == 2
    assert re.search(r"queries\.jsonl:2: field 'query'", capsys.readouterr().err)
    for bad_range in ["10", "a:b", "5:5", "9:3", "-1:4", ":4"]:
        assert cli_main([*base, f"--range={bad_range}"]) == 2
        assert "rank range" in capsys.readouterr().err
    assert cli_main([*base, "--range", "0:4", "--count", "0"]) == 2
    assert "count" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_parse_rank_range_and_settings():
    assert parse_rank_range("10:100") == (10, 100)
    assert parse_rank_range(" 0 : 5 ") == (0, 5)
    for text in ["10", "10-100", "a:5", "5:", ":5", "-1:5", "1.5:4", ""]:
        with pytest.raises(ValueError, match="START:END"):
            parse_rank_range(text)
    for start, end in [(5, 5), (9, 3), (-1, 4)]:
        with pytest.raises(ValueError, match="empty"):
            MineSettings(start, end)
    with pytest.raises(ValueError, match="count"):
        MineSettings(0, 4, count=0)
    defaults = MineSettings()
    assert (defaults.start, defaults.end, defaults.count, defaults.seed) == (10, 100, 16, 0)


# ============================================================================ false-negative guards


class FakeEncoder:
    """Hand-set unit vectors per text, so every cosine in the guard tests is known in advance (each text
    holds the word "query", so BM25 finds them all)."""

    VECTORS = {
        "a query": [1.0, 0.0],
        "query the positive": [0.8, 0.6],  # cos 0.8
        "query alpha twin": [1.0, 0.0],  # cos 1.0: above the positive
        "query beta tie": [0.8, -0.6],  # cos 0.8: ties the positive
        "query gamma near": [0.6, 0.8],  # cos 0.6
        "query delta far": [0.0, 1.0],  # cos 0.0
    }

    def __init__(self):
        self.tasks_seen: set[str] = set()

    def _encode(self, texts, task):
        self.tasks_seen.add(task)
        return np.array([self.VECTORS[t] for t in texts], dtype=np.float32)

    encode_queries = _encode
    encode_keys = _encode


GUARD_POOL = [
    Hit(i, 0.0, t) for i, t in enumerate(["query alpha twin", "query beta tie", "query gamma near", "query delta far"])
]


@pytest.mark.parametrize(
    ("margin", "kept"),
    [
        (0.0, ["query gamma near", "query delta far"]),  # at or above the positive's 0.8 goes
        (0.1, ["query beta tie", "query gamma near", "query delta far"]),  # only >= 0.9 goes
        (0.5, ["query alpha twin", "query beta tie", "query gamma near", "query delta far"]),  # nothing reaches 1.3
        (-0.25, ["query delta far"]),  # >= 0.55 goes
    ],
)
def test_encoder_guard_by_hand(margin, kept):
    enc = FakeEncoder()
    out = encoder_guard([{"query": "a query"}], [["query the positive"]], [GUARD_POOL], enc, "qa", margin)
    assert [h.text for h in out[0]] == kept and enc.tasks_seen == {"qa"}


def test_encoder_guard_leaves_records_without_a_positive_alone():
    out = encoder_guard([{"query": "a query"}], [[]], [GUARD_POOL], FakeEncoder(), "qa", 0.0)
    assert out == [GUARD_POOL]


def test_mine_file_with_the_encoder_guard(tmp_path):
    texts = ["query the positive", "query alpha twin", "query beta tie", "query gamma near", "query delta far"]
    searcher = Searcher.build(Corpus(texts, list(range(len(texts)))), "bm25", task="qa")
    queries = write_records(tmp_path / "q.json", [{"query": "a query", "pos_index": [0]}])
    settings = MineSettings(start=0, end=10, count=10, guard_margin=0.0)
    mine_file(searcher, queries, tmp_path / "out.json", settings, guard_embedder=FakeEncoder())
    # the positive is found by id (its text comes from the corpus); BM25 may rank the rest in any order
    assert sorted(read_records(tmp_path / "out.json")[0]["neg"]) == ["query delta far", "query gamma near"]
    with pytest.raises(ValueError, match="guard encoder"):
        mine_file(searcher, queries, tmp_path / "out2.json", settings)


def test_mine_corpus_chooses_the_searcher_and_the_guard_as_mine_file_is_given_them(tmp_path):
    """One choice for the command and the pipeline: BM25 searches without the encoder, which still guards."""
    texts = ["query the positive", "query alpha twin", "query beta tie", "query gamma near", "query delta far"]
    corpus = Corpus(texts, list(range(len(texts))))
    queries = write_records(tmp_path / "q.json", [{"query": "a query", "pos_index": [0]}])
    guarded = MineSettings(start=0, end=10, count=10, guard_margin=0.0)
    assert needs_encoder("dense", MineSettings()) and needs_encoder("bm25", guarded)
    assert not needs_encoder("bm25", MineSettings())
    searcher = Searcher.build(corpus, "bm25", task="qa")
    for settings, encoder in ((guarded, FakeEncoder()), (MineSettings(start=0, end=10, count=10), None)):
        mine_file(searcher, queries, tmp_path / "by-hand.json", settings, guard_embedder=encoder)
        assert mine_corpus(corpus, queries, tmp_path / "out.json", settings, embedder=encoder) == 1
        assert read_records(tmp_path / "out.json") == read_records(tmp_path / "by-hand.json")
    assert sorted(read_records(tmp_path / "out.json")[0]["neg"]) == sorted(texts[1:])  # unguarded: every other text
    for method, settings in (("dense", MineSettings()), ("bm25", guarded)):
        with pytest.raises(ValueError, match="needs an encoder"):
            mine_corpus(corpus, queries, tmp_path / "none.json", settings, method=method)
    assert not (tmp_path / "none.json").exists()


def test_mine_command_teacher_guard(tmp_path, capsys):
    scored = write_records(
        tmp_path / "scored.json",
        [
            {"query": "q1", "pos": ["p"], "neg": ["a", "b"], "teacher_scores": [-1.0, -0.5, -2.0]},
            {"query": "q2", "pos": ["p"], "neg": ["c"], "teacher_scores": [0.0, -1.0]},
        ],
    )
    out = tmp_path / "guarded.json"
    assert cli_main(["mine", "--teacher-guard", "--queries", str(scored), "--out", str(out)]) == 0
    assert [r["neg"] for r in read_records(out)] == [["b"], ["c"]]
    assert "dropped 1 negatives" in capsys.readouterr().out
    assert cli_main(["mine", "--queries", str(scored), "--out", str(out)]) == 2
    assert "--corpus is required" in capsys.readouterr().err
