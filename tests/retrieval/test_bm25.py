"""BM25Index on bm25s: real passages, no-match queries, short corpora and persistence."""

from __future__ import annotations

import numpy as np
import pytest

from llm_embedder.retrieval.bm25 import DEFAULT_B, DEFAULT_K1, BM25Index


@pytest.fixture(scope="module")
def passages(toy_records):
    """40 distinct real MS MARCO passages from the toy qa file (positives first)."""
    records = toy_records("qa")
    texts = [r["pos"][0] for r in records] + [p for r in records for p in r["neg"][:6]]
    texts = list(dict.fromkeys(texts))[:40]
    assert len(texts) == 40
    return texts


@pytest.fixture(scope="module")
def index(passages):
    index = BM25Index()
    index.add(passages, ids=[1000 + 3 * i for i in range(len(passages))])
    return index


def test_parameters_of_the_original_evaluation():
    assert (DEFAULT_K1, DEFAULT_B) == (0.82, 0.68)
    assert BM25Index().retriever.k1 == 0.82


def test_finds_the_obvious_document(index, passages):
    # a passage is found by its own opening words among 39 other passages on overlapping topics
    target = 7
    query = passages[target][:120]
    scores, ids = index.search([query], 5)
    assert ids[0, 0] == 1000 + 3 * target
    assert scores[0, 0] > scores[0, 1] > 0


def test_scores_equal_lucene_formula(toy_records):
    """Scores on 120 real passages equal Lucene's BM25 (idf = ln(1 + (N - df + 0.5) / (df + 0.5)),
    tf / (tf + k1 (1 - b + b dl / avgdl)), repeated query terms counted again), computed here by hand
    on the same stemmed tokens."""
    import collections
    import math

    from llm_embedder.retrieval.bm25 import tokenize

    records = toy_records("qa")
    texts = list(dict.fromkeys(p for r in records for p in r["pos"] + r["neg"]))[:120]
    queries = [r["query"] for r in records]
    index = BM25Index()
    index.add(texts)
    scores, ids = index.search(queries, len(texts))

    docs = tokenize(texts, index.stemmer)
    n, avgdl = len(docs), np.mean([len(d) for d in docs])
    df = collections.Counter(w for d in docs for w in set(d))
    for row, query in enumerate(tokenize(queries, index.stemmer)):
        expected = np.zeros(n)
        for j, doc in enumerate(docs):
            tf = collections.Counter(doc)
            norm = DEFAULT_K1 * (1 - DEFAULT_B + DEFAULT_B * len(doc) / avgdl)
            expected[j] = sum(
                math.log(1 + (n - df[w] + 0.5) / (df[w] + 0.5)) * tf[w] / (tf[w] + norm) for w in query if w in tf
            )
        got = np.zeros(n)
        found = ids[row] >= 0
        got[ids[row][found]] = scores[row][found]
        np.testing.assert_allclose(got, expected, atol=1e-4)
        assert found.sum() == (expected > 0).sum()


def test_stemming_and_stop_words():
    index = BM25Index()
    index.add(["The cats were running quickly", "A dog sleeps", "Cars and trucks"])
    _, ids = index.search(["cat runs"], 3)
    assert ids[0, 0] == 0  # cats/cat, running/runs share a stem
    assert list(ids[0, 1:]) == [-1, -1]
    scores, ids = index.search(["the and a of"], 3)  # only (Lucene) stop words
    assert np.all(ids == -1) and np.all(scores == 0)


def test_query_without_matching_term(index):
    scores, ids = index.search(["xylophone zeppelin quokka"], 4)
    assert ids.shape == (1, 4)
    assert np.all(ids == -1)
    assert np.all(scores == 0)


def test_k_larger_than_corpus():
    index = BM25Index()
    index.add(["red apple pie", "green apple", "blue sky"], ids=[5, 9, 2])
    scores, ids = index.search(["apple", "sky", "nothing"], 10)
    assert ids.shape == scores.shape == (3, 10)
    assert set(ids[0, :2]) == {5, 9} and np.all(ids[0, 2:] == -1)
    assert ids[1, 0] == 2 and np.all(ids[1, 1:] == -1)
    assert np.all(ids[2] == -1)
    assert scores.dtype == np.float32 and ids.dtype == np.int64


def test_each_query_is_scored_independently(index, passages):
    queries = [passages[3][:100], passages[20][:100], "xylophone"]
    together = index.search(queries, 5)
    for row, query in enumerate(queries):
        alone = index.search([query], 5)
        np.testing.assert_array_equal(together[1][row], alone[1][0])
        np.testing.assert_allclose(together[0][row], alone[0][0], rtol=1e-6)


def test_empty_query_list_and_bad_k(index):
    scores, ids = index.search([], 3)
    assert scores.shape == ids.shape == (0, 3)
    with pytest.raises(ValueError, match="k must"):
        index.search(["x"], 0)


def test_built_once(index):
    with pytest.raises(RuntimeError, match="once"):
        index.add(["more text"])


def test_save_load_round_trip(tmp_path, index, passages):
    queries = [passages[i][:80] for i in (0, 11, 25, 39)] + ["xylophone"]
    before = index.search(queries, 8)
    index.save(tmp_path)
    assert (tmp_path / BM25Index.DIR / BM25Index.IDS_FILE).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [BM25Index.DIR]  # no temp folders left
    loaded = BM25Index.load(tmp_path)
    assert len(loaded) == len(index) == 40
    np.testing.assert_array_equal(loaded.ids, index.ids)
    after = loaded.search(queries, 8)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_array_equal(after[0], before[0])
    assert loaded.retriever.k1 == DEFAULT_K1 and loaded.retriever.b == DEFAULT_B
