"""The server encodes with the backend and dtype it reports, and its fingerprint describes the vectors:
a data dir filled in-process (torch, the library's default) is served by ``serve`` (backend auto)."""

from __future__ import annotations

import shutil

import httpx
import numpy as np
import pytest
from serving_helpers import free_port, start_server, stop_server

from llm_embedder import Embedder
from llm_embedder.serving.collections import Collections, Conflict
from llm_embedder.serving.engine import Engine

pytest.importorskip("onnxruntime")
TEXTS = ["paris is the capital of france", "i like music", "the cat sat on the mat"]
KW = {"pooling": "cls", "instructions": True, "device": "cpu"}


@pytest.fixture(scope="module")
def model_copy(tiny_encoder_dir, tmp_path_factory):
    """A copy of the tiny encoder: its ONNX exports are cached beside it, not beside the shared one."""
    folder = tmp_path_factory.mktemp("backends") / "tiny"
    shutil.copytree(tiny_encoder_dir, folder)
    return folder


@pytest.fixture(scope="module")
def embedders(model_copy):
    return {
        (backend, dtype): Embedder.from_pretrained(model_copy, backend=backend, dtype=dtype, **KW)
        for backend, dtype in [("torch", "float32"), ("onnx", "float32"), ("onnx", "int8")]
    }


def test_engine_encodes_with_the_backend_it_reports(embedders):
    int8 = embedders[("onnx", "int8")]
    torch_side = embedders[("torch", "float32")]
    with Engine(int8) as engine:
        served = engine.embed(TEXTS, "qa", "key")
    np.testing.assert_allclose(served, int8.encode_keys(TEXTS, "qa"), atol=1e-6)
    assert np.abs(served - torch_side.encode_keys(TEXTS, "qa")).max() > 1e-4  # int8 is not torch


def test_info_names_backend_dtype_and_version(embedders):
    from llm_embedder import __version__
    from llm_embedder.serving.app import create_app
    from llm_embedder.serving.server import BackgroundServer

    with Engine(embedders[("onnx", "int8")]) as engine, BackgroundServer(create_app(engine)) as server:
        info = httpx.get(server.url + "/info").json()
    assert (info["backend"], info["dtype"], info["version"]) == ("onnx", "int8", __version__)
    assert info["threads"]["tokenizers"] >= 1 and info["threads"]["model"] >= 1


def test_fingerprint_describes_the_vectors(embedders, tmp_path):
    from llm_embedder.serving.stores.sqlite_faiss import SqliteFaissStore

    engines = {key: Engine(e, model_name="tiny") for key, e in embedders.items()}
    assert engines[("torch", "float32")].fingerprint == engines[("onnx", "float32")].fingerprint  # same vectors
    assert engines[("onnx", "int8")].fingerprint != engines[("torch", "float32")].fingerprint
    with engines[("torch", "float32")] as engine:
        filled = Collections(SqliteFaissStore(tmp_path), engine)
        filled.create("ex", "examples")
        filled.add("ex", TEXTS)
        expected = [h.id for h in filled.search("ex", "music", k=3)]
        filled.close()
    with engines[("onnx", "float32")] as engine:
        served = Collections(SqliteFaissStore(tmp_path), engine)
        assert [h.id for h in served.search("ex", "music", k=3)] == expected
        served.close()
    with engines[("onnx", "int8")] as engine:
        other = Collections(SqliteFaissStore(tmp_path), engine)
        with pytest.raises(Conflict) as refused:
            other.search("ex", "music")
        other.close()
    message = str(refused.value)
    assert "backend torch here onnx" in message and "dtype float32 here int8" in message
    assert f"collections reembed --data-dir {tmp_path}" in message


def _readme_in_process(model, data_dir):
    """The README's in-process collections example, with the model and folder as parameters."""
    with Engine(Embedder.from_pretrained(model, instructions="llm-embedder")) as engine:
        memory = Collections(open_sqlite(data_dir), engine)
        memory.create("mem", "memory")
        memory.add("mem", ["user: I love jazz"], session="bob")
        hits = memory.search("mem", "what music do I like?", k=1, session="bob")
        memory.close()
    return hits


def open_sqlite(path):
    from llm_embedder.serving.stores.sqlite_faiss import SqliteFaissStore

    return SqliteFaissStore(path)


@pytest.mark.parametrize("model", ["tiny", pytest.param("minilm", marks=[pytest.mark.slow, pytest.mark.integration])])
def test_readme_in_process_example_then_readme_serve_command(model, model_copy, tmp_path):
    model = str(model_copy) if model == "tiny" else model
    data_dir = tmp_path / "py-data"
    hits = _readme_in_process(model, data_dir)
    port = free_port()
    # The README's serve command (its key file left out), on the folder the Python example filled.
    proc = start_server(
        "--model", model, "--instructions", "llm-embedder", "--data-dir", str(data_dir), "--device", "cpu", port=port
    )
    try:
        base = f"http://127.0.0.1:{port}"
        info = httpx.get(base + "/info").json()
        body = {"query": "what music do I like?", "k": 1, "session": "bob"}
        response = httpx.post(base + "/v1/collections/mem/search", json=body, timeout=60)
    finally:
        stop_server(proc)
    assert info["backend"] == "onnx"  # auto picked another backend than the library's torch default
    assert response.status_code == 200, response.text
    got = response.json()["data"]
    assert [h["id"] for h in got] == [h.id for h in hits]
    assert got[0]["score"] == pytest.approx(hits[0].score, abs=1e-5)
