"""Streamed, sharded, resumable index build: equal to the in-memory build, to an uninterrupted
build after a kill, and to itself run as two torchrun ranks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import faiss
import numpy as np
import pytest
from processes import CLI_MODULE, cli, subprocess_env, torchrun

from llm_embedder.errors import InputError
from llm_embedder.retrieval.build import BuildSettings, build_dense_index, work_folder
from llm_embedder.retrieval.corpus import Corpus
from llm_embedder.retrieval.dense import DenseIndex, expand_factory
from llm_embedder.retrieval.searcher import META_FILE, Searcher


@pytest.fixture(scope="module")
def corpus_file(toy_records, tmp_path_factory) -> Path:
    """About 60 real passages and tool descriptions, ids 3, 8, 13, ..."""
    texts = [t for task in ("qa", "tool", "convsearch") for r in toy_records(task) for t in r["pos"] + r["neg"]]
    texts = list(dict.fromkeys(t for t in texts if t.strip()))[:60]
    assert len(texts) >= 40
    file = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    file.write_text("".join(json.dumps({"doc": 5 * i + 3, "text": t}) + "\n" for i, t in enumerate(texts)))
    return file


@pytest.fixture(scope="module")
def queries(toy_records):
    return [r["query"] for task in ("qa", "tool") for r in toy_records(task)[:3]]


def settings(**changes) -> BuildSettings:
    return BuildSettings(**{"task": "qa", "id_field": "doc", "shard_size": 7, **changes})


def _texts(folder) -> bytes:
    return (Searcher.folder(folder) / "corpus.jsonl").read_bytes()


def index_bytes(folder: Path) -> bytes:
    return (Searcher.folder(folder) / DenseIndex.FILE).read_bytes()


def test_streamed_build_equals_in_memory_build(corpus_file, tiny_embedder, queries, tmp_path):
    out = tmp_path / "index"
    count = build_dense_index(corpus_file, out, tiny_embedder, settings(), model="tiny", show_progress=False)
    corpus = Corpus.from_jsonl(corpus_file, id_field="doc")
    assert count == len(corpus)
    assert not work_folder(out).exists()  # the shards are gone once the index is written
    streamed = Searcher.load(out, embedder=tiny_embedder)
    in_memory = Searcher.build(corpus, "dense", task="qa", embedder=tiny_embedder)
    assert streamed.corpus.ids == corpus.ids and streamed.corpus.texts == corpus.texts
    # Same vectors (batches differ between 7-row shards and one call: allow float rounding).
    for doc_id in corpus.ids[::9]:
        np.testing.assert_allclose(
            streamed.index.index.reconstruct(doc_id), in_memory.index.index.reconstruct(doc_id), atol=1e-5
        )
    got, want = streamed.search(queries, k=5), in_memory.search(queries, k=5)
    assert [[h.id for h in row] for row in got] == [[h.id for h in row] for row in want]
    meta = json.loads((Searcher.folder(out) / META_FILE).read_text())
    assert meta["backend"] == "torch" and meta["build"]["shard_size"] == 7 and meta["count"] == count


def test_killed_build_resumes_from_finished_shards(corpus_file, tiny_embedder, tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    build_dense_index(corpus_file, whole, tiny_embedder, settings(), show_progress=False)

    out = tmp_path / "resumed"
    calls = []
    real = type(tiny_embedder).encode_keys

    def dies_on_third(self, texts, task, **kw):
        calls.append(len(texts))
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed while encoding shard 2
        return real(self, texts, task, **kw)

    monkeypatch.setattr(type(tiny_embedder), "encode_keys", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        build_dense_index(corpus_file, out, tiny_embedder, settings(), show_progress=False)
    assert not out.exists()
    assert sorted(p.name for p in work_folder(out).glob("*.json")) == ["000000.json", "000001.json", "build.json"]

    calls.clear()
    monkeypatch.setattr(
        type(tiny_embedder),
        "encode_keys",
        lambda self, texts, task, **kw: (calls.append(len(texts)), real(self, texts, task, **kw))[1],
    )
    build_dense_index(corpus_file, out, tiny_embedder, settings(), show_progress=False)
    shards = -(-sum(1 for _ in corpus_file.open()) // 7)
    assert len(calls) == shards - 2  # shards 0 and 1 were not encoded again
    assert index_bytes(out) == index_bytes(whole)
    assert _texts(out) == _texts(whole)


def test_other_settings_start_afresh(corpus_file, tiny_embedder, tmp_path, monkeypatch):
    out = tmp_path / "index"
    work = work_folder(out)
    work.mkdir()
    (work / "build.json").write_text(json.dumps({"digest": "of another model"}))
    (work / "000000.json").write_text(json.dumps({"digest": "stale", "count": 7}))
    build_dense_index(corpus_file, out, tiny_embedder, settings(), show_progress=False)
    fresh = tmp_path / "fresh"
    build_dense_index(corpus_file, fresh, tiny_embedder, settings(), show_progress=False)
    assert index_bytes(out) == index_bytes(fresh)


def test_foreign_work_folder_is_left_alone(corpus_file, tiny_embedder, tmp_path):
    out = tmp_path / "index"
    work_folder(out).mkdir()
    (work_folder(out) / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an index build"):
        build_dense_index(corpus_file, out, tiny_embedder, settings(), show_progress=False)
    assert (work_folder(out) / "notes.txt").read_text() == "mine"


def test_duplicate_ids_are_an_input_error(tiny_embedder, tmp_path):
    file = tmp_path / "dup.jsonl"
    file.write_text("".join(json.dumps({"doc": i % 5, "text": f"passage {i}"}) + "\n" for i in range(9)))
    with pytest.raises(InputError, match="not unique"):
        build_dense_index(file, tmp_path / "index", tiny_embedder, settings(), show_progress=False)


def test_ivf_preset_trains_on_sample_and_loads_mmap(corpus_file, tiny_embedder, queries, tmp_path):
    out = tmp_path / "ivf"
    build_dense_index(
        corpus_file,
        out,
        tiny_embedder,
        settings(factory="ivf", train_size=40, search_params={"nprobe": 64}),
        show_progress=False,
    )
    meta = json.loads((Searcher.folder(out) / META_FILE).read_text())
    n = meta["count"]
    assert meta["factory"] == f"IVF{int(4 * n**0.5)},Flat" and meta["search_params"] == {"nprobe": 64}
    loaded = Searcher.load(out, embedder=tiny_embedder)
    mapped = Searcher.load(out, embedder=tiny_embedder, mmap=True)
    inner = faiss.downcast_index(loaded.index.index.index)
    assert inner.nprobe == 64  # the saved search parameter applies on load
    # nprobe >= nlist visits every list: exactly the Flat ranking.
    flat = Searcher.load(_flat(corpus_file, tiny_embedder, tmp_path), embedder=tiny_embedder)
    want = [[h.id for h in row] for row in flat.search(queries, k=5)]
    assert [[h.id for h in row] for row in loaded.search(queries, k=5)] == want
    assert [[h.id for h in row] for row in mapped.search(queries, k=5)] == want


def _flat(corpus_file, embedder, tmp_path) -> Path:
    out = tmp_path / "flat"
    build_dense_index(corpus_file, out, embedder, settings(), show_progress=False)
    return out


@pytest.mark.parametrize(
    ("preset", "count", "expected"),
    [("ivf", 10_000, "IVF400,Flat"), ("ivf-pq", 10**6, "IVF4000,PQ48"), ("hnsw", 5, "HNSW32"), ("Flat", 5, "Flat")],
)
def test_expand_factory(preset, count, expected):
    assert expand_factory(preset, count, 384) == expected


@pytest.mark.slow
def test_two_torchrun_ranks_equal_one_process(corpus_file, tiny_encoder_dir, tmp_path):
    args = [
        "index",
        "build",
        "--corpus",
        str(corpus_file),
        "--id-field",
        "doc",
        "--shard-size",
        "7",
        "--model",
        str(tiny_encoder_dir),
        "--backend",
        "torch",
        "--dtype",
        "float32",
        "--device",
        "cpu",
    ]
    env = subprocess_env()
    one = subprocess.run(
        cli(*args, "--out", str(tmp_path / "one")), env=env, capture_output=True, text=True, timeout=300
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two = torchrun(2, [*CLI_MODULE, *args, "--out", str(tmp_path / "two")], env, timeout=300)
    assert two.returncode == 0, (two.stdout + two.stderr)[-3000:]
    assert index_bytes(tmp_path / "two") == index_bytes(tmp_path / "one")
    assert _texts(tmp_path / "two") == _texts(tmp_path / "one")
