"""Collections over HTTP on a live server; and kill -9 of a server process during a stream of appends."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import threading
import time

import httpx
import pytest
from processes import cli, subprocess_env
from serving_helpers import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def live(engine, tmp_path_factory):
    from llm_embedder.serving.app import ServeSettings, create_app
    from llm_embedder.serving.collections import Collections
    from llm_embedder.serving.server import BackgroundServer
    from llm_embedder.serving.stores.sqlite_faiss import SqliteFaissStore

    collections = Collections(SqliteFaissStore(tmp_path_factory.mktemp("data")), engine)
    app = create_app(engine, ServeSettings(api_keys=(API_KEY,)), collections)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as client:
        yield client, collections
    collections.close()


def test_collections_over_http(live):
    client, collections = live
    assert client.post("/v1/collections", json={"name": "mem", "kind": "memory"}).json()["task"] == "chat"
    ids = client.post("/v1/collections/mem/items", json={"items": ["i like cats", {"text": "paris"}], "session": "a"})
    assert ids.status_code == 200 and len(ids.json()["ids"]) == 2
    hits = client.post("/v1/collections/mem/search", json={"query": "cats", "k": 5, "session": "a"}).json()["data"]
    assert sorted(h["text"] for h in hits) == ["i like cats", "paris"]
    same = collections.search("mem", "cats", k=5, session="a")  # the Python API sees the same
    assert [h["id"] for h in hits] == [h.id for h in same]
    assert client.post("/v1/collections/mem/search", json={"query": "cats", "session": "b"}).json()["data"] == []
    client.post("/v1/collections", json={"name": "kb", "kind": "knowledge"})
    client.post("/v1/collections/kb/items", json={"items": [{"id": "d1", "text": "paris is the capital of france"}]})
    body = {
        "messages": [{"role": "user", "content": "capital of france?"}],
        "needs": [{"need": "knowledge", "collection": "kb", "k": 1}, {"need": "memory", "collection": "mem", "k": 1}],
        "session": "a",
        "assemble": True,
    }
    out = client.post("/v1/augment", json=body).json()
    assert out["results"][0]["hits"][0]["id"] == "d1#0" and "Knowledge: paris is the capital" in out["prompt"]
    assert {c["name"] for c in client.get("/v1/collections").json()["data"]} == {"mem", "kb"}
    assert client.get("/v1/collections/mem/items", params={"session": "a"}).json()["data"][0]["text"] == "i like cats"


def test_collection_errors_over_http(live):
    client, _ = live
    for path, body, status in [
        ("/v1/collections", {"name": "..", "kind": "memory"}, 400),
        ("/v1/collections", {"name": "x", "kind": "novels"}, 400),
        ("/v1/collections/nope/items", {"items": ["x"]}, 404),
        ("/v1/collections/nope/search", {"query": "x"}, 404),
        ("/v1/collections/%2E%2E/search", {"query": "x"}, 400),
        ("/v1/augment", {"messages": [], "needs": []}, 400),
    ]:
        response = client.post(path, json=body)
        assert response.status_code == status, (path, response.text)
        assert "message" in response.json()["error"]
    client.post("/v1/collections", json={"name": "ex", "kind": "examples"})
    assert client.post("/v1/collections", json={"name": "ex", "kind": "tools"}).status_code == 409
    assert httpx.post(str(client.base_url) + "/v1/collections/ex/search", json={"query": "x"}).status_code == 401


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(model_dir, data_dir, port):
    cmd = cli("serve", "--model", str(model_dir), "--device", "cpu", "--port", str(port), "--data-dir", str(data_dir))
    proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
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


@pytest.mark.slow
def test_kill_9_loses_no_acknowledged_append(tiny_encoder_dir, tmp_path):
    """Ten kill -9 at random moments of a stream of appends: every acknowledged turn is there after restart."""
    rng = random.Random(0)
    data_dir = tmp_path / "data"
    acked: dict[str, str] = {}
    kill_points = 0
    for round_ in range(10):
        port = _free_port()
        proc = _start(tiny_encoder_dir, data_dir, port)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as client:
            if round_ == 0:
                assert client.post("/v1/collections", json={"name": "mem", "kind": "memory"}).status_code == 200
            stored = {r["id"]: r["text"] for r in client.get("/v1/collections/mem/items").json()["data"]}
            assert {k: stored.get(k) for k in acked} == acked  # nothing acknowledged was lost
            stop = threading.Event()

            def append(client=client, round_=round_, stop=stop):
                for i in range(10_000):
                    if stop.is_set():
                        return
                    turn_id = f"r{round_}-{i}"
                    text = f"turn {i} of round {round_}"
                    try:
                        response = client.post(
                            "/v1/collections/mem/items", json={"items": [{"id": turn_id, "text": text}], "session": "s"}
                        )
                    except httpx.TransportError:
                        return  # killed mid-request: not acknowledged
                    if response.status_code == 200:
                        acked[turn_id] = text

            writer = threading.Thread(target=append)
            writer.start()
            time.sleep(rng.uniform(0.05, 0.6))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kill_points += 1
            stop.set()
            writer.join()
    proc = _start(tiny_encoder_dir, data_dir, _free_port())
    try:
        base = f"http://127.0.0.1:{proc.args[proc.args.index('--port') + 1]}"
        stored = {r["id"]: r["text"] for r in httpx.get(base + "/v1/collections/mem/items").json()["data"]}
    finally:
        proc.terminate()
        proc.wait()
    assert kill_points == 10 and len(acked) >= 10
    assert {k: stored.get(k) for k in acked} == acked
