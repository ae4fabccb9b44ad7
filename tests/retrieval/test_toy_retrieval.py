"""Real-data retrieval check on the released toy records (integration: uses minilm).

For qa, tool and convsearch the corpus is the records' own candidates (positives and hard negatives,
deduplicated); a query succeeds when one of its labelled positives is in the top 10.  Run with ``-s``
to see the counts.  Dense indexing encodes every positive and the first hard negatives of each record
(the hardest part of the pool) to keep the suite fast on two CPU cores; BM25 indexes everything.
"""

from __future__ import annotations

import pytest

from llm_embedder.retrieval.corpus import Corpus
from llm_embedder.retrieval.searcher import Searcher

pytestmark = pytest.mark.integration

TASKS = ("qa", "tool", "convsearch")
DENSE_NEGATIVES = {"qa": 8, "tool": 3, "convsearch": 6}
# BM25 must find a majority for qa and tool.  The QReCC (convsearch) negatives were mined to share
# the conversation's words, and its queries are whole conversations: BM25 ranks the positive in the
# top 10 for exactly 4 of 8 (one more at rank 11), the same as an independent Lucene BM25 computes
# (see test_bm25.py::test_scores_equal_lucene_formula), so half is the honest bar there.
BM25_MIN = {"qa": 5, "tool": 5, "convsearch": 4}


def _success(searcher, records, k=10):
    results = searcher.search([r["query"] for r in records], k=k)
    found = 0
    for hits, record in zip(results, records, strict=True):
        found += bool({h.text for h in hits} & {p.strip() for p in record["pos"]})
    return found


def _corpus(records, negatives=None):
    texts = [t for r in records for t in r["pos"] + r["neg"][:negatives]]
    texts = list(dict.fromkeys(t.strip() for t in texts))
    return Corpus(texts, list(range(len(texts))))


@pytest.mark.parametrize("task", TASKS)
def test_dense_minilm_finds_positives(task, toy_records, minilm):
    records = toy_records(task)
    assert len(records) == 8
    corpus = _corpus(records, DENSE_NEGATIVES[task])
    searcher = Searcher.build(corpus, "dense", task=task, embedder=minilm, model="minilm")
    hits = _success(searcher, records)
    print(f"\n[toy {task}] dense minilm: positive in top-10 for {hits}/8 queries (corpus {len(corpus)})")
    assert hits >= 5


@pytest.mark.parametrize("task", TASKS)
def test_bm25_finds_positives(task, toy_records):
    records = toy_records(task)
    corpus = _corpus(records)
    searcher = Searcher.build(corpus, "bm25", task=task)
    hits = _success(searcher, records)
    print(f"\n[toy {task}] bm25: positive in top-10 for {hits}/8 queries (corpus {len(corpus)})")
    assert hits >= BM25_MIN[task]
