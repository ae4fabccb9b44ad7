"""What users notice at the HTTP edge: empty and mistyped inputs, errors in OpenAI's shape (500 and bad JSON
included), open docs, the model name the server was started with, /info, /metrics of every answer, access log."""

from __future__ import annotations

import logging

import httpx
import pytest
from serving_helpers import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}
ERROR_KEYS = {"message", "type", "param", "code"}


@pytest.fixture(scope="module")
def live(engine, tmp_path_factory):
    from llm_embedder.serving.app import ServeSettings, create_app
    from llm_embedder.serving.collections import Collections
    from llm_embedder.serving.server import BackgroundServer
    from llm_embedder.serving.stores.sqlite_faiss import SqliteFaissStore

    collections = Collections(SqliteFaissStore(tmp_path_factory.mktemp("data")), engine)
    settings = ServeSettings(
        api_keys=(API_KEY,), model="minilm", model_names=("minilm", "my-model"), max_body_bytes=64 << 10
    )
    settings.access_log = True
    with BackgroundServer(create_app(engine, settings, collections)) as server:
        yield server
    collections.close()


def post(server, body, headers=AUTH, **kwargs):
    return httpx.post(server.url + "/v1/embeddings", json=body, headers=headers, timeout=30, **kwargs)


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("", "empty_input"),
        (["a", ""], "empty_input"),
        ([[]], "empty_input"),
        ([True], "invalid_input"),
        ([1.5], "invalid_input"),
    ],
)
def test_empty_and_mistyped_inputs_are_refused(live, value, code):
    response = post(live, {"input": value})
    assert response.status_code == 400, value
    error = response.json()["error"]
    assert set(error) == ERROR_KEYS and error["code"] == code and error["param"] == "input"


def test_bad_bodies_get_one_clear_line(live):
    plain = httpx.post(live.url + "/v1/embeddings", content="hello", headers={**AUTH, "Content-Type": "text/plain"})
    assert plain.status_code == 400
    assert "Content-Type: application/json" in plain.json()["error"]["message"]
    broken = httpx.post(
        live.url + "/v1/embeddings", content='{"input": "a",,}', headers={**AUTH, "Content-Type": "application/json"}
    )
    error = broken.json()["error"]
    assert broken.status_code == 400 and error["param"] is None and error["code"] == "invalid_json"
    assert error["message"].startswith("malformed JSON at character 14")


def test_unexpected_errors_are_500_in_openai_shape(live, engine, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(engine, "_prepare", broken)  # tokenising, on either path
    response = post(live, {"input": "paris"})
    assert response.status_code == 500
    error = response.json()["error"]
    assert set(error) == ERROR_KEYS and error["type"] == "server_error" and "RuntimeError" in error["message"]


def test_docs_are_open_and_data_is_not(live):
    for path in ("/docs", "/openapi.json"):
        assert httpx.get(live.url + path).status_code == 200, path
    for path in ("/info", "/v1/models", "/v1/collections"):
        assert httpx.get(live.url + path).status_code == 401, path


def test_the_name_the_server_was_started_with_is_a_model(live, engine):
    for model in ("minilm", "my-model", "llm-embedder", "minilm/chat.key", "my-model/qa.query"):
        response = post(live, {"input": "paris", "model": model})
        assert response.status_code == 200, model
        assert response.json()["model"] == model
    assert post(live, {"input": "paris", "model": "minilm/nope.key"}).status_code == 404
    listed = {m["id"] for m in httpx.get(live.url + "/v1/models", headers=AUTH).json()["data"]}
    assert {"llm-embedder", "minilm", "my-model", "minilm/chat.key", "llm-embedder/qa.query"} <= listed
    assert len(listed) == 3 * (1 + 2 * len(engine.tasks))


def test_info_and_metrics_count_every_answer(live, engine, caplog):
    info = httpx.get(live.url + "/info", headers=AUTH).json()
    assert {"backend", "dtype", "version", "threads", "model_names"} <= set(info)
    assert info["backend"] == "torch" and info["model_names"] == ["llm-embedder", "minilm", "my-model"]
    with caplog.at_level(logging.INFO, logger="llm_embedder.access"):
        assert post(live, {"input": "paris"}, headers={}).status_code == 401
        assert post(live, {"input": ["x" * 1000] * 100}).status_code == 413
        httpx.post(live.url + "/v1/collections", json={"name": "kb", "kind": "knowledge"}, headers=AUTH)
        httpx.post(live.url + "/v1/collections/kb/search", json={"query": "x"}, headers=AUTH)
    assert '"POST /v1/embeddings" 401' in caplog.text and '"POST /v1/collections/kb/search" 200' in caplog.text
    text = httpx.get(live.url + "/metrics", headers=AUTH).text
    assert 'llm_embedder_requests_total{route="/v1/embeddings",status="401"}' in text
    assert 'llm_embedder_requests_total{route="/v1/embeddings",status="413"}' in text
    assert 'llm_embedder_http_request_seconds_count{method="POST",route="/v1/collections/{name}/search"}' in text
    assert "process_resident_memory_bytes" in text or "python_info" in text


def test_500_is_counted(live, engine, monkeypatch):
    monkeypatch.setattr(engine, "_prepare", lambda *a, **k: 1 / 0)
    assert post(live, {"input": "paris"}).status_code == 500
    text = httpx.get(live.url + "/metrics", headers=AUTH).text
    assert 'llm_embedder_requests_total{route="/v1/embeddings",status="500"}' in text


def test_the_fast_json_writer_reads_back_as_the_standard_one(monkeypatch):
    import json

    import numpy as np

    from llm_embedder.serving import http

    vectors = np.random.default_rng(0).standard_normal((3, 384)).astype(np.float32)
    vectors[0, :4] = [1e-7, -3.5e-5, 0.0, 1.0]  # exponents and integers, written differently by the two
    data = {"object": "list", "data": [{"index": i, "embedding": v} for i, v in enumerate(vectors.tolist())]}
    data["model"] = "llm-embedder/qa.query"
    standard = json.loads(http.json_response(data).body)
    assert json.loads(http.fast_json_response(data).body) == standard == json.loads(json.dumps(data))
    assert np.array_equal(np.array([row["embedding"] for row in standard["data"]], dtype=np.float32), vectors)
    monkeypatch.setattr(http, "_orjson", None)  # without orjson installed: the standard writer
    assert http.fast_json_response(data).body == http.json_response(data).body
