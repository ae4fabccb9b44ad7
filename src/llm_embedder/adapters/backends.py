"""Where an adapter's vectors come from: an Embedder in this process, or a server's /v1/embeddings.

The remote backend uses only the standard library (no HTTP client to install) and asks for base64,
the compact encoding.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import numpy as np

MAX_INPUTS = 2048  # the server's per-request limit


class InProcessBackend:
    def __init__(self, embedder: Any):
        self.embedder = embedder

    def embed(self, texts: Sequence[str], task: str, side: str) -> np.ndarray:
        encode = self.embedder.encode_queries if side == "query" else self.embedder.encode_keys
        return encode(list(texts), task)


class RemoteBackend:
    def __init__(self, base_url: str, api_key: str | None = None, model: str = "llm-embedder", timeout: float = 120):
        self.url = base_url.rstrip("/") + "/v1/embeddings"
        self.api_key = api_key
        self.model = model
        self.timeout = timeout

    def embed(self, texts: Sequence[str], task: str, side: str) -> np.ndarray:
        parts = [self._post(list(texts[i : i + MAX_INPUTS]), task, side) for i in range(0, len(texts), MAX_INPUTS)]
        return np.concatenate(parts) if parts else np.empty((0, 0), dtype=np.float32)

    def _post(self, texts: list[str], task: str, side: str) -> np.ndarray:
        body = {
            "input": texts,
            "model": self.model,
            "task": task,
            "input_type": side,
            "encoding_format": "base64",
            "truncate": "right",
        }
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode("utf-8"), headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data = json.load(response)["data"]
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            raise RuntimeError(f"{self.url} answered {exc.code}: {detail}") from None
        data.sort(key=lambda d: d["index"])
        return np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in data])


def backend(embedder: Any = None, base_url: str | None = None, api_key: str | None = None, model: str = "llm-embedder"):
    if (embedder is None) == (base_url is None):
        raise ValueError("give either an embedder (in-process) or base_url (a running llm-embedder serve)")
    return InProcessBackend(embedder) if embedder is not None else RemoteBackend(base_url, api_key, model)
