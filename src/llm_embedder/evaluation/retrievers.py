"""Retrievers for evaluation, behind one small interface so users can plug in their own.

A retriever answers two questions:
- ``search(task, queries, corpus, k, key_max_length=None)``: the ids of the top-k documents of a
  shared corpus (``key_max_length``: a token budget for the documents that overrides the task's,
  for encoders; others ignore it);
- ``rank(task, queries, pools, k)``: for each query, the top-k positions in its *own* candidate
  pool (a conversation's earlier turns, a document's earlier chunks).

Specs on the command line: ``none``, ``random``, ``recency`` (pools only: the latest candidates),
``bm25``, ``dense:<model>`` (any Embedder: zoo name, folder or hub id, with its own instructions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from llm_embedder.fileio import atomic_path
from llm_embedder.fingerprint import embedder_fingerprint, parts_digest
from llm_embedder.retrieval.bm25 import BM25Index
from llm_embedder.retrieval.corpus import Corpus
from llm_embedder.retrieval.dense import DenseIndex

SPECS = ("none", "random", "recency", "bm25", "dense:<model>")


class NotApplicable(ValueError):
    """This retriever cannot serve this evaluation (e.g. recency over a shared corpus)."""


class Retriever(Protocol):
    name: str

    def search(
        self, task: str, queries: list[str], corpus: Corpus, k: int, key_max_length: int | None = None
    ) -> list[list[int]]: ...

    def rank(self, task: str, queries: list[str], pools: list[list[str]], k: int) -> list[list[int]]: ...


class NoRetriever:
    """The LLM alone: nothing is retrieved."""

    name = "none"

    def search(self, task, queries, corpus, k, key_max_length=None):
        return [[] for _ in queries]

    def rank(self, task, queries, pools, k):
        return [[] for _ in queries]


class RandomRetriever:
    """Uniform random picks, seeded per query position, so a rerun picks the same."""

    name = "random"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def _pick(self, i: int, n: int, k: int) -> list[int]:
        return np.random.default_rng((self.seed, i)).permutation(n)[:k].tolist()

    def search(self, task, queries, corpus, k, key_max_length=None):
        return [[corpus.ids[j] for j in self._pick(i, len(corpus), k)] for i in range(len(queries))]

    def rank(self, task, queries, pools, k):
        return [self._pick(i, len(pool), k) for i, pool in enumerate(pools)]


class RecencyRetriever:
    """The latest candidates of each pool (pools are in chronological order), newest first."""

    name = "recency"

    def search(self, task, queries, corpus, k, key_max_length=None):
        raise NotApplicable("the recency retriever needs per-query candidate pools (chat, lrlm), not a corpus")

    def rank(self, task, queries, pools, k):
        return [list(range(len(pool) - 1, max(-1, len(pool) - 1 - k), -1)) for pool in pools]


class BM25Retriever:
    name = "bm25"

    def __init__(self) -> None:
        self._cached: tuple[Corpus, BM25Index] | None = None

    def search(self, task, queries, corpus, k, key_max_length=None):
        # One corpus at a time (evaluations run task by task).  The corpus itself is kept with its
        # index: keying by id() alone reused a stale index once a freed corpus's id came back.
        if self._cached is None or self._cached[0] is not corpus:
            index = BM25Index()
            index.add(corpus.texts, corpus.ids)
            self._cached = (corpus, index)
        _, ids = self._cached[1].search(queries, k)
        return [[int(i) for i in row if i >= 0] for row in ids]

    def rank(self, task, queries, pools, k):
        out = []
        for query, pool in zip(queries, pools, strict=True):
            if not pool:
                out.append([])
                continue
            index = BM25Index()
            index.add(pool)
            _, ids = index.search([query], k)
            out.append([int(i) for i in ids[0] if i >= 0])
        return out


def _load_cached(file: Path, rows: int) -> np.ndarray | None:
    """Cached corpus vectors, or None when the file cannot be read or has the wrong rows (then they are
    encoded again): a damaged cache entry never fails an evaluation, nor answers for other texts."""
    try:
        vectors = np.load(file)
    except (OSError, ValueError, EOFError):
        return None
    return vectors if vectors.ndim == 2 and vectors.shape[0] == rows else None


class DenseRetriever:
    """An Embedder: exact inner-product search; corpus embeddings cached per (model, task, corpus)."""

    def __init__(self, embedder, model: str, cache_dir: str | Path | None = None, show_progress: bool | None = None):
        self.embedder = embedder
        self.name = f"dense:{model}"
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._memory: dict[str, np.ndarray] = {}
        self.show_progress = show_progress  # None: the Embedder's rule (a bar from 512 texts on)
        # The name alone would serve a model retrained into the same folder its old embeddings.
        self._model_key = f"{self.name}|{embedder_fingerprint(embedder)}"
        self.fingerprint = self._model_key
        """What its results depend on (the evaluation grid keys its cells by it)."""

    def _corpus_vectors(self, task: str, corpus: Corpus, key_max_length: int | None = None) -> np.ndarray:
        spec = self.embedder.tasks.get_task(task)
        max_length = key_max_length or spec.key_max_length
        key = parts_digest((self._model_key, spec.key_instruction, str(max_length), *corpus.texts), length=20)
        if key in self._memory:
            return self._memory[key]
        file = None if self.cache_dir is None else self.cache_dir / f"{task}-{key}.npy"
        vectors = _load_cached(file, len(corpus.texts)) if file is not None and file.exists() else None
        if vectors is None:
            vectors = self.embedder.encode_keys(
                corpus.texts, task=task, max_length=max_length, show_progress=self.show_progress
            )
            if file is not None:
                with atomic_path(file) as tmp, tmp.open("wb") as handle:
                    np.save(handle, vectors)
        self._memory = {key: vectors}
        return vectors

    def search(self, task, queries, corpus, k, key_max_length=None):
        index = DenseIndex(self.embedder.dim)
        index.add(self._corpus_vectors(task, corpus, key_max_length), corpus.ids)
        _, ids = index.search(self.embedder.encode_queries(queries, task=task), min(k, len(corpus)))
        return [[int(i) for i in row if i >= 0] for row in ids]

    def rank(self, task, queries, pools, k):
        q = self.embedder.encode_queries(queries, task=task)
        # Each distinct text is encoded once: lrlm's target chunks all share one pool of chunks.
        unique = list(dict.fromkeys(text for pool in pools for text in pool))
        keys = self.embedder.encode_keys(unique, task=task) if unique else np.zeros((0, self.embedder.dim), np.float32)
        row = {text: i for i, text in enumerate(unique)}
        out = []
        for i, pool in enumerate(pools):
            scores = keys[[row[text] for text in pool]] @ q[i]
            out.append(np.argsort(-scores, kind="stable")[:k].tolist())
        return out


def split_label(spec: str) -> tuple[str, str]:
    """``"fine-tuned=dense:runs/x/model"`` -> ("fine-tuned", "dense:runs/x/model"); no label: (spec, spec)."""
    label, sep, rest = spec.partition("=")
    if sep and label and ":" not in label:
        return label, rest
    return spec, spec


def check_spec(spec: str) -> str:
    """``spec`` if it names a retriever (see ``SPECS``; ``LABEL=SPEC`` names the leaderboard row),
    else a ValueError; loads nothing."""
    _, spec = split_label(spec)
    if spec in ("none", "random", "recency", "bm25") or (spec.startswith("dense:") and len(spec) > len("dense:")):
        return spec
    raise ValueError(f"unknown retriever {spec!r}; known: {', '.join(SPECS)}")


def make_retriever(
    spec: str, *, cache_dir: str | Path | None = None, device: str = "auto", seed: int = 0, dtype: str | None = None
) -> Retriever:
    """Build a retriever from its command-line spec (see ``SPECS``); ``dtype`` is a dense encoder's."""
    spec = check_spec(spec)
    if spec == "none":
        return NoRetriever()
    if spec == "random":
        return RandomRetriever(seed)
    if spec == "recency":
        return RecencyRetriever()
    if spec == "bm25":
        return BM25Retriever()
    if spec.startswith("dense:") and len(spec) > len("dense:"):
        from llm_embedder.models.embedder import Embedder

        model = spec.removeprefix("dense:")
        return DenseRetriever(Embedder.from_pretrained(model, device=device, dtype=dtype), model, cache_dir)
    raise ValueError(f"unknown retriever {spec!r}; known: {', '.join(SPECS)}")
