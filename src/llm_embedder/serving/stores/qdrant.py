"""The Qdrant store: the same collections on qdrant-client, in local mode (``path=``) or on a server/cluster (``url=``).

Each collection is a Qdrant collection ``llme_<name>`` (dot product, the Embedder's vectors are
normalised); the specs live as points of a registry collection. Qdrant point ids must be
integers or UUIDs, so a record's id maps to a UUID5 and is kept in the payload with its text,
session, metadata and an insertion number (for ordered listing). Writes wait for Qdrant's
acknowledgement (``wait=True``); sessions are a payload filter.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from llm_embedder.serving.lock import DataDirLock
from llm_embedder.serving.stores.base import CollectionSpec, MissingCollection, Record, StoredHit

PREFIX = "llme_"
REGISTRY = "llme__registry"  # user names cannot start with "_", so no collection is called this
_NAMESPACE = uuid.UUID("0f5b7c1e-5a1e-4c55-9d0e-6c1f2b1a7e10")


def _point_id(key: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, key))


class QdrantStore:
    def __init__(self, path: str | None = None, url: str | None = None, **client_options: Any):
        # Local mode keeps its data in ``path``: one process at a time, as for the SQLite store.
        self._dir_lock = DataDirLock(path).acquire() if path else None
        try:
            self.client = QdrantClient(path=path, url=url, **client_options)
        except BaseException:
            self.close_lock()
            raise
        self._writing = threading.Lock()
        if not self.client.collection_exists(REGISTRY):
            self.client.create_collection(
                REGISTRY, vectors_config=models.VectorParams(size=1, distance=models.Distance.DOT)
            )

    def create(self, spec: CollectionSpec) -> None:
        if spec.factory != "Flat":
            raise ValueError("the Qdrant store builds its own HNSW index; factory must be 'Flat' (the default)")
        if self.spec(spec.name) is not None:
            return
        if self.client.collection_exists(PREFIX + spec.name):  # left by a drop cut short: no longer listed
            self.client.delete_collection(PREFIX + spec.name)
        self.client.create_collection(
            PREFIX + spec.name, vectors_config=models.VectorParams(size=spec.dim, distance=models.Distance.DOT)
        )
        point = models.PointStruct(id=_point_id(spec.name), vector=[1.0], payload=spec.to_dict())
        self.client.upsert(REGISTRY, [point], wait=True)

    def spec(self, name: str) -> CollectionSpec | None:
        found = self.client.retrieve(REGISTRY, [_point_id(name)], with_payload=True)
        return CollectionSpec(**found[0].payload) if found else None

    def specs(self) -> list[CollectionSpec]:
        points, _ = self.client.scroll(REGISTRY, limit=10_000, with_payload=True)
        return sorted((CollectionSpec(**p.payload) for p in points), key=lambda s: s.name)

    def drop(self, name: str) -> bool:
        with self._writing:
            if self.spec(name) is None:
                return False
            # The registry entry first: a crash in between leaves an unlisted collection, not a listed empty one.
            self.client.delete(REGISTRY, models.PointIdsList(points=[_point_id(name)]), wait=True)
            self.client.delete_collection(PREFIX + name)
            return True

    def upsert(
        self, name: str, records: list[Record], vectors: np.ndarray, expect: CollectionSpec | None = None
    ) -> None:
        first = time.time_ns()
        points = [
            models.PointStruct(
                id=_point_id(record.id),
                vector=np.asarray(vector, dtype=np.float32).tolist(),
                payload={
                    "id": record.id,
                    "text": record.text,
                    "session": record.session,
                    "metadata": record.metadata,
                    "seq": first + n,
                },
            )
            for n, (record, vector) in enumerate(zip(records, vectors, strict=True))
        ]
        with self._writing:  # a drop in this process waits for the write, or the write sees the drop
            found = self.spec(name)
            if found is None or (expect is not None and found != expect):
                raise MissingCollection(name)
            self.client.upsert(PREFIX + name, points, wait=True)

    def existing_ids(self, name: str, ids: list[str]) -> set[str]:
        found = self.client.retrieve(PREFIX + name, [_point_id(i) for i in ids], with_payload=True)
        return {p.payload["id"] for p in found}

    def search(self, name: str, vector: np.ndarray, k: int, session: str = "") -> list[StoredHit]:
        only = models.Filter(must=[models.FieldCondition(key="session", match=models.MatchValue(value=session))])
        result = self.client.query_points(
            PREFIX + name,
            query=np.asarray(vector, dtype=np.float32).tolist(),
            limit=k,
            query_filter=only,
            with_payload=True,
        )
        return [StoredHit(_record(p.payload), float(p.score)) for p in result.points]

    def records(self, name: str, session: str | None = None) -> list[Record]:
        only = None
        if session is not None:
            only = models.Filter(must=[models.FieldCondition(key="session", match=models.MatchValue(value=session))])
        points, offset = [], None
        while True:
            page, offset = self.client.scroll(
                PREFIX + name, scroll_filter=only, limit=1000, offset=offset, with_payload=True
            )
            points += page
            if offset is None:
                break
        return [_record(p.payload) for p in sorted(points, key=lambda p: p.payload["seq"])]

    def close(self) -> None:
        self.client.close()
        self.close_lock()

    def close_lock(self) -> None:
        if self._dir_lock is not None:
            self._dir_lock.release()


def _record(payload: dict[str, Any]) -> Record:
    return Record(payload["id"], payload["text"], payload["session"], payload.get("metadata") or {})
