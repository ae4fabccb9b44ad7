"""The onnx backend against the torch path: same vectors (float32), close vectors (int8), cache keyed by the weights."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from llm_embedder import Embedder  # noqa: E402
from llm_embedder.fingerprint import embedder_fingerprint  # noqa: E402
from llm_embedder.models.loading import resolve_encoding  # noqa: E402

TASKS = ("qa", "icl", "chat", "lrlm", "tool", "convsearch")
TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "paris is the capital of france",
    "what is the capital city of the country?",
    "music " * 300,  # longer than every task's budget: truncation must match
    "a",
    "hello world, this is a dialogue about the river bank and money",
]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def model_copy(tiny_encoder_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx-model") / "tiny"
    shutil.copytree(tiny_encoder_dir, folder)
    return folder


@pytest.fixture(scope="module")
def pair(model_copy):
    kwargs = {"pooling": "mean", "instructions": True, "device": "cpu", "batch_size": 4}
    torch_side = Embedder.from_pretrained(model_copy, **kwargs)
    onnx_side = Embedder.from_pretrained(model_copy, backend="onnx", **kwargs)
    return torch_side, onnx_side


@pytest.mark.parametrize("task", TASKS)
def test_onnx_float32_equals_torch(pair, task):
    torch_side, onnx_side = pair
    assert onnx_side.backend == "onnx" and onnx_side.encoding_dtype == "float32"
    for side in ("encode_queries", "encode_keys"):
        ref = getattr(torch_side, side)(TEXTS, task=task)
        got = getattr(onnx_side, side)(TEXTS, task=task)
        assert got.shape == ref.shape and got.dtype == np.float32
        assert cosines(got, ref).min() >= 0.9999
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # normalised as on torch


def test_onnx_int8_close_to_float32(pair, model_copy):
    torch_side, _ = pair
    int8 = Embedder.from_pretrained(
        model_copy, pooling="mean", instructions=True, device="cpu", dtype="int8", backend="onnx"
    )
    assert int8.encoding_dtype == "int8"
    ref = torch_side.encode_keys(TEXTS, task="qa")
    got = int8.encode_keys(TEXTS, task="qa")
    # Stated tolerance: int8 weights move a vector by at most 0.02 in cosine (the random tiny
    # encoder's wide weights make this harsher than on a trained model).
    assert cosines(got, ref).min() >= 0.98
    assert not np.array_equal(got, ref)  # it did run quantised
    assert embedder_fingerprint(int8) != embedder_fingerprint(torch_side)


def test_onnx_file_rebuilt_when_weights_change(model_copy, tmp_path, monkeypatch):
    folder = tmp_path / "model"
    shutil.copytree(model_copy, folder, ignore=shutil.ignore_patterns("onnx"))
    monkeypatch.setenv("LLM_EMBEDDER_CACHE", str(tmp_path / "cache"))
    first = Embedder.from_pretrained(folder, pooling="cls", device="cpu", backend="onnx")
    file = first.runtime.file
    assert file.parent == tmp_path / "cache" / "onnx" and file.is_file()
    again = Embedder.from_pretrained(folder, pooling="cls", device="cpu", backend="onnx")
    assert again.runtime.file == file  # reused, not re-exported
    # Change the weights in the folder: a new file, and vectors that follow the new weights.
    changed = Embedder.from_pretrained(folder, pooling="cls", device="cpu")
    with torch.no_grad():
        changed.model.embeddings.word_embeddings.weight.mul_(-1.0)
    changed.save_pretrained(folder)
    rebuilt = Embedder.from_pretrained(folder, pooling="cls", device="cpu", backend="onnx")
    assert rebuilt.runtime.file != file
    reference = Embedder.from_pretrained(folder, pooling="cls", device="cpu")
    assert cosines(rebuilt.encode_keys(TEXTS, "qa"), reference.encode_keys(TEXTS, "qa")).min() >= 0.9999
    assert cosines(rebuilt.encode_keys(TEXTS, "qa"), first.encode_keys(TEXTS, "qa")).min() < 0.99


def test_the_export_is_cached_in_the_package_cache_never_in_the_model_folder(model_copy, tmp_path, monkeypatch):
    """Issue 24, section 4: a user's model folder is an input; nothing is written into it."""
    folder = tmp_path / "mine"
    shutil.copytree(model_copy, folder, ignore=shutil.ignore_patterns("onnx"))

    def snapshot(root):
        return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    before = snapshot(folder)
    monkeypatch.setenv("LLM_EMBEDDER_CACHE", str(tmp_path / "cache"))
    emb = Embedder.from_pretrained(folder, pooling="cls", device="cpu", backend="onnx")
    assert emb.runtime.file.parent == tmp_path / "cache" / "onnx"
    assert snapshot(folder) == before


@pytest.mark.parametrize(
    ("backend", "dtype", "expected"),
    [
        ("onnx", None, ("onnx", "float32")),
        ("onnx", "int8", ("onnx", "int8")),
        ("auto", "int8", ("onnx", "int8")),
        ("torch", "bf16", ("torch", "bf16")),
        ("auto", "bfloat16", ("torch", "bfloat16")),
    ],
)
def test_resolve_encoding(backend, dtype, expected):
    assert resolve_encoding(backend, dtype, torch.device("cpu")) == expected


@pytest.mark.parametrize(
    ("backend", "dtype", "message"),
    [("torch", "int8", "onnx backend"), ("onnx", "bfloat16", "bfloat16 runs on torch"), ("tf", None, "unknown")],
)
def test_resolve_encoding_rejects(backend, dtype, message):
    with pytest.raises(ValueError, match=message):
        resolve_encoding(backend, dtype, torch.device("cpu"))
