"""DenseIndex: faiss inner-product search with external ids, against brute-force numpy."""

from __future__ import annotations

import numpy as np
import pytest

from llm_embedder.retrieval.dense import DenseIndex

DIM = 16


def _unit(rng, n, dim=DIM):
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute_force(keys, ids, queries, k):
    scores = queries @ keys.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.asarray(ids)[order]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    keys = _unit(rng, 300)
    ids = rng.choice(10**9, size=300, replace=False).astype(np.int64)  # external, non-contiguous
    queries = _unit(rng, 20)
    return keys, ids, queries


def test_flat_equals_brute_force(data):
    keys, ids, queries = data
    index = DenseIndex(DIM)
    index.add(keys, ids)
    assert len(index) == 300
    scores, found = index.search(queries, 10)
    exp_scores, exp_ids = _brute_force(keys, ids, queries, 10)
    assert found.shape == scores.shape == (20, 10)
    assert found.dtype == np.int64
    np.testing.assert_array_equal(found, exp_ids)
    np.testing.assert_allclose(scores, exp_scores, atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # descending


def test_add_in_chunks_and_list_ids(data):
    keys, ids, queries = data
    index = DenseIndex(DIM)
    index.add(keys[:100], ids[:100].tolist())
    index.add(keys[100:], ids[100:])
    _, found = index.search(queries, 5)
    np.testing.assert_array_equal(found, _brute_force(keys, ids, queries, 5)[1])


def test_default_ids_continue(data):
    keys, _, queries = data
    index = DenseIndex(DIM)
    index.add(keys[:10])
    index.add(keys[10:25])
    _, found = index.search(keys[:25], 1)
    np.testing.assert_array_equal(found[:, 0], np.arange(25))


def test_k_larger_than_index(data):
    keys, ids, queries = data
    index = DenseIndex(DIM)
    index.add(keys[:3], ids[:3])
    scores, found = index.search(queries[:2], 5)
    assert found.shape == (2, 5)
    assert set(found[0, :3]) == set(ids[:3])
    assert np.all(found[:, 3:] == -1)


def test_bad_inputs(data):
    keys, ids, queries = data
    index = DenseIndex(DIM)
    with pytest.raises(ValueError, match="shape"):
        index.add(keys[:, :8], ids)
    with pytest.raises(ValueError, match="ids"):
        index.add(keys[:5], ids[:4])
    index.add(keys, ids)
    with pytest.raises(ValueError, match="k must"):
        index.search(queries, 0)
    with pytest.raises(ValueError, match="shape"):
        index.search(queries[0], 3)  # 1-d vector


@pytest.mark.parametrize("factory", ["Nonsense", "IVF4,Bogus", "PQ7"])
def test_bad_factory_string(factory):
    with pytest.raises(ValueError, match="faiss cannot build index"):
        DenseIndex(DIM, factory)


def test_hnsw_recall(data):
    keys, ids, queries = data
    index = DenseIndex(DIM, "HNSW16")
    index.add(keys, ids)
    _, found = index.search(queries, 10)
    _, exact = _brute_force(keys, ids, queries, 10)
    recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact, strict=True)])
    assert recall >= 0.9
    assert set(found.ravel()) <= set(ids)


def test_ivf_trains_and_finds_near_duplicates(data):
    keys, ids, _ = data
    index = DenseIndex(DIM, "IVF4,Flat")
    index.add(keys, ids)  # trained on the first batch: 300 vectors for 4 lists
    assert index.index.is_trained
    assert len(index) == 300
    rng = np.random.default_rng(1)
    noisy = keys[:30] + 0.01 * rng.standard_normal((30, DIM)).astype(np.float32)
    _, found = index.search(noisy, 3)
    # the vector a query was derived from lies in the probed list for nearly every query
    assert np.mean(found[:, 0] == ids[:30]) >= 0.8
    assert set(found[found >= 0].ravel()) <= set(ids)


@pytest.mark.parametrize("factory", ["Flat", "HNSW16", "IVF4,Flat"])
def test_save_load_round_trip(tmp_path, data, factory):
    keys, ids, queries = data
    index = DenseIndex(DIM, factory)
    index.add(keys, ids)
    before = index.search(queries, 7)
    index.save(tmp_path)
    assert (tmp_path / DenseIndex.FILE).is_file()
    assert [p.name for p in tmp_path.iterdir()] == [DenseIndex.FILE]  # no temp files left
    loaded = DenseIndex.load(tmp_path, factory)
    assert loaded.dim == DIM and loaded.factory == factory and len(loaded) == 300
    after = loaded.search(queries, 7)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_array_equal(after[0], before[0])
