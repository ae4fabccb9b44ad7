"""Where collections live: one small :class:`~llm_embedder.serving.stores.base.Store` protocol and its backends.

``sqlite_faiss`` (embedded, the default) and ``qdrant`` (qdrant-client: local mode or a server/cluster).
"""

from __future__ import annotations

from typing import Any


def open_store(spec: str | None, data_dir: str | None) -> Any:
    """A store from ``--store`` (``sqlite`` (default), ``qdrant://HOST:PORT``, ``qdrant-local``) and ``--data-dir``."""
    spec = spec or "sqlite"
    if spec == "sqlite":
        from llm_embedder.serving.stores.sqlite_faiss import SqliteFaissStore

        if not data_dir:
            raise ValueError("the embedded store needs --data-dir")
        return SqliteFaissStore(data_dir)
    if spec == "qdrant-local" or spec.startswith("qdrant://"):
        from llm_embedder.serving.stores.qdrant import QdrantStore

        if spec == "qdrant-local":
            if not data_dir:
                raise ValueError("qdrant-local needs --data-dir")
            return QdrantStore(path=data_dir)
        return QdrantStore(url="http://" + spec.removeprefix("qdrant://"))
    raise ValueError(f"unknown store {spec!r}; expected sqlite, qdrant-local or qdrant://HOST:PORT")
