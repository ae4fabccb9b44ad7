"""Dense inner-product search on faiss, configured by an ``index_factory`` string."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from llm_embedder.errors import InputError
from llm_embedder.fileio import atomic_path

# faiss's search knobs that count something, with the option that sets them.
POSITIVE_PARAMS = {"nprobe": "--nprobe", "efSearch": "--ef-search"}


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

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    def train(self, sample: np.ndarray) -> None:
        """Train the quantisers (IVF centroids, PQ/SQ codebooks) on a sample; a no-op for Flat and HNSW."""
        if not self.index.is_trained:
            self.index.train(_as_matrix(sample, self.dim))

    def set_search_params(self, **params: Any) -> None:
        """Search-time knobs by their faiss names: ``nprobe`` (IVF lists visited), ``efSearch`` (HNSW)."""
        space = faiss.ParameterSpace()
        for name, value in params.items():
            if name in POSITIVE_PARAMS and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                flag = POSITIVE_PARAMS[name]
                raise ValueError(f"{flag}: expected a positive integer, got {value!r} ({name} 0 or less finds nothing)")
            try:
                space.set_index_parameter(self.index, name, value)
            except RuntimeError as exc:
                raise ValueError(
                    f"index {self.factory!r} has no parameter {name!r}: {str(exc).strip()[:120]}"
                ) from None

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
    def load(cls, directory: str | Path, factory: str = "Flat", mmap: bool = False) -> DenseIndex:
        """``mmap``: map the vectors/codes from disk read-only instead of reading them into memory
        (an index larger than memory; pages come in as searches touch them)."""
        flags = (getattr(faiss, "IO_FLAG_MMAP_IFC", faiss.IO_FLAG_MMAP) | faiss.IO_FLAG_READ_ONLY) if mmap else 0
        file = Path(directory) / cls.FILE
        if not file.is_file():
            raise InputError(file, None, None, "missing: broken index; rebuild it with `llm-embedder index build`")
        try:
            index = faiss.read_index(str(file), flags)
        except RuntimeError:  # faiss's own text names C++ source lines, not the problem
            message = "not a readable faiss index (cut short or damaged?); rebuild it with `llm-embedder index build`"
            raise InputError(file, None, None, message) from None
        return cls(index.d, factory, index=index)


# Named large-index recipes; the list count grows with the corpus (about 4 sqrt(n), faiss's usual advice).
PRESETS = {
    "hnsw": "HNSW32",
    "ivf": "IVF{nlist},Flat",
    "ivf-sq8": "IVF{nlist},SQ8",
    "ivf-pq": "IVF{nlist},PQ{m}",
    "sq8": "SQ8",
    "pq": "PQ{m}",
}


def expand_factory(factory: str, count: int, dim: int) -> str:
    """A preset name (``ivf``, ``hnsw``, ``ivf-pq``...) as a faiss factory string for ``count`` vectors;
    any other string is a faiss factory string already."""
    if factory not in PRESETS:
        return factory
    nlist = max(1, min(65536, int(4 * math.sqrt(max(count, 1)))))
    # PQ: sub-vectors of 8 dimensions at 8 bits each (48 bytes a vector for 384-d); m must divide dim.
    m = next(m for m in range(max(1, dim // 8), 0, -1) if dim % m == 0)
    return PRESETS[factory].format(nlist=nlist, m=m)


def _as_matrix(vectors: np.ndarray, dim: int) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"expected vectors of shape [n, {dim}], got {list(vectors.shape)}")
    return vectors
