"""Fixtures for the serving tests: an engine on the tiny encoder and a live server on a free port."""

from __future__ import annotations

import pytest
from serving_helpers import API_KEY, STORES, open_test_store

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def engine(tiny_embedder):
    from llm_embedder.serving.engine import Engine

    with Engine(tiny_embedder) as running:
        yield running


@pytest.fixture(scope="module")
def server(engine):
    from llm_embedder.serving.app import ServeSettings, create_app
    from llm_embedder.serving.server import BackgroundServer

    settings = ServeSettings(api_keys=(API_KEY, "other-key"), max_body_bytes=256 << 10)
    with BackgroundServer(create_app(engine, settings)) as running:
        yield running


@pytest.fixture(params=STORES)
def store_kind(request):
    if request.param == "qdrant":
        pytest.importorskip("qdrant_client")
    return request.param


@pytest.fixture
def collections(engine, store_kind, tmp_path):
    from llm_embedder.serving.collections import Collections

    opened = Collections(open_test_store(store_kind, tmp_path / "data"), engine)
    yield opened
    opened.close()
