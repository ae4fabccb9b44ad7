"""The embedded store: SQLite is the source of truth, faiss the in-memory search index.

SQLite runs in WAL mode with ``synchronous=FULL``: a write is on disk when ``upsert`` returns, so
an acknowledged append survives ``kill -9`` (and a power cut). Records, metadata and vectors
(float32 blobs) live in one table; the faiss indexes, one per collection and session, are
rebuilt from it on start, so they can never disagree with what was acknowledged.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections import defaultdict
from pathlib import Path

import numpy as np

from llm_embedder.retrieval.dense import DenseIndex
from llm_embedder.serving.lock import DataDirLock
from llm_embedder.serving.stores.base import CollectionSpec, MissingCollection, Record, StoredHit

DB_FILE = "collections.sqlite3"
log = logging.getLogger("llm_embedder.serving")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (name TEXT PRIMARY KEY, spec TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    session TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    vector BLOB NOT NULL,
    UNIQUE (collection, id)
);
CREATE INDEX IF NOT EXISTS records_by_session ON records (collection, session, seq);
"""


class SqliteFaissStore:
    """Holds the data dir's lock (:mod:`~llm_embedder.serving.lock`) from opening to :meth:`close`."""

    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / DB_FILE
        self._dir_lock = DataDirLock(self.data_dir).acquire()
        try:
            self._open()
        except BaseException:
            self._dir_lock.release()
            raise

    def _open(self) -> None:
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.RLock()
        self._specs = {
            name: CollectionSpec(**json.loads(spec))
            for name, spec in self._db.execute("SELECT name, spec FROM collections")
        }
        self._indexes: dict[tuple[str, str], DenseIndex] = {}
        self._drop_orphans()
        self._load_indexes()

    def _drop_orphans(self) -> None:
        """Rows of a collection that no longer exists: reported and removed, never a reason not to start.

        Earlier versions could leave them (a drop during an add); they are unreachable, and would
        reappear in a new collection of the same name.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                orphans = self._db.execute(
                    "SELECT collection, count(*) FROM records WHERE collection NOT IN (SELECT name FROM collections) "
                    "GROUP BY collection"
                ).fetchall()
                if orphans:
                    self._db.execute("DELETE FROM records WHERE collection NOT IN (SELECT name FROM collections)")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        for collection, count in orphans:
            log.warning("%s: removed %d records of the deleted collection %r", self.path, count, collection)

    def _load_indexes(self) -> None:
        parts: dict[tuple[str, str], tuple[list[int], list[bytes]]] = defaultdict(lambda: ([], []))
        for collection, session, seq, blob in self._db.execute(
            "SELECT collection, session, seq, vector FROM records ORDER BY seq"
        ):
            seqs, blobs = parts[(collection, session)]
            seqs.append(seq)
            blobs.append(blob)
        for (collection, session), (seqs, blobs) in parts.items():
            vectors = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(seqs), -1)
            self._partition(collection, session).add(vectors, np.asarray(seqs))

    def _partition(self, collection: str, session: str) -> DenseIndex:
        key = (collection, session)
        if key not in self._indexes:
            spec = self._specs[collection]
            self._indexes[key] = DenseIndex(spec.dim, spec.factory)
        return self._indexes[key]

    # ------------------------------------------------------------------ collections
    def create(self, spec: CollectionSpec) -> None:
        index = DenseIndex(spec.dim, spec.factory)  # fails here on a bad factory string
        if not index.index.is_trained:
            raise ValueError(f"faiss index {spec.factory!r} needs training; collections grow one write at a time")
        with self._lock:
            if spec.name in self._specs:
                return
            self._db.execute("INSERT INTO collections VALUES (?, ?)", (spec.name, json.dumps(spec.to_dict())))
            self._specs[spec.name] = spec

    def spec(self, name: str) -> CollectionSpec | None:
        return self._specs.get(name)

    def specs(self) -> list[CollectionSpec]:
        return list(self._specs.values())

    def drop(self, name: str) -> bool:
        with self._lock:
            if name not in self._specs:
                return False
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM records WHERE collection = ?", (name,))
            self._db.execute("DELETE FROM collections WHERE name = ?", (name,))
            self._db.execute("COMMIT")
            del self._specs[name]
            for key in [k for k in self._indexes if k[0] == name]:
                del self._indexes[key]
            return True

    # ------------------------------------------------------------------ records
    def upsert(
        self, name: str, records: list[Record], vectors: np.ndarray, expect: CollectionSpec | None = None
    ) -> None:
        vectors = np.ascontiguousarray(vectors, dtype="<f4")
        with self._lock:
            replaced: list[tuple[str, int]] = []
            added: list[tuple[str, int]] = []
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT spec FROM collections WHERE name = ?", (name,)).fetchone()
                if row is None or (expect is not None and CollectionSpec(**json.loads(row[0])) != expect):
                    raise MissingCollection(name)
                for record, vector in zip(records, vectors, strict=True):
                    old = self._db.execute(
                        "SELECT session, seq FROM records WHERE collection = ? AND id = ?", (name, record.id)
                    ).fetchone()
                    if old is not None:
                        replaced.append(old)
                        self._db.execute("DELETE FROM records WHERE seq = ?", (old[1],))
                    cursor = self._db.execute(
                        "INSERT INTO records (collection, id, session, text, metadata, vector) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (name, record.id, record.session, record.text, json.dumps(record.metadata), vector.tobytes()),
                    )
                    added.append((record.session, cursor.lastrowid))
                self._db.execute("COMMIT")  # durable from here on (WAL, synchronous=FULL)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            for session, seq in replaced:
                self._remove(name, session, seq)
            for (session, seq), vector in zip(added, vectors, strict=True):
                self._partition(name, session).add(vector[None], np.asarray([seq]))

    def _remove(self, name: str, session: str, seq: int) -> None:
        index = self._partition(name, session)
        try:
            index.index.remove_ids(np.asarray([seq], dtype=np.int64))
        except RuntimeError:  # an index without removal (HNSW): rebuild this session's part from SQLite
            rows = self._db.execute(
                "SELECT seq, vector FROM records WHERE collection = ? AND session = ? ORDER BY seq", (name, session)
            ).fetchall()
            fresh = DenseIndex(index.dim, index.factory)
            if rows:
                fresh.add(np.stack([np.frombuffer(v, dtype="<f4") for _, v in rows]), np.asarray([s for s, _ in rows]))
            self._indexes[(name, session)] = fresh

    def existing_ids(self, name: str, ids: list[str]) -> set[str]:
        found: set[str] = set()
        with self._lock:
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                marks = ",".join("?" * len(part))
                rows = self._db.execute(
                    f"SELECT id FROM records WHERE collection = ? AND id IN ({marks})", (name, *part)
                )
                found.update(r[0] for r in rows)
        return found

    def search(self, name: str, vector: np.ndarray, k: int, session: str = "") -> list[StoredHit]:
        with self._lock:
            index = self._indexes.get((name, session))
            if index is None or not len(index):
                return []
            scores, seqs = index.search(np.asarray(vector, dtype=np.float32)[None], min(k, len(index)))
            found = [(int(s), float(score)) for s, score in zip(seqs[0], scores[0], strict=True) if s >= 0]
            marks = ",".join("?" * len(found))
            rows = self._db.execute(
                f"SELECT seq, id, session, text, metadata FROM records WHERE seq IN ({marks})", [s for s, _ in found]
            ).fetchall()
        by_seq = {row[0]: Record(row[1], row[3], row[2], json.loads(row[4])) for row in rows}
        return [StoredHit(by_seq[s], score) for s, score in found if s in by_seq]

    def records(self, name: str, session: str | None = None) -> list[Record]:
        query = "SELECT id, text, session, metadata FROM records WHERE collection = ?"
        args: list[str] = [name]
        if session is not None:
            query += " AND session = ?"
            args.append(session)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY seq", args).fetchall()
        return [Record(i, t, s, json.loads(m)) for i, t, s, m in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._dir_lock.release()
