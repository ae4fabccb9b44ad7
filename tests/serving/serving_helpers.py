"""Constants and checks shared by the serving tests (importable: pytest puts this folder on sys.path)."""

from __future__ import annotations

import numpy as np

API_KEY = "test-key-1"
TEXTS = ["hello world", "the quick brown fox jumps over the lazy dog " * 4, "paris", "what is the capital of france"]
LONG = "the quick brown fox jumps over the lazy dog " * 60  # ~540 tokens, over every default budget


def reference(embedder, texts, task, side):
    """In-process embeddings, the standard the server must meet."""
    return (embedder.encode_queries if side == "query" else embedder.encode_keys)(texts, task)


def min_cosine(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


STORES = ["sqlite", "qdrant"]


def open_test_store(kind, path):
    from llm_embedder.serving.stores import open_store

    return open_store({"sqlite": "sqlite", "qdrant": "qdrant-local"}[kind], str(path))
