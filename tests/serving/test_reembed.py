"""``collections reembed``: every record re-embedded with a new model, switched at once; a failure at any
point leaves the old vectors (and a rerun resumes); ``serve`` with the new model then serves the same records."""

from __future__ import annotations

import sqlite3
import subprocess
import threading

import httpx
import numpy as np
import pytest
from processes import cli, subprocess_env
from serving_helpers import free_port, start_server, stop_server

from llm_embedder import Embedder
from llm_embedder.serving.collections import Collections, Conflict
from llm_embedder.serving.engine import Engine
from llm_embedder.serving.reembed import STAGING_FILE, reembed
from llm_embedder.serving.stores.sqlite_faiss import DB_FILE, SqliteFaissStore

KW = {"pooling": "cls", "instructions": True, "device": "cpu"}
TURNS = ["i like jazz and music", "the cat sat on the mat", "paris is the capital of france", "hello world"]


@pytest.fixture(scope="module")
def new_model_dir(tiny_encoder_dir, tmp_path_factory):
    """The tiny encoder with other weights: a model whose vectors differ."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = tmp_path_factory.mktemp("new-model") / "tiny2"
    model = AutoModel.from_pretrained(tiny_encoder_dir)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_encoder_dir).save_pretrained(folder)
    return folder


@pytest.fixture
def filled(tiny_embedder, tmp_path):
    """A data dir filled by the old model: memory (two sessions), examples, knowledge."""
    data = tmp_path / "data"
    with Engine(tiny_embedder) as engine:
        c = Collections(SqliteFaissStore(data), engine)
        c.create("mem", "memory")
        c.add("mem", TURNS[:2], session="a")
        c.add("mem", TURNS[2:], session="b")
        c.create("ex", "examples")
        c.add("ex", TURNS)
        c.create("kb", "knowledge")
        c.add("kb", [{"id": "doc", "text": " ".join(TURNS * 40)}])
        c.close()
    return data


def _vectors(data):
    with sqlite3.connect(data / DB_FILE) as db:
        return {seq: bytes(v) for seq, v in db.execute("SELECT seq, vector FROM records")}


def _fingerprints(data):
    with _opened(data) as store:
        return {s.name: s.fingerprint for s in store.specs()}


class _opened:
    def __init__(self, data):
        self.store = SqliteFaissStore(data)

    def __enter__(self):
        return self.store

    def __exit__(self, *exc):
        self.store.close()


def test_reembed_switches_every_collection_and_search_matches_the_new_model(filled, new_model_dir, tiny_embedder):
    new = Embedder.from_pretrained(new_model_dir, **KW)
    old_vectors = _vectors(filled)
    summary = reembed(filled, new, model_name="tiny2", progress=False)
    assert "records of 3 collections now hold vectors of tiny2" in summary
    assert not (filled / STAGING_FILE).exists()
    new_vectors = _vectors(filled)
    assert new_vectors.keys() == old_vectors.keys() and all(new_vectors[s] != old_vectors[s] for s in old_vectors)
    with Engine(new, model_name="tiny2") as engine:
        c = Collections(SqliteFaissStore(filled), engine)
        try:
            assert {s.fingerprint for s in c.list()} == {engine.fingerprint}
            hits = c.search("ex", "music", k=4)
            # the ranking is the new model's, computed without the store
            q = new.encode_queries(["music"], "icl")[0]
            order = np.argsort(-(new.encode_keys(TURNS, "icl") @ q), kind="stable")
            assert [h.text for h in hits] == [TURNS[i] for i in order]
            assert {h.text for h in c.search("mem", "cat", k=5, session="b")} == set(TURNS[2:])
        finally:
            c.close()
    with Engine(tiny_embedder) as engine:  # the old model is now the stranger
        c = Collections(SqliteFaissStore(filled), engine)
        with pytest.raises(Conflict):
            c.search("ex", "music")
        c.close()
    assert "nothing to do" in reembed(filled, new, progress=False)


def test_a_failure_at_any_point_leaves_the_old_data_dir_and_a_rerun_resumes(filled, new_model_dir, monkeypatch):
    new = Embedder.from_pretrained(new_model_dir, **KW)
    before_vectors, before_specs = _vectors(filled), _fingerprints(filled)
    calls = []
    encode = new.encode_keys

    def failing_on_second(texts, task, **kw):
        calls.append(len(texts))
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a Ctrl-C (or a kill) in the middle of embedding
        return encode(texts, task, **kw)

    monkeypatch.setattr(new, "encode_keys", failing_on_second)
    with pytest.raises(KeyboardInterrupt):
        reembed(filled, new, progress=False)
    assert _vectors(filled) == before_vectors and _fingerprints(filled) == before_specs

    def fail_at_commit():
        raise RuntimeError("killed at the switch")

    monkeypatch.setattr(new, "encode_keys", lambda texts, task, **kw: calls.append(len(texts)) or encode(texts, task))
    calls.clear()
    with pytest.raises(RuntimeError, match="killed at the switch"):
        reembed(filled, new, progress=False, _before_commit=fail_at_commit)
    assert _vectors(filled) == before_vectors and _fingerprints(filled) == before_specs
    assert (filled / STAGING_FILE).exists()
    calls.clear()
    reembed(filled, new, progress=False)  # resumes: everything is staged already
    assert calls == []
    assert set(_fingerprints(filled).values()) != set(before_specs.values())


def test_reembed_beside_a_running_server_waits_to_switch(filled, new_model_dir):
    """The old collections keep serving while the new vectors are made; the switch waits for the lock."""
    new = Embedder.from_pretrained(new_model_dir, **KW)
    server_store = SqliteFaissStore(filled)  # stands for the server holding the data dir
    done = threading.Event()
    errors = []

    def run():
        try:
            reembed(filled, new, progress=False, wait_s=0.05)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        done.set()

    worker = threading.Thread(target=run)
    worker.start()
    try:
        assert not done.wait(2) or errors, "the switch did not wait for the server"
        assert (filled / STAGING_FILE).exists()
        assert len({s.fingerprint for s in server_store.specs()}) == 1  # still the old model's
    finally:
        server_store.close()
    worker.join(60)
    assert done.is_set() and errors == []
    assert not (filled / STAGING_FILE).exists()


def test_cli_reembed_then_serve_with_the_new_model(filled, new_model_dir, tmp_path):
    records_before = {}
    with _opened(filled) as store:
        for spec in store.specs():
            records_before[spec.name] = [(r.id, r.text, r.session) for r in store.records(spec.name)]
    proc = subprocess.run(
        cli("collections", "reembed", "--data-dir", str(filled), "--model", str(new_model_dir), "--device", "cpu"),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    port = free_port()
    server = start_server("--model", str(new_model_dir), "--device", "cpu", "--data-dir", str(filled), port=port)
    try:
        base = f"http://127.0.0.1:{port}"
        for name, rows in records_before.items():
            got = httpx.get(f"{base}/v1/collections/{name}/items").json()["data"]
            assert [(r["id"], r["text"], r["session"]) for r in got] == rows
        hits = httpx.post(f"{base}/v1/collections/ex/search", json={"query": "music", "k": 4}, timeout=60)
        assert hits.status_code == 200, hits.text  # no 409: the data dir is the new model's
        assert {h["text"] for h in hits.json()["data"]} == set(TURNS)
        added = httpx.post(f"{base}/v1/collections/mem/items", json={"items": ["new turn"], "session": "a"})
        assert added.status_code == 200
    finally:
        stop_server(server)


def test_cli_reembed_of_a_folder_without_a_store_is_one_line(tmp_path, new_model_dir):
    empty = tmp_path / "nothing"
    empty.mkdir()
    proc = subprocess.run(
        cli("collections", "reembed", "--data-dir", str(empty), "--model", str(new_model_dir), "--device", "cpu"),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "no collections.sqlite3 here" in proc.stderr
    assert list(empty.iterdir()) == []  # nothing created
