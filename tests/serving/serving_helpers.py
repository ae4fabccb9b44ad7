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


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(*args: str, port: int, timeout: float = 180):
    """``llm-embedder serve ARGS --port PORT`` as a child process, returned once ``/health`` answers."""
    import subprocess
    import time

    import httpx
    from processes import cli, subprocess_env

    proc = subprocess.Popen(
        cli("serve", *args, "--port", str(port)),
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not start")


def stop_server(proc) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except Exception:
        proc.kill()
        proc.wait()
