"""A searchable corpus: an index (dense or BM25) plus the texts it returns, saved as one folder.

Folder layout: ``searcher.json`` (method, task, model, factory), ``corpus.jsonl`` (id and text of
every document), and the index files (``faiss.index`` or ``bm25/``).  The folder is written to a
temporary name and renamed at the end, so an interrupted build leaves nothing behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_embedder.errors import InputError
from llm_embedder.fileio import atomic_path, read_jsonl, write_json, write_jsonl
from llm_embedder.models.embedder import Embedder
from llm_embedder.retrieval.bm25 import BM25Index
from llm_embedder.retrieval.corpus import Corpus
from llm_embedder.retrieval.dense import DenseIndex

METHODS = ("dense", "bm25")
META_FILE = "searcher.json"
TEXTS_FILE = "corpus.jsonl"


def dense_meta(
    embedder: Embedder, task: str, model: str | None, index: DenseIndex, count: int, **extra: Any
) -> dict[str, Any]:
    """``searcher.json`` of a dense index.  The query side must match the keys: it remembers the
    instruction and budget in use, and how the keys were encoded."""
    spec = embedder.tasks.get_task(task)
    return {
        "method": "dense",
        "task": task,
        "count": count,
        "model": model,
        "factory": index.factory,
        "dim": index.dim,
        "query_instruction": spec.query_instruction,
        "query_max_length": spec.query_max_length,
        "backend": embedder.backend,
        "dtype": embedder.encoding_dtype,
        **extra,
    }


@dataclass(frozen=True)
class Hit:
    id: int
    score: float
    text: str


class Searcher:
    def __init__(
        self,
        corpus: Corpus,
        index: DenseIndex | BM25Index,
        task: str,
        embedder: Embedder | None = None,
        model: str | None = None,
    ):
        if isinstance(index, DenseIndex) and embedder is None:
            raise ValueError("a dense searcher needs the embedder that encodes its queries")
        self.corpus = corpus
        self.index = index
        self.task = task
        self.embedder = embedder
        self.model = model
        self._text = dict(zip(corpus.ids, corpus.texts, strict=True))

    @property
    def method(self) -> str:
        return "dense" if isinstance(self.index, DenseIndex) else "bm25"

    @classmethod
    def build(
        cls,
        corpus: Corpus,
        method: str = "dense",
        *,
        task: str = "qa",
        embedder: Embedder | None = None,
        model: str | None = None,
        factory: str = "Flat",
        show_progress: bool | None = None,
    ) -> Searcher:
        """Index ``corpus``; dense needs an ``embedder`` (keys get the task's key instruction)."""
        if method == "dense":
            if embedder is None:
                raise ValueError("dense indexing needs an embedder")
            vectors = embedder.encode_keys(corpus.texts, task=task, show_progress=show_progress)
            index: DenseIndex | BM25Index = DenseIndex(embedder.dim, factory)
            index.add(vectors, corpus.ids)
        elif method == "bm25":
            index = BM25Index()
            index.add(corpus.texts, corpus.ids)
        else:
            raise ValueError(f"unknown retrieval method {method!r}; known: {', '.join(METHODS)}")
        return cls(corpus, index, task, embedder=embedder, model=model)

    def search(self, queries: list[str], k: int = 10, show_progress: bool | None = None) -> list[list[Hit]]:
        if self.method == "dense":
            assert self.embedder is not None
            vectors = self.embedder.encode_queries(queries, task=self.task, show_progress=show_progress)
            scores, ids = self.index.search(vectors, k)
        else:
            scores, ids = self.index.search(queries, k)
        return [
            [Hit(int(i), float(s), self._text[int(i)]) for s, i in zip(row_s, row_i, strict=True) if i >= 0]
            for row_s, row_i in zip(scores, ids, strict=True)
        ]

    def save(self, directory: str | Path) -> None:
        meta: dict[str, Any] = {"method": self.method, "task": self.task, "count": len(self.corpus)}
        if isinstance(self.index, DenseIndex):
            assert self.embedder is not None
            meta = dense_meta(self.embedder, self.task, self.model, self.index, len(self.corpus))
        rows = ({"id": i, "text": t} for i, t in zip(self.corpus.ids, self.corpus.texts, strict=True))
        with atomic_path(directory, is_dir=True) as tmp:
            write_jsonl(tmp / TEXTS_FILE, rows)
            self.index.save(tmp)
            write_json(tmp / META_FILE, meta)

    @staticmethod
    def read_meta(directory: str | Path) -> dict[str, Any]:
        file = Path(directory) / META_FILE
        if not file.is_file():
            raise InputError(
                directory,
                None,
                None,
                f"not a searcher folder (no {META_FILE}); build one with `llm-embedder index build`",
            )
        return json.loads(file.read_text(encoding="utf-8"))

    @classmethod
    def load(
        cls,
        directory: str | Path,
        embedder: Embedder | None = None,
        model: str | None = None,
        *,
        mmap: bool = False,
        search_params: dict[str, Any] | None = None,
        **embedder_kwargs: Any,
    ) -> Searcher:
        """Load a saved searcher.  A dense one loads its embedder (``model`` overrides the saved
        one) unless one is given; queries then get the instruction the index was built with,
        unless ``instructions`` or ``tasks`` are passed explicitly.  ``mmap`` maps the index from
        disk; ``search_params`` (``nprobe``, ``efSearch``) override those saved with the index."""
        meta = cls.read_meta(directory)
        rows = read_jsonl(Path(directory) / TEXTS_FILE)
        corpus = Corpus([r["text"] for r in rows], [r["id"] for r in rows])
        if meta["method"] == "dense":
            index: DenseIndex | BM25Index = DenseIndex.load(directory, meta.get("factory", "Flat"), mmap=mmap)
            index.set_search_params(**{**meta.get("search_params", {}), **(search_params or {})})
            if embedder is None:
                if not (model or meta.get("model")):
                    raise ValueError(f"{directory} was saved without a model name; pass embedder= or model=")
                embedder = Embedder.from_pretrained(model or meta.get("model"), **embedder_kwargs)
                if not {"instructions", "tasks"} & embedder_kwargs.keys() and "query_instruction" in meta:
                    saved = {k: meta[k] for k in ("query_instruction", "query_max_length")}
                    embedder.tasks = embedder.tasks.updated({meta["task"]: saved})
            if embedder.dim != index.dim:
                raise ValueError(f"the index holds {index.dim}-d vectors but the embedder makes {embedder.dim}-d ones")
        else:
            index = BM25Index.load(directory)
        return cls(corpus, index, meta["task"], embedder=embedder, model=meta.get("model"))
