"""The Store protocol: what a collection backend must do, and the records it keeps.

A store keeps, per collection, records (id, text, session, metadata) with one vector each, and
searches the vectors of one session by inner product. Writes are durable when they return, and
visible to the next search at once (read-your-writes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np


class MissingCollection(KeyError):
    """The collection is gone (dropped while a write was on its way); the write left nothing."""


@dataclass(frozen=True)
class CollectionSpec:
    name: str
    kind: str
    task: str
    fingerprint: str
    """The fingerprint of the model whose vectors fill the collection."""
    dim: int
    method: str = "dense"
    factory: str = "Flat"
    encoder: dict[str, Any] = field(default_factory=dict, compare=False)
    """How the vectors were made (model, backend, dtype), to say what differs when another model is refused."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Record:
    id: str
    text: str
    session: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class StoredHit:
    record: Record
    score: float


class Store(Protocol):
    def create(self, spec: CollectionSpec) -> None:
        """Create a collection (a no-op if it exists with this spec)."""

    def spec(self, name: str) -> CollectionSpec | None: ...

    def specs(self) -> list[CollectionSpec]: ...

    def drop(self, name: str) -> bool: ...

    def upsert(
        self, name: str, records: list[Record], vectors: np.ndarray, expect: CollectionSpec | None = None
    ) -> None:
        """Add or replace records by id; durable and searchable when it returns.

        Raises :class:`MissingCollection`, having written nothing, when the collection does not exist, or
        exists with another spec than ``expect`` (checked with the write, so a concurrent drop wins or loses
        whole)."""

    def existing_ids(self, name: str, ids: list[str]) -> set[str]: ...

    def search(self, name: str, vector: np.ndarray, k: int, session: str = "") -> list[StoredHit]: ...

    def records(self, name: str, session: str | None = None) -> list[Record]:
        """Records in insertion order (of one session, or all)."""

    def close(self) -> None: ...
