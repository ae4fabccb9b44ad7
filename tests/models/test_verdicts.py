"""``auto`` follows this machine's fidelity verdicts: fake verdict files in a temporary cache."""

from __future__ import annotations

import importlib.util
import json
import logging

import pytest
import torch

from llm_embedder import Embedder
from llm_embedder.models import verdicts
from llm_embedder.models.loading import default_encoding, resolve_encoding

ARCH = {"model_type": "bert", "hidden_size": 384, "layers": 6}
HAS_ONNX = importlib.util.find_spec("onnxruntime") is not None
DEFAULT = ("onnx", "float32") if HAS_ONNX else ("torch", "float32")
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_EMBEDDER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def entry(backend, dtype, passed, speed):
    return {"backend": backend, "dtype": dtype, "passed": passed, "texts_per_s": speed}


ENCODINGS = [
    entry("torch", "float32", True, 10.0),
    entry("onnx", "float32", True, 20.0),
    entry("torch", "bfloat16", True, 30.0),
    entry("onnx", "int8", False, 40.0),  # fastest, but failed the rule
]


def test_choose_the_fastest_that_passed():
    record = {"architecture": ARCH, "encodings": ENCODINGS}
    assert verdicts.choose(record, ARCH, has_onnx=True) == ("torch", "bfloat16")
    only_onnx = {"architecture": ARCH, "encodings": [ENCODINGS[0], ENCODINGS[1]]}
    assert verdicts.choose(only_onnx, ARCH, has_onnx=True) == ("onnx", "float32")
    assert verdicts.choose(only_onnx, ARCH, has_onnx=False) == ("torch", "float32")  # onnxruntime not installed
    assert verdicts.choose(record, {**ARCH, "layers": 12}, has_onnx=True) is None  # another architecture
    assert verdicts.choose({"architecture": ARCH, "encodings": [ENCODINGS[3]]}, ARCH, has_onnx=True) is None
    assert verdicts.choose(None, ARCH, has_onnx=True) is None
    garbled = {
        "architecture": ARCH,
        "encodings": [{"backend": "tpu", "dtype": "int4", "passed": True, "texts_per_s": 99}],
    }
    assert verdicts.choose(garbled, ARCH, has_onnx=True) is None


def test_default_encoding_reads_this_machines_file(cache):
    assert default_encoding(CPU, ARCH) == DEFAULT  # no verdicts yet
    path = verdicts.write_verdicts({"architecture": ARCH, "encodings": ENCODINGS})
    assert path.parent == cache / verdicts.FOLDER and path == verdicts.verdict_path()
    assert json.loads(path.read_text())["machine"] == verdicts.machine()
    assert default_encoding(CPU, ARCH) == ("torch", "bfloat16")
    assert resolve_encoding("auto", None, CPU, ARCH) == ("torch", "bfloat16")
    assert resolve_encoding("auto", None, CPU) == DEFAULT  # architecture unknown: the default
    assert resolve_encoding("auto", "float32", CPU, ARCH) == ("torch", "float32")  # an explicit dtype wins
    assert default_encoding(CPU, {**ARCH, "hidden_size": 768}) == DEFAULT


def test_another_machine_finds_no_verdict(monkeypatch):
    verdicts.write_verdicts({"architecture": ARCH, "encodings": ENCODINGS})
    other = {**verdicts.machine(), "cpu": "another CPU"}
    monkeypatch.setattr(verdicts, "machine", lambda: other)
    assert verdicts.read_verdicts() is None
    assert default_encoding(CPU, ARCH) == DEFAULT


def test_a_dtype_this_version_does_not_run_is_skipped():
    verdicts.write_verdicts({"architecture": ARCH, "encodings": [entry("onnx", "int4", True, 99.0)]})
    assert default_encoding(CPU, ARCH) == DEFAULT


def test_a_damaged_file_is_reported_and_ignored(caplog):
    path = verdicts.verdict_path()
    path.parent.mkdir(parents=True)
    path.write_text('{"kind": ', encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="llm_embedder.models.verdicts"):
        assert verdicts.read_verdicts() is None
        assert default_encoding(CPU, ARCH) == DEFAULT
    assert str(path) in caplog.text and "malformed JSON" in caplog.text
    path.write_text(json.dumps({"kind": "something else"}), encoding="utf-8")
    assert verdicts.read_verdicts() is None


def test_architecture_of_a_config():
    from transformers import BertConfig

    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    assert verdicts.architecture(config) == {"model_type": "bert", "hidden_size": 32, "layers": 2}
    assert verdicts.architecture(config.to_dict()) == verdicts.architecture(config)


def test_from_pretrained_auto_follows_the_verdict(tiny_encoder_dir):
    from transformers import AutoConfig

    arch = verdicts.architecture(AutoConfig.from_pretrained(tiny_encoder_dir))
    verdicts.write_verdicts({"architecture": arch, "encodings": [entry("torch", "bfloat16", True, 5.0)]})
    embedder = Embedder.from_pretrained(tiny_encoder_dir, backend="auto", device="cpu")
    assert (embedder.backend, embedder.encoding_dtype) == ("torch", "bfloat16")
    explicit = Embedder.from_pretrained(tiny_encoder_dir, backend="auto", dtype="float32", device="cpu")
    assert (explicit.backend, explicit.encoding_dtype) == ("torch", "float32")
