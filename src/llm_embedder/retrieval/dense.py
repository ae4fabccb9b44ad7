"""Dense inner-product search on faiss, configured by an ``index_factory`` string."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from llm_embedder.fileio import atomic_path


class DenseIndex:
    """Vectors with external int64 ids; ``search`` returns (scores, ids), ``-1`` ids when short.

    ``factory`` is any faiss ``index_factory`` description (``Flat``, ``HNSW32``, ``IVF256,Flat``,
    ``IVF256,PQ16``...); the metric is always the inner product, which is the cosine for the
    normalised embeddings the Embedder produces.
    """

    FILE = "faiss.index"

    def __init__(self, dim: int, factory: str = "Flat", index: faiss.Index | None = None):
        self.dim = dim
        self.factory = factory
        if index is None:
            try:
                inner = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
            except RuntimeError as exc:
                raise ValueError(f"faiss cannot build index {factory!r}: {str(exc).strip().splitlines()[-1]}") from None
            index = faiss.IndexIDMap2(inner)
        self.index = index

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, vectors: np.ndarray, ids: np.ndarray | list[int] | None = None) -> None:
        vectors = _as_matrix(vectors, self.dim)
        ids = np.arange(len(self), len(self) + len(vectors)) if ids is None else np.asarray(ids)
        if ids.shape != (len(vectors),):
            raise ValueError(f"{len(vectors)} vectors but {ids.shape} ids")
        if not self.index.is_trained:
            self.index.train(vectors)
        self.index.add_with_ids(vectors, ids.astype(np.int64))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k < 1:
            raise ValueError("k must be at least 1")
        queries = _as_matrix(queries, self.dim)
        scores, ids = self.index.search(queries, k)
        return scores, ids

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / self.FILE) as tmp:
            faiss.write_index(self.index, str(tmp))

    @classmethod
    def load(cls, directory: str | Path, factory: str = "Flat") -> DenseIndex:
        index = faiss.read_index(str(Path(directory) / cls.FILE))
        return cls(index.d, factory, index=index)


def _as_matrix(vectors: np.ndarray, dim: int) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"expected vectors of shape [n, {dim}], got {list(vectors.shape)}")
    return vectors
