"""BM25 on bm25s: in-process, with English stop words and Snowball stemming (as Lucene would)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import bm25s
import numpy as np

from llm_embedder.errors import InputError
from llm_embedder.fileio import atomic_path

# bm25s pins its own logger at DEBUG, which floods any configured root handler.
logging.getLogger("bm25s").setLevel(logging.WARNING)

# The BM25 parameters of the original LLM-Embedder evaluation (tuned on MS MARCO).
DEFAULT_K1 = 0.82
DEFAULT_B = 0.68


def _stemmer():
    try:
        import Stemmer
    except ImportError:  # PyStemmer is optional; without it terms are matched unstemmed
        return None
    return Stemmer.Stemmer("english")


def tokenize(texts: list[str], stemmer=None) -> list[list[str]]:
    return bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)


class BM25Index:
    """``search(queries, k)`` returns (scores, ids); documents sharing no term with a query
    are not returned (id ``-1``, score 0)."""

    DIR = "bm25"
    IDS_FILE = "ids.json"

    def __init__(self, k1: float = DEFAULT_K1, b: float = DEFAULT_B):
        self.retriever = bm25s.BM25(k1=k1, b=b)
        self.ids = np.empty(0, dtype=np.int64)
        self.stemmer = _stemmer()

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, texts: list[str], ids: list[int] | np.ndarray | None = None) -> None:
        """Index ``texts`` (BM25 statistics are corpus-wide, so this builds the whole index once)."""
        if len(self):
            raise RuntimeError("a BM25 index is built once from the whole corpus")
        tokens = tokenize(list(texts), self.stemmer)
        if not any(tokens):
            raise ValueError("no document has a word BM25 can index (only stop words, numbers or punctuation?)")
        self.ids = np.arange(len(texts), dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
        self.retriever.index(tokens, show_progress=False)

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        if k < 1:
            raise ValueError("k must be at least 1")
        n = len(queries)
        scores = np.zeros((n, k), dtype=np.float32)
        ids = np.full((n, k), -1, dtype=np.int64)
        if not n:
            return scores, ids
        kk = min(k, len(self))
        rows, found = self.retriever.retrieve(tokenize(list(queries), self.stemmer), k=kk, show_progress=False)
        hit = found > 0
        scores[:, :kk] = np.where(hit, found, 0.0)
        ids[:, :kk] = np.where(hit, self.ids[rows], -1)
        return scores, ids

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / self.DIR, is_dir=True) as tmp:
            self.retriever.save(str(tmp), show_progress=False)
            (tmp / self.IDS_FILE).write_text(json.dumps(self.ids.tolist()))

    @classmethod
    def load(cls, directory: str | Path) -> BM25Index:
        folder = Path(directory) / cls.DIR
        index = cls()
        if not folder.is_dir():
            raise InputError(folder, None, None, "missing: broken index; rebuild it with `llm-embedder index build`")
        try:
            index.retriever = bm25s.BM25.load(str(folder), show_progress=False)
        except Exception as exc:  # an emptied or cut file: EOFError, pickle or numpy errors
            name = getattr(exc, "filename", None) or folder
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(
                name, None, None, f"broken BM25 index ({reason}); rebuild it with `llm-embedder index build`"
            ) from None
        ids_file = folder / cls.IDS_FILE
        try:
            ids = json.loads(ids_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(ids_file, None, None, f"unreadable ({exc})") from None
        num_docs = int(index.retriever.scores["num_docs"])
        if not isinstance(ids, list) or len(ids) != num_docs or not all(type(i) is int for i in ids):
            raise InputError(ids_file, None, None, f"expected a list of {num_docs} integer ids (cut short?)")
        index.ids = np.asarray(ids, dtype=np.int64)
        return index
