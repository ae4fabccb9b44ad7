"""Evaluation retrievers: none, random, recency, BM25 and dense, against brute force, plus the
dense corpus-embedding cache."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from llm_embedder.evaluation.retrievers import (
    BM25Retriever,
    DenseRetriever,
    NoRetriever,
    NotApplicable,
    RandomRetriever,
    RecencyRetriever,
    check_spec,
    make_retriever,
)
from llm_embedder.retrieval.bm25 import DEFAULT_B, DEFAULT_K1, BM25Index, tokenize
from llm_embedder.retrieval.corpus import Corpus

TEXTS = [
    "the cat sat on the mat",
    "the quick brown fox jumps over the lazy dog",
    "paris is the capital city of france",
    "music and song: a singer with a band",
    "dogs and cats and a river bank",
    "money in the bank by the river",
    "the sun the moon and the stars",
    "water fire earth and air",
    "a dog sat by the river with a cat",
]
IDS = [10 * i + 3 for i in range(len(TEXTS))]  # ids are not row numbers
QUERIES = ["cat on a mat", "river bank money", "capital of france", "dog river", "nothing matches zzz"]
POOLS = [TEXTS[:4], TEXTS[2:9], TEXTS[5:6], []]


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus(list(TEXTS), list(IDS))


# ---------------------------------------------------------------------------- none, random, recency
def test_none_retrieves_nothing(corpus):
    r = NoRetriever()
    assert r.search("qa", QUERIES, corpus, 3) == [[] for _ in QUERIES]
    assert r.rank("chat", QUERIES[:4], POOLS, 2) == [[], [], [], []]


def test_random_is_seeded_in_range_and_distinct(corpus):
    a, b = RandomRetriever(seed=7), RandomRetriever(seed=7)
    hits = a.search("qa", QUERIES, corpus, 4)
    assert hits == b.search("qa", QUERIES, corpus, 4)  # a rerun picks the same
    assert hits == a.search("qa", QUERIES, corpus, 4)
    for row in hits:
        assert len(row) == 4 and len(set(row)) == 4 and set(row) <= set(IDS)
    assert RandomRetriever(seed=8).search("qa", QUERIES, corpus, 4) != hits
    assert len(a.search("qa", ["q"], corpus, 100)[0]) == len(TEXTS)  # k beyond the corpus
    picks = a.rank("chat", QUERIES[:4], POOLS, 3)
    assert picks == b.rank("chat", QUERIES[:4], POOLS, 3)
    for pick, pool in zip(picks, POOLS, strict=True):
        assert len(pick) == min(3, len(pool)) and len(set(pick)) == len(pick)
        assert all(0 <= j < len(pool) for j in pick)


def test_recency_newest_first_and_not_for_corpora(corpus):
    r = RecencyRetriever()
    assert r.rank("chat", QUERIES[:4], POOLS, 2) == [[3, 2], [6, 5], [0], []]
    assert r.rank("chat", ["q"], [["a", "b"]], 5) == [[1, 0]]
    with pytest.raises(NotApplicable, match="pools"):
        r.search("qa", QUERIES, corpus, 3)


# ---------------------------------------------------------------------------- BM25
def brute_bm25(query: str, texts: list[str]) -> list[float]:
    """Lucene BM25 (the bm25s default) computed term by term over the same tokens."""
    stemmer = BM25Index().stemmer
    docs = tokenize(list(texts), stemmer)
    (terms,) = tokenize([query], stemmer)
    n, avg = len(docs), sum(len(d) for d in docs) / len(docs)
    scores = []
    for doc in docs:
        tf, score = Counter(doc), 0.0
        for term in set(terms):
            df = sum(term in d for d in docs)
            if tf[term]:
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                score += idf * tf[term] / (tf[term] + DEFAULT_K1 * (1 - DEFAULT_B + DEFAULT_B * len(doc) / avg))
        scores.append(score)
    return scores


def assert_ranks_like(found: list[int], scores: list[float], k: int):
    """``found`` (positions) holds the top-k positive scores in order (ties in any order)."""
    best = sorted((s for s in scores if s > 0), reverse=True)[:k]
    assert [scores[j] for j in found] == pytest.approx(best, rel=1e-5)


def test_bm25_search_and_rank_match_brute_force(corpus):
    r = BM25Retriever()
    hits = r.search("qa", QUERIES, corpus, 3)
    for query, row in zip(QUERIES, hits, strict=True):
        assert_ranks_like([IDS.index(i) for i in row], brute_bm25(query, TEXTS), 3)
    assert hits[-1] == []  # no shared term: nothing, rather than arbitrary documents
    picks = r.rank("chat", QUERIES[:4], POOLS, 2)
    for query, pool, pick in zip(QUERIES[:4], POOLS, picks, strict=True):
        if pool:
            assert_ranks_like(pick, brute_bm25(query, pool), 2)
        else:
            assert pick == []


def test_bm25_reindexes_a_new_corpus():
    """Regression: the index was cached by id(corpus), which a new corpus reuses once the old one is freed."""
    r = BM25Retriever()
    first = Corpus(["cats sat on the mat", "dogs run in the river"], [0, 1])
    assert r.search("qa", ["river dogs"], first, 2) == [[1]]
    del first
    second = Corpus(["the river bank money", "cats and dogs"], [0, 1])
    assert sorted(r.search("qa", ["river dogs"], second, 2)[0]) == [0, 1]


# ---------------------------------------------------------------------------- dense
class CountingEmbedder:
    """Wraps the shared tiny embedder and counts key encodings (the shared fixture stays untouched)."""

    def __init__(self, inner):
        self.inner = inner
        self.key_calls = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode_keys(self, texts, task, **kwargs):
        self.key_calls += 1
        self.key_texts = len(texts)
        return self.inner.encode_keys(texts, task=task, **kwargs)


def test_dense_search_and_rank_match_brute_force(corpus, tiny_embedder):
    r = DenseRetriever(tiny_embedder, "tiny")
    q = tiny_embedder.encode_queries(QUERIES, task="qa")
    keys = tiny_embedder.encode_keys(TEXTS, task="qa")
    hits = r.search("qa", QUERIES, corpus, 4)
    for i, row in enumerate(hits):
        scores = keys @ q[i]
        assert [IDS.index(j) for j in row] == np.argsort(-scores, kind="stable")[:4].tolist()
    assert len(r.search("qa", QUERIES[:1], corpus, 50)[0]) == len(TEXTS)
    picks = r.rank("chat", QUERIES[:4], POOLS, 2)
    qc = tiny_embedder.encode_queries(QUERIES[:4], task="chat")
    for i, (pool, pick) in enumerate(zip(POOLS, picks, strict=True)):
        if not pool:
            assert pick == []
            continue
        scores = tiny_embedder.encode_keys(pool, task="chat") @ qc[i]
        assert pick == np.argsort(-scores, kind="stable")[:2].tolist()


def test_dense_rank_encodes_a_shared_pool_once(tiny_embedder):
    counting = CountingEmbedder(tiny_embedder)
    r = DenseRetriever(counting, "tiny")
    pool = TEXTS[1:7]
    shared = r.rank("lrlm", QUERIES[:4], [pool] * 4, 3)  # lrlm: every target chunk ranks the same chunks
    assert counting.key_calls == 1 and counting.key_texts == len(pool)
    alone = [DenseRetriever(tiny_embedder, "tiny").rank("lrlm", [q], [pool], 3)[0] for q in QUERIES[:4]]
    assert shared == alone


def test_dense_corpus_cache_written_once_and_reused(corpus, tiny_embedder, tmp_path):
    cache = tmp_path / "cache"
    first = CountingEmbedder(tiny_embedder)
    hits = DenseRetriever(first, "tiny", cache).search("qa", QUERIES, corpus, 3)
    files = list(cache.glob("*.npy"))
    assert first.key_calls == 1 and len(files) == 1 and files[0].name.startswith("qa-")
    written = files[0].stat().st_mtime_ns

    second = CountingEmbedder(tiny_embedder)  # a new run: a fresh retriever on the same cache
    again = DenseRetriever(second, "tiny", cache)
    assert again.search("qa", QUERIES, corpus, 3) == hits
    assert again.search("qa", QUERIES[:2], corpus, 3) == hits[:2]
    assert second.key_calls == 0
    assert list(cache.glob("*.npy")) == files and files[0].stat().st_mtime_ns == written

    # Another corpus, task or model is another cache entry.
    again.search("qa", QUERIES, Corpus(TEXTS[:5], IDS[:5]), 3)
    again.search("tool", QUERIES, corpus, 3)
    DenseRetriever(second, "other-model", cache).search("qa", QUERIES, corpus, 3)
    assert second.key_calls == 3 and len(list(cache.glob("*.npy"))) == 4


def test_dense_cache_is_not_reused_for_retrained_weights(corpus, tiny_encoder_dir, tmp_path):
    """A model retrained into the same folder has the same name but other weights."""
    from llm_embedder.models.embedder import Embedder

    cache = tmp_path / "cache"
    embedder = Embedder.from_pretrained(str(tiny_encoder_dir), device="cpu")
    DenseRetriever(embedder, "folder", cache).search("qa", QUERIES, corpus, 3)
    with torch.no_grad():
        next(embedder.model.parameters()).add_(0.01)  # as one training step would
    counting = CountingEmbedder(embedder)
    retrained = DenseRetriever(counting, "folder", cache)
    hits = retrained.search("qa", QUERIES, corpus, 3)
    assert counting.key_calls == 1 and len(list(cache.glob("*.npy"))) == 2
    fresh = DenseRetriever(embedder, "folder").search("qa", QUERIES, corpus, 3)
    assert hits == fresh


# ---------------------------------------------------------------------------- specs
def test_make_retriever_specs(tiny_encoder_dir):
    assert isinstance(make_retriever("none"), NoRetriever)
    assert isinstance(make_retriever("random", seed=3), RandomRetriever)
    assert isinstance(make_retriever("recency"), RecencyRetriever)
    assert isinstance(make_retriever("bm25"), BM25Retriever)
    dense = make_retriever(f"dense:{tiny_encoder_dir}", device="cpu")
    assert isinstance(dense, DenseRetriever) and dense.name == f"dense:{tiny_encoder_dir}"
    for bad in ("bm26", "dense:", "dense", "", "Random"):
        with pytest.raises(ValueError, match="unknown retriever"):
            make_retriever(bad)
        with pytest.raises(ValueError, match=r"known: none, random, recency, bm25, dense:<model>"):
            check_spec(bad)


def test_dense_key_max_length_overrides_the_task_budget(tiny_embedder, tmp_path):
    """``search(..., key_max_length=n)`` encodes the documents cut to n tokens (the MMLU/PopQA
    setting), and the cache keeps the two budgets apart."""
    corpus = Corpus(list(TEXTS), list(IDS))
    r = DenseRetriever(tiny_embedder, "tiny", cache_dir=tmp_path)
    short = r._corpus_vectors("qa", corpus, key_max_length=12)  # the instruction and a few words
    assert np.array_equal(short, tiny_embedder.encode_keys(TEXTS, task="qa", max_length=12))
    full = r._corpus_vectors("qa", corpus)
    assert np.array_equal(full, tiny_embedder.encode_keys(TEXTS, task="qa"))
    assert not np.allclose(short, full)
    assert len(list(tmp_path.glob("qa-*.npy"))) == 2
    q = tiny_embedder.encode_queries(QUERIES, task="qa")
    hits = DenseRetriever(tiny_embedder, "tiny").search("qa", QUERIES, corpus, 3, key_max_length=12)
    for v, row in zip(q, hits, strict=True):  # the top-3 scores of the cut keys (ties in any order)
        scores = short @ v
        assert [scores[IDS.index(i)] for i in row] == pytest.approx(sorted(scores, reverse=True)[:3], abs=1e-5)
