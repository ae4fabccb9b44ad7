"""The HTTP server, live on a free port: the real openai client, auth, limits, truncation, /info, /metrics."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from serving_helpers import API_KEY, LONG, TEXTS, min_cosine, reference

from llm_embedder.fingerprint import embedder_fingerprint
from llm_embedder.serving.gate import FINGERPRINT_HEADER

openai = pytest.importorskip("openai")
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0)


def post(server, body, headers=AUTH, **kwargs):
    return httpx.post(server.url + "/v1/embeddings", json=body, headers=headers, timeout=30, **kwargs)


def as_array(data):
    """Embeddings of a response: float lists, or base64 strings of little-endian float32."""
    rows = [d.embedding for d in data]
    if rows and isinstance(rows[0], str):
        return np.stack([np.frombuffer(base64.b64decode(r), dtype="<f4") for r in rows])
    return np.array(rows, dtype=np.float32)


# None: the client's default, which asks for base64 and decodes it itself
@pytest.mark.parametrize("encoding_format", ["float", "base64", None])
def test_openai_client_equals_in_process(client, tiny_embedder, encoding_format):
    fmt = {} if encoding_format is None else {"encoding_format": encoding_format}
    got = client.embeddings.create(model="llm-embedder/chat.key", input=TEXTS, **fmt)
    vectors = as_array(got.data)
    assert [d.index for d in got.data] == list(range(len(TEXTS)))
    assert min_cosine(vectors, reference(tiny_embedder, TEXTS, "chat", "key")) >= 1 - 1e-6
    assert got.usage.prompt_tokens == got.usage.total_tokens > 0
    # the extension fields through extra_body, and the defaults (qa, query) with the plain name
    extra = client.embeddings.create(
        model="llm-embedder", input=TEXTS, extra_body={"task": "tool", "input_type": "document"}
    )
    assert (
        min_cosine(np.array([d.embedding for d in extra.data]), reference(tiny_embedder, TEXTS, "tool", "key"))
        >= 1 - 1e-6
    )
    plain = client.embeddings.create(model="llm-embedder", input="paris", **fmt)
    assert min_cosine(as_array(plain.data), reference(tiny_embedder, ["paris"], "qa", "query")) >= 1 - 1e-6


def test_twelve_pairs_under_concurrent_mixed_requests(client, tiny_embedder):
    pairs = [(task, side) for task in tiny_embedder.tasks for side in ("query", "key")]
    texts = {pair: [f"{t} {pair[0]} {i}" for i, t in enumerate(TEXTS)] for pair in pairs}

    def call(pair):
        fmt = "base64" if pair[1] == "key" else "float"
        got = client.embeddings.create(
            model=f"llm-embedder/{pair[0]}.{pair[1]}", input=texts[pair], encoding_format=fmt
        )
        return as_array(got.data)

    with ThreadPoolExecutor(12) as pool:
        results = dict(zip(pairs * 3, pool.map(call, pairs * 3), strict=True))
    for pair in pairs:
        assert min_cosine(results[pair], reference(tiny_embedder, texts[pair], *pair)) >= 1 - 1e-6, pair


def test_auth_and_fingerprint_header(server, engine, tiny_embedder):
    body = {"input": "paris", "model": "llm-embedder"}
    fingerprint = embedder_fingerprint(tiny_embedder)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
        response = post(server, body, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert response.headers[FINGERPRINT_HEADER] == fingerprint
    assert post(server, body, headers={"Authorization": "Bearer other-key"}).status_code == 200
    for path in ("/info", "/metrics", "/ready", "/v1/tasks"):
        assert httpx.get(server.url + path).status_code == 401, path
    health = httpx.get(server.url + "/health")
    assert health.status_code == 200 and health.headers[FINGERPRINT_HEADER] == fingerprint
    info = httpx.get(server.url + "/info", headers=AUTH).json()
    assert info["fingerprint"] == fingerprint == engine.fingerprint
    assert info["dimension"] == tiny_embedder.dim and info["pooling"] == "cls"


def test_limits(server, tiny_embedder):
    response = post(server, {"input": ["a"] * 2049, "model": "llm-embedder"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "too_many_inputs"
    assert post(server, {"input": ["a"] * 2048, "model": "llm-embedder"}).status_code == 200
    big = {"input": ["x" * 1000] * 300, "model": "llm-embedder"}  # ~300 KB, over the test server's 256 KiB
    response = post(server, big)
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"

    def chunks():  # no content-length: the limit is counted while reading
        data = json.dumps(big).encode()
        for start in range(0, len(data), 8192):
            yield data[start : start + 8192]

    response = httpx.post(
        server.url + "/v1/embeddings", content=chunks(), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    response = post(server, {"input": "paris", "dimensions": 7})
    assert response.status_code == 400 and response.json()["error"]["param"] == "dimensions"
    assert post(server, {"input": "paris", "dimensions": tiny_embedder.dim}).status_code == 200
    for body, code in [
        ({"input": "paris", "model": "gpt-4"}, 404),
        ({"input": "paris", "model": "llm-embedder/nope.query"}, 404),
        ({"input": "paris", "task": "nope"}, 400),
        ({"input": "paris", "input_type": "answer"}, 400),
        ({"input": "paris", "model": "llm-embedder/qa.query", "task": "chat"}, 400),
        ({"input": []}, 400),
        ({"input": [[1, 2, 10**9]]}, 400),
        ({"input": 3}, 400),
    ]:
        response = post(server, body)
        assert response.status_code == code, body
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_queue_full_is_429_with_retry_after(tiny_embedder):
    from llm_embedder.serving.app import create_app
    from llm_embedder.serving.engine import Engine
    from llm_embedder.serving.server import BackgroundServer

    with Engine(tiny_embedder, max_queue_inputs=2) as engine, BackgroundServer(create_app(engine)) as small:
        response = post(small, {"input": ["a", "b", "c"]}, headers={})
        assert response.status_code == 429 and response.headers["Retry-After"] == "1"
        assert response.json()["error"]["code"] == "queue_full"


def test_truncation_is_explicit_and_counted(server, tiny_embedder):
    response = post(server, {"input": ["paris", LONG], "model": "llm-embedder/qa.query"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "input_too_long"
    response = post(server, {"input": ["paris", LONG], "model": "llm-embedder/qa.query", "truncate": "right"})
    assert response.status_code == 200 and response.json()["usage"]["truncated_inputs"] == 1
    vectors = np.array([d["embedding"] for d in response.json()["data"]])
    assert min_cosine(vectors, reference(tiny_embedder, ["paris", LONG], "qa", "query")) >= 1 - 1e-6
    left = post(server, {"input": [LONG], "model": "llm-embedder/qa.query", "truncate": "left"}).json()
    assert left["usage"]["truncated_inputs"] == 1
    metrics = httpx.get(server.url + "/metrics", headers=AUTH).text
    assert 'llm_embedder_truncated_inputs_total{side="query",task="qa"} 2.0' in metrics
    assert "llm_embedder_batch_inputs_bucket" in metrics and "llm_embedder_queue_seconds_count" in metrics


def test_token_arrays_models_and_tasks(server, tiny_embedder):
    ids = tiny_embedder.tokenizer("hello world", add_special_tokens=False)["input_ids"]
    data = post(server, {"input": [ids], "model": "llm-embedder/qa.key"}).json()["data"]
    ref = reference(tiny_embedder, ["hello world"], "qa", "key")
    assert min_cosine(np.array([data[0]["embedding"]]), ref) >= 1 - 1e-6
    models = httpx.get(server.url + "/v1/models", headers=AUTH).json()["data"]
    assert len(models) == 13 and "llm-embedder/convsearch.key" in {m["id"] for m in models}
    tasks = httpx.get(server.url + "/v1/tasks", headers=AUTH).json()["data"]
    assert {t["id"]: t["query_instruction"] for t in tasks} == {
        n: t.query_instruction for n, t in tiny_embedder.tasks.items()
    }
    assert httpx.get(server.url + "/ready", headers=AUTH).status_code == 200
