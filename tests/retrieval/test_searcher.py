"""Searcher: build, search, save and load, for dense (tiny random encoder) and BM25."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llm_embedder.errors import InputError
from llm_embedder.retrieval.corpus import Corpus
from llm_embedder.retrieval.dense import DenseIndex
from llm_embedder.retrieval.searcher import META_FILE, TEXTS_FILE, Hit, Searcher


@pytest.fixture(scope="module")
def corpus(toy_records):
    """30 real tool descriptions and qa passages with external, non-contiguous ids."""
    texts = [r["pos"][0] for r in toy_records("qa")] + [t for r in toy_records("tool") for t in r["pos"][:3]]
    texts = list(dict.fromkeys(texts))[:30]
    assert len(texts) == 30
    return Corpus(texts, [7 * i + 100 for i in range(len(texts))])


@pytest.fixture(scope="module")
def queries(toy_records):
    return [r["query"] for r in toy_records("qa")[:4]] + [r["query"] for r in toy_records("tool")[:2]]


@pytest.fixture(scope="module")
def dense(corpus, tiny_embedder, tiny_encoder_dir):
    return Searcher.build(corpus, "dense", task="tool", embedder=tiny_embedder, model=str(tiny_encoder_dir))


@pytest.fixture(scope="module")
def bm25(corpus):
    return Searcher.build(corpus, "bm25", task="qa")


def _as_tuples(results):
    return [[(h.id, round(h.score, 5), h.text) for h in hits] for hits in results]


def test_dense_search_uses_task_instructions(dense, corpus, queries, tiny_embedder):
    assert dense.method == "dense" and dense.task == "tool"
    results = dense.search(queries, k=5)
    # brute force with the tool instructions on both sides
    q = tiny_embedder.encode_queries(queries, "tool")
    k = tiny_embedder.encode_keys(corpus.texts, "tool")
    sims = q @ k.T
    position = {doc_id: j for j, doc_id in enumerate(corpus.ids)}
    for hits, row in zip(results, sims, strict=True):
        assert len(hits) == 5
        assert all(isinstance(h, Hit) for h in hits)
        # the top-5 scores of brute force, each hit scored as brute force scores its id (robust to ties)
        np.testing.assert_allclose([h.score for h in hits], np.sort(row)[::-1][:5], atol=1e-5)
        for h in hits:
            assert h.score == pytest.approx(row[position[h.id]], abs=1e-5)
            assert h.text == corpus.texts[position[h.id]]
    # with well-separated scores the ranking itself is brute force's
    assert [h.id for h in results[0]][:1] == [corpus.ids[int(np.argmax(sims[0]))]]


def test_bm25_search_returns_texts(bm25, corpus):
    assert bm25.method == "bm25"
    results = bm25.search([corpus.texts[4][:150], "xylophone quokka"], k=3)
    assert results[0][0].id == corpus.ids[4]
    assert results[0][0].text == corpus.texts[4]
    assert results[0][0].score > 0
    assert results[1] == []  # no matching term: no hits rather than -1 entries


def test_k_larger_than_corpus_drops_fillers(dense, corpus):
    hits = dense.search(["hello world"], k=50)[0]
    assert len(hits) == len(corpus)
    assert sorted(h.id for h in hits) == sorted(corpus.ids)


@pytest.mark.parametrize("kind", ["dense", "bm25"])
def test_save_load_answers_identically(tmp_path, request, queries, kind):
    searcher = request.getfixturevalue(kind)
    folder = tmp_path / "searcher"
    searcher.save(folder)
    meta = json.loads((Searcher.folder(folder) / META_FILE).read_text())
    assert meta["method"] == kind and meta["task"] == searcher.task and meta["count"] == 30
    rows = [json.loads(line) for line in (Searcher.folder(folder) / TEXTS_FILE).read_text().splitlines()]
    assert [r["id"] for r in rows] == searcher.corpus.ids
    assert sorted(p.name for p in tmp_path.iterdir()) == ["searcher"]  # no temp folder left

    loaded = Searcher.load(folder)  # dense: the embedder is reloaded from the saved model path
    assert loaded.method == kind and loaded.task == searcher.task
    assert loaded.corpus.texts == searcher.corpus.texts and loaded.corpus.ids == searcher.corpus.ids
    assert _as_tuples(loaded.search(queries, k=6)) == _as_tuples(searcher.search(queries, k=6))


def test_dense_load_with_given_embedder(tmp_path, dense, queries, tiny_embedder):
    dense.save(tmp_path / "s")
    loaded = Searcher.load(tmp_path / "s", embedder=tiny_embedder)
    assert loaded.embedder is tiny_embedder
    assert isinstance(loaded.index, DenseIndex) and loaded.index.factory == "Flat"
    assert _as_tuples(loaded.search(queries, k=4)) == _as_tuples(dense.search(queries, k=4))


def test_other_factory_is_saved(tmp_path, corpus, tiny_embedder, tiny_encoder_dir, queries):
    searcher = Searcher.build(corpus, "dense", task="qa", embedder=tiny_embedder, factory="HNSW8")
    searcher.save(tmp_path / "s")
    assert Searcher.read_meta(tmp_path / "s")["factory"] == "HNSW8"
    loaded = Searcher.load(tmp_path / "s", embedder=tiny_embedder)
    assert loaded.index.factory == "HNSW8"
    assert _as_tuples(loaded.search(queries, k=3)) == _as_tuples(searcher.search(queries, k=3))


def test_resave_replaces_previous_folder(tmp_path, dense, bm25):
    folder = tmp_path / "s"
    dense.save(folder)
    bm25.save(folder)
    assert Searcher.read_meta(folder)["method"] == "bm25"
    assert not list(folder.rglob(DenseIndex.FILE))  # the dense version is gone
    assert Searcher.load(folder).method == "bm25"


@pytest.mark.parametrize("kind", ["dense", "bm25"])
def test_failed_save_leaves_no_folder(tmp_path, request, monkeypatch, kind):
    searcher = request.getfixturevalue(kind)

    def broken(self, directory):
        (directory / "partial").write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(type(searcher.index), "save", broken)
    with pytest.raises(OSError, match="disk full"):
        searcher.save(tmp_path / "s")
    assert list(tmp_path.iterdir()) == []


def test_failed_save_keeps_previous_folder(tmp_path, bm25, monkeypatch):
    bm25.save(tmp_path / "s")
    before = sorted(p.name for p in (tmp_path / "s").rglob("*"))
    monkeypatch.setattr(type(bm25.index), "save", lambda self, d: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        bm25.save(tmp_path / "s")
    assert sorted(p.name for p in (tmp_path / "s").rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_not_a_searcher_folder(tmp_path):
    with pytest.raises(InputError, match="not a searcher folder") as err:
        Searcher.load(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_build_errors(corpus):
    with pytest.raises(ValueError, match="unknown retrieval method"):
        Searcher.build(corpus, "splade")
    with pytest.raises(ValueError, match="embedder"):
        Searcher.build(corpus, "dense")
    with pytest.raises(ValueError, match="embedder"):
        Searcher(corpus, DenseIndex(8), "qa")


def test_dense_folder_without_model_name_does_not_load_another_model(tmp_path, corpus, tiny_embedder):
    """Built with an in-memory embedder and no model name, the folder cannot know its encoder: loading it
    without an embedder must fail clearly, not silently encode queries with the default model (minilm,
    another vector space and dimension)."""
    Searcher.build(corpus, "dense", embedder=tiny_embedder).save(tmp_path / "s")
    with pytest.raises(ValueError, match="embedder|model"):
        Searcher.load(tmp_path / "s")
