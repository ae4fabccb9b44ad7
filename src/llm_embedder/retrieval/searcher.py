"""A searchable corpus: an index (dense or BM25) plus the texts it returns, saved as one folder.

Folder layout: ``CURRENT`` names the live version ``v-*/``, which holds ``searcher.json`` (method,
task, count, model and its fingerprint, factory), ``corpus.jsonl`` (id and text of every document)
and the index files (``faiss.index`` or ``bm25/``).  A rebuild writes a new version and replaces the
pointer in one step (see :mod:`llm_embedder.versioned`): a kill leaves the old index or the new one.
Folders of the older flat layout (the files at the top) still load.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_embedder import versioned
from llm_embedder.errors import InputError
from llm_embedder.fileio import iter_jsonl, write_json, write_jsonl
from llm_embedder.fingerprint import embedder_fingerprint, encoder_fingerprint
from llm_embedder.models.embedder import Embedder
from llm_embedder.retrieval.bm25 import BM25Index
from llm_embedder.retrieval.corpus import Corpus
from llm_embedder.retrieval.dense import DenseIndex
from llm_embedder.tasks import DEFAULT_TASKS

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
        "model_fingerprint": embedder_fingerprint(embedder),
        "encoder_fingerprint": encoder_fingerprint(embedder),
        **extra,
    }


@contextlib.contextmanager
def publish(directory: str | Path) -> Iterator[Path]:
    """A folder to write a searcher's files into; on exit it becomes the live version of ``directory``
    (one atomic pointer swap, see :mod:`llm_embedder.versioned`), and files of the older flat layout go."""
    directory = Path(directory)
    flat = (directory / META_FILE).is_file()  # the older layout, replaced by this version
    with versioned.new_version(directory) as tmp:
        yield tmp
    if flat:
        for name in (META_FILE, TEXTS_FILE, DenseIndex.FILE, BM25Index.DIR):
            old = directory / name
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)


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
        (embedder.tasks if embedder is not None else DEFAULT_TASKS).get_task(task)  # BM25 too: a typo is an error
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
        """The top ``k`` hits of each query (fewer when the corpus is smaller)."""
        if isinstance(queries, str) or not all(isinstance(q, str) for q in queries):
            raise ValueError("queries must be a list of strings (one string is a list of one: [text])")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        k = min(k, len(self.corpus))  # more hits than documents cannot exist; do not allocate for them
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
        """Publish this searcher as the new version of ``directory`` (see the module doc)."""
        meta: dict[str, Any] = {"method": self.method, "task": self.task, "count": len(self.corpus)}
        if isinstance(self.index, DenseIndex):
            assert self.embedder is not None
            meta = dense_meta(self.embedder, self.task, self.model, self.index, len(self.corpus))
        rows = ({"id": i, "text": t} for i, t in zip(self.corpus.ids, self.corpus.texts, strict=True))
        with publish(directory) as tmp:
            write_jsonl(tmp / TEXTS_FILE, rows)
            self.index.save(tmp)
            write_json(tmp / META_FILE, meta)

    @staticmethod
    def folder(directory: str | Path) -> Path:
        """The folder holding the files of the live version."""
        try:
            live = versioned.current(directory)
        except FileNotFoundError as exc:
            raise InputError(directory, None, None, f"broken index: {exc}") from None
        return Path(directory) if live is None else live

    @classmethod
    def read_meta(cls, directory: str | Path) -> dict[str, Any]:
        file = cls.folder(directory) / META_FILE
        if not file.is_file():
            raise InputError(
                directory,
                None,
                None,
                f"not a searcher folder (no {META_FILE}); build one with `llm-embedder index build`",
            )
        try:
            meta = json.loads(file.read_text(encoding="utf-8-sig"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(file, None, None, f"not valid JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise InputError(file, None, None, "expected a JSON object")
        if meta.get("method") not in METHODS:
            raise InputError(file, None, "method", f"expected one of {', '.join(METHODS)}, got {meta.get('method')!r}")
        if not isinstance(meta.get("task"), str):
            raise InputError(file, None, "task", "missing or not a string")
        count = meta.get("count")
        if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
            raise InputError(file, None, "count", f"expected a positive integer, got {count!r}")
        return meta

    @staticmethod
    def is_index(directory: str | Path) -> bool:
        """Whether ``directory`` holds a searcher (either layout)."""
        directory = Path(directory)
        return (directory / versioned.POINTER).is_file() or (directory / META_FILE).is_file()

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
        unless ``instructions`` or ``tasks`` are passed explicitly.  An embedder whose keys would
        differ from the indexed ones (other weights or pooling) is refused.  ``mmap`` maps the index from
        disk; ``search_params`` (``nprobe``, ``efSearch``) override those saved with the index."""
        meta = cls.read_meta(directory)
        folder = cls.folder(directory)
        corpus = _read_texts(folder / TEXTS_FILE, meta.get("count"))
        if meta["method"] == "dense":
            index: DenseIndex | BM25Index = DenseIndex.load(folder, meta.get("factory", "Flat"), mmap=mmap)
            index.set_search_params(**{**meta.get("search_params", {}), **(search_params or {})})
            if embedder is None:
                if not (model or meta.get("model")):
                    raise ValueError(f"{directory} was saved without a model name; pass embedder= or model=")
                if embedder_kwargs.get("backend", "auto") == "auto" and meta.get("backend"):
                    # "auto" searches the way the keys were encoded (another runtime gives other vectors)
                    embedder_kwargs["backend"] = meta["backend"]
                    if embedder_kwargs.get("dtype") is None and meta.get("dtype"):
                        embedder_kwargs["dtype"] = meta["dtype"]
                embedder = Embedder.from_pretrained(model or meta.get("model"), **embedder_kwargs)
                if not {"instructions", "tasks"} & embedder_kwargs.keys() and "query_instruction" in meta:
                    saved = {k: meta[k] for k in ("query_instruction", "query_max_length")}
                    embedder.tasks = embedder.tasks.updated({meta["task"]: saved})
            if embedder.dim != index.dim:
                raise ValueError(f"the index holds {index.dim}-d vectors but the embedder makes {embedder.dim}-d ones")
            saved = meta.get("encoder_fingerprint")
            if saved is not None and encoder_fingerprint(embedder) != saved:
                built = (meta.get("backend"), meta.get("dtype"))
                if built[0] and built != (embedder.backend, embedder.encoding_dtype):
                    raise InputError(
                        folder / META_FILE,
                        None,
                        "encoder_fingerprint",
                        f"the index was built with --backend {built[0]} --dtype {built[1]} and the model now runs "
                        f"{embedder.backend} {embedder.encoding_dtype}: search with --backend {built[0]} "
                        f"--dtype {built[1]} (or rebuild the index)",
                    )
                raise InputError(
                    folder / META_FILE,
                    None,
                    "encoder_fingerprint",
                    f"the model ({model or meta.get('model')}) is not the one the index was built with "
                    "(other weights or pooling); rebuild the index with it",
                )
        else:
            index = BM25Index.load(folder)
        if len(index) != len(corpus):
            raise InputError(folder, None, None, f"broken index: {len(index)} vectors for {len(corpus)} documents")
        return cls(corpus, index, meta["task"], embedder=embedder, model=meta.get("model"))


def _read_texts(file: Path, count: int | None) -> Corpus:
    """The documents of a saved searcher, checked line by line and against the saved count."""
    texts, ids = [], []
    for number, row in iter_jsonl(file):
        if not isinstance(row.get("id"), int) or isinstance(row.get("id"), bool):
            raise InputError(file, number, "id", "missing or not an integer")
        if not isinstance(row.get("text"), str):
            raise InputError(file, number, "text", "missing or not a string")
        ids.append(row["id"])
        texts.append(row["text"])
    if count is not None and len(texts) != count:
        raise InputError(file, None, None, f"holds {len(texts)} documents where the index has {count} (cut short?)")
    try:
        return Corpus(texts, ids)
    except ValueError as exc:
        raise InputError(file, None, "id", str(exc)) from None
