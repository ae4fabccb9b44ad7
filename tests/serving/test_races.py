"""Collections under concurrent create/add/drop/search, then a restart: the store's invariants hold.

A fake engine (hashed vectors, a short random pause in ``embed``) keeps these fast and widens the window
in which a drop can land between an add's embedding and its write.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import random
import sqlite3
import threading
import time

import numpy as np
import pytest
from serving_helpers import open_test_store

from llm_embedder.serving.collections import CollectionError, Collections, NotFound
from llm_embedder.serving.stores.sqlite_faiss import DB_FILE, SqliteFaissStore
from llm_embedder.tasks import DEFAULT_TASKS

KINDS = {"mem": "memory", "ex": "examples", "kb": "knowledge"}


class FakeEngine:
    dim = 8
    fingerprint = "fake-fingerprint"
    tasks = DEFAULT_TASKS
    encoder_info = {"model": "fake", "backend": "torch", "dtype": "float32"}

    def __init__(self, pause: float = 0.0, seed: int = 0):
        self.pause = pause
        self.rng = random.Random(seed)
        self.before_return = None  # a hook run after embedding, before the vectors go back

    def _vector(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
        v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def embed(self, texts, task, side, truncate="right"):
        if self.pause:
            time.sleep(self.rng.uniform(0, self.pause))
        out = np.stack([self._vector(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)
        if self.before_return is not None:
            self.before_return()
        return out

    def embed_mixed(self, requests, truncate="right"):
        return np.stack([self._vector(text) for text, _, _ in requests])


def _rows(data_dir, query):
    with sqlite3.connect(data_dir / DB_FILE) as db:
        return db.execute(query).fetchall()


def test_drop_during_add_is_404_and_leaves_nothing(store_kind, tmp_path):
    engine = FakeEngine()
    collections = Collections(open_test_store(store_kind, tmp_path / "d"), engine)
    collections.create("mem", "memory")
    collections.add("mem", ["kept"], session="s")
    engine.before_return = lambda: collections.drop("mem")  # the drop lands between embed and write
    with pytest.raises(NotFound, match="deleted .* while the items were embedded"):
        collections.add("mem", ["lost"] * 5, session="s")
    engine.before_return = None
    collections.close()
    again = Collections(open_test_store(store_kind, tmp_path / "d"), engine)  # starts
    assert again.list() == []
    again.create("mem", "memory")  # the name is free again, and empty
    assert again.records("mem") == []
    again.close()


def test_start_up_reports_and_removes_orphan_rows(tmp_path, caplog):
    """Rows of a deleted collection (as an earlier version could leave) never stop the store from starting."""
    engine = FakeEngine()
    collections = Collections(SqliteFaissStore(tmp_path), engine)
    collections.create("ex", "examples")
    collections.add("ex", ["a", "b"])
    collections.close()
    with sqlite3.connect(tmp_path / DB_FILE) as db:
        blob = np.zeros(8, dtype="<f4").tobytes()
        db.execute(
            "INSERT INTO records (collection, id, session, text, metadata, vector) VALUES (?, ?, ?, ?, ?, ?)",
            ("gone", "x", "s", "orphan", "{}", blob),
        )
    with caplog.at_level(logging.WARNING, logger="llm_embedder.serving"):
        store = SqliteFaissStore(tmp_path)
    assert "removed 1 records of the deleted collection 'gone'" in caplog.text
    again = Collections(store, engine)
    assert [r.text for r in again.records("ex")] == ["a", "b"]
    again.create("gone", "memory")
    assert again.records("gone") == []
    again.close()


def _worker(collections, rng, thread, log, counter, errors):
    for n in range(30):
        name = rng.choice(list(KINDS))
        op = rng.choices(["create", "add", "drop", "search"], weights=[3, 6, 2, 3])[0]
        try:
            if op == "create":
                collections.create(name, KINDS[name])
            elif op == "add":
                session = rng.choice(["s1", "s2"]) if KINDS[name] == "memory" else ""
                size = rng.randint(1, 4)
                items = [{"id": f"{thread}-{n}-{j}", "text": f"text {thread} {n} {j}"} for j in range(size)]
                began = next(counter)
                ids = collections.add(name, items, session=session)
                log.append(("ack", began, name, session, tuple(ids)))
            elif op == "drop":
                try:
                    collections.drop(name)
                finally:
                    log.append(("drop", next(counter), name))  # when it ended
            else:
                session = rng.choice(["s1", "s2"]) if KINDS[name] == "memory" else ""
                hits = collections.search(name, "text", k=50, session=session)
                assert all(h.session == session for h in hits)
        except NotFound:
            pass
        except CollectionError as exc:  # never expected here: names, kinds and sessions are valid
            errors.append(exc)
        except Exception as exc:  # noqa: BLE001 - any other failure is the bug under test
            errors.append(exc)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_interleavings_then_restart_keep_invariants(tmp_path, seed):
    engine = FakeEngine(pause=0.003, seed=seed)
    collections = Collections(SqliteFaissStore(tmp_path), engine)
    log: list = []
    errors: list = []
    counter = itertools.count()
    threads = [
        threading.Thread(target=_worker, args=(collections, random.Random(seed * 10 + t), t, log, counter, errors))
        for t in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    collections.close()
    assert errors == []

    store = SqliteFaissStore(tmp_path)  # a restart: must start, whatever the interleaving left
    again = Collections(store, engine)
    try:
        names = {s.name for s in again.list()}
        orphans = _rows(tmp_path, "SELECT count(*) FROM records WHERE collection NOT IN (SELECT name FROM collections)")
        assert orphans == [(0,)]
        acked = {i: (e[2], e[3]) for e in log if e[0] == "ack" for i in e[4]}
        for name in names:
            stored = again.records(name)
            # every stored record was acknowledged, in this collection and session
            assert all(acked.get(r.id) == (name, r.session) for r in stored), name
            for session in {r.session for r in stored} | {""}:
                rows = [r for r in stored if r.session == session]
                index = store._indexes.get((name, session))
                assert (len(index) if index is not None else 0) == len(rows)
                hits = again.search(name, "text", k=1000, session=session)
                assert sorted(h.id for h in hits) == sorted(r.id for r in rows)
        # every acknowledged add survives unless a drop of its collection ended after the add began
        for event in (e for e in log if e[0] == "ack"):
            _, began, name, session, ids = event
            dropped_later = any(e[0] == "drop" and e[2] == name and e[1] > began for e in log)
            if not dropped_later:
                have = {r.id for r in again.records(name, session)} if name in names else set()
                assert set(ids) <= have, (event, name in names)
    finally:
        again.close()
