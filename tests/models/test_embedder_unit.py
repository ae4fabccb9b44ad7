"""Embedder behaviour on a tiny random BERT: shapes, order, instructions, truncation, pooling, persistence."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from llm_embedder import Embedder
from llm_embedder.models import zoo
from llm_embedder.models.embedder import POOLINGS, SETTINGS_FILE, pool
from llm_embedder.tasks import DEFAULT_TASKS, TaskTable

# Texts of very different lengths (1 to ~90 tokens), in no particular order.
TEXTS = [
    "cat",
    "the quick brown fox jumps over the lazy dog " * 8,
    "paris is the capital of france",
    "a",
    "music " * 40,
    "where is the river bank? the money is in the bank by the river.",
    "sun moon",
]
# Words that are single tokens in the tiny vocabulary.
_WORD_TEXT = "cat dog sun moon star river bank money paris france music song water fire earth air"
WORDS = _WORD_TEXT.split()


def _load(path, **kwargs):
    return Embedder.from_pretrained(path, device="cpu", **kwargs)


def _cos_rows(a, b):
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def hf(tiny_encoder_dir):
    """The tiny encoder as plain transformers objects, for manual computations."""
    from transformers import AutoModel, AutoTokenizer

    return AutoModel.from_pretrained(tiny_encoder_dir).eval(), AutoTokenizer.from_pretrained(tiny_encoder_dir)


# ----------------------------------------------------------------------------- shapes and order
def test_output_float32_unit_norm(tiny_embedder):
    out = tiny_embedder.encode(TEXTS, max_length=256)
    assert out.dtype == np.float32
    assert out.shape == (len(TEXTS), 32) == (len(TEXTS), tiny_embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    # distinct texts get distinct vectors (the tiny encoder is random but not degenerate)
    sims = out @ out.T
    assert np.max(sims[~np.eye(len(TEXTS), dtype=bool)]) < 0.999


def test_order_restored_after_length_sorting(tiny_embedder):
    batched = tiny_embedder.encode(TEXTS, max_length=256, batch_size=2)
    one_by_one = np.stack([tiny_embedder.encode([t], max_length=256)[0] for t in TEXTS])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    # and with queries of a task
    queries = tiny_embedder.encode_queries(TEXTS, "chat", batch_size=3)
    single = np.stack([tiny_embedder.encode_queries([t], "chat")[0] for t in TEXTS])
    np.testing.assert_allclose(queries, single, atol=1e-5)


def test_duplicates_and_batch_size_independence(tiny_embedder):
    texts = TEXTS + TEXTS[::-1]
    a = tiny_embedder.encode(texts, max_length=64, batch_size=1)
    b = tiny_embedder.encode(texts, max_length=64, batch_size=100)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a[: len(TEXTS)], a[len(TEXTS) :][::-1], atol=1e-5)


def test_empty_input(tiny_embedder):
    assert tiny_embedder.encode([], max_length=16).shape == (0, 32)
    assert tiny_embedder.encode_queries([], "qa").shape == (0, 32)
    assert tiny_embedder.encode_keys([], "tool").shape == (0, 32)
    assert tiny_embedder.encode_queries([], "qa").dtype == np.float32


def test_single_string_is_a_type_error(tiny_embedder):
    with pytest.raises(TypeError):
        tiny_embedder.encode("hello world", max_length=16)
    with pytest.raises(TypeError):
        tiny_embedder.encode_queries("hello world", "qa")
    with pytest.raises(TypeError):
        tiny_embedder.encode_keys("hello world", "qa")


# ----------------------------------------------------------------------------- instructions
@pytest.mark.parametrize("task", ["qa", "tool", "lrlm"])
def test_instruction_applied_exactly_once(tiny_embedder, task):
    spec = tiny_embedder.tasks[task]
    assert spec.query_instruction and spec.key_instruction
    texts = TEXTS[:4]
    queries = tiny_embedder.encode_queries(texts, task)
    keys = tiny_embedder.encode_keys(texts, task)
    manual_q = tiny_embedder.encode([spec.query_instruction + t for t in texts], max_length=spec.query_max_length)
    manual_k = tiny_embedder.encode([spec.key_instruction + t for t in texts], max_length=spec.key_max_length)
    np.testing.assert_allclose(queries, manual_q, atol=1e-6)
    np.testing.assert_allclose(keys, manual_k, atol=1e-6)
    # not zero, not twice
    twice = tiny_embedder.encode([spec.query_instruction * 2 + t for t in texts], max_length=256)
    bare = tiny_embedder.encode(texts, max_length=256)
    assert np.all(_cos_rows(queries, twice) < 0.9999)
    assert np.all(_cos_rows(queries, bare) < 0.9999)
    # queries and keys of the same text differ (different instructions)
    assert np.all(_cos_rows(queries, keys) < 0.9999)


def test_tasks_differ(tiny_embedder):
    qa = tiny_embedder.encode_queries(TEXTS[:3], "qa")
    tool = tiny_embedder.encode_queries(TEXTS[:3], "tool")
    assert np.all(_cos_rows(qa, tool) < 0.9999)


def test_unknown_task_names_known_tasks(tiny_embedder):
    with pytest.raises(ValueError) as err:
        tiny_embedder.encode_queries(["x"], "summarise")
    for name in ("qa", "icl", "chat", "lrlm", "tool", "convsearch"):
        assert name in str(err.value)
    with pytest.raises(ValueError, match="known tasks"):
        tiny_embedder.encode_keys(["x"], "summarise")


# ----------------------------------------------------------------------------- truncation
def test_truncation_at_task_max_length(tiny_embedder):
    tok = tiny_embedder.tokenizer
    spec = tiny_embedder.tasks["qa"]
    assert spec.query_max_length == 256
    words = [WORDS[i % len(WORDS)] for i in range(400)]
    assert all(len(tok.tokenize(w)) == 1 for w in WORDS)
    n_instr = len(tok(spec.query_instruction, add_special_tokens=False)["input_ids"])
    room = 256 - 2 - n_instr  # [CLS] and [SEP]

    full = tiny_embedder.encode_queries([" ".join(words)], "qa")
    cut = tiny_embedder.encode_queries([" ".join(words[:room])], "qa")
    shorter = tiny_embedder.encode_queries([" ".join(words[: room - 1])], "qa")
    np.testing.assert_allclose(full, cut, atol=1e-5)
    # the cut is exactly at the budget: one token less is a (small, at 250 tokens) but real change
    assert np.linalg.norm(full - shorter) > 20 * np.linalg.norm(full - cut) + 1e-4


def test_truncation_follows_overridden_budget(tiny_encoder_dir):
    emb = _load(tiny_encoder_dir, tasks={"qa": {"query_max_length": 12}}, instructions=True)
    assert emb.tasks["qa"].query_max_length == 12 and emb.tasks["qa"].key_max_length == 256
    tok = emb.tokenizer
    n_instr = len(tok(emb.tasks["qa"].query_instruction, add_special_tokens=False)["input_ids"])
    room = 12 - 2 - n_instr
    assert room > 0
    a = emb.encode_queries([" ".join(WORDS)], "qa")
    b = emb.encode_queries([" ".join(WORDS[:room])], "qa")
    np.testing.assert_allclose(a, b, atol=1e-5)
    # keys keep the long budget: more words change the key vector
    ka = emb.encode_keys([" ".join(WORDS)], "qa")
    kb = emb.encode_keys([" ".join(WORDS[:room])], "qa")
    assert _cos_rows(ka, kb)[0] < 0.9999


# ----------------------------------------------------------------------------- pooling
@pytest.mark.parametrize("method", ["cls", "mean", "last"])
def test_pooling_matches_manual_computation(tiny_encoder_dir, hf, method):
    model, tokenizer = hf
    emb = _load(tiny_encoder_dir, pooling=method, instructions=False)
    assert emb.pooling == method
    got = emb.encode(TEXTS, max_length=256, batch_size=4)
    for text, vector in zip(TEXTS, got, strict=True):
        with torch.no_grad():
            hidden = model(**tokenizer([text], return_tensors="pt")).last_hidden_state[0]  # no padding
        manual = {"cls": hidden[0], "mean": hidden.mean(0), "last": hidden[-1]}[method]
        manual = torch.nn.functional.normalize(manual, dim=-1).numpy()
        np.testing.assert_allclose(vector, manual, atol=1e-5)


def test_pool_function_with_padding():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    assert torch.equal(pool(hidden, mask, "cls"), hidden[:, 0])
    assert torch.allclose(pool(hidden, mask, "mean")[1], hidden[1, :2].mean(0))
    assert torch.allclose(pool(hidden, mask, "mean")[0], hidden[0].mean(0))
    assert torch.equal(pool(hidden, mask, "last"), torch.stack([hidden[0, 3], hidden[1, 1]]))
    with pytest.raises(ValueError, match="unknown pooling"):
        pool(hidden, mask, "max")


def test_unknown_pooling(tiny_encoder_dir, tiny_embedder):
    assert POOLINGS == ("cls", "mean", "last")
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        _load(tiny_encoder_dir, pooling="max")
    with pytest.raises(ValueError, match="known: cls, mean, last"):
        Embedder(tiny_embedder.model, tiny_embedder.tokenizer, pooling="pooler")


def test_normalize_false(tiny_encoder_dir, tiny_embedder):
    raw = _load(tiny_encoder_dir, pooling="cls", normalize=False, instructions=True)
    assert raw.normalize is False
    vectors = raw.encode_queries(TEXTS, "qa")
    norms = np.linalg.norm(vectors, axis=1)
    assert not np.allclose(norms, 1.0, atol=1e-3)
    np.testing.assert_allclose(vectors / norms[:, None], tiny_embedder.encode_queries(TEXTS, "qa"), atol=1e-5)


def test_forward_has_gradients_and_encode_restores_training_mode(tiny_encoder_dir):
    emb = _load(tiny_encoder_dir, pooling="mean")
    batch = emb.collate(emb.tokenize(TEXTS[:3], 32), [0, 1, 2])
    out = emb(**batch)
    assert out.shape == (3, 32) and out.requires_grad
    out.sum().backward()
    assert emb.model.embeddings.word_embeddings.weight.grad is not None

    emb.model.train()
    a = emb.encode(TEXTS, max_length=32)
    b = emb.encode(TEXTS, max_length=32)
    np.testing.assert_array_equal(a, b)  # dropout off while encoding
    assert emb.model.training  # and the caller's mode is restored


def test_pooler_head_dropped(tiny_embedder):
    assert getattr(tiny_embedder.model, "pooler", None) is None


# ----------------------------------------------------------------------------- settings resolution
def test_unknown_folder_defaults(tiny_encoder_dir):
    emb = _load(tiny_encoder_dir)
    assert emb.pooling == "cls"
    assert emb.normalize is True
    assert all(t.query_instruction == "" and t.key_instruction == "" for t in emb.tasks.values())
    assert list(emb.tasks) == list(DEFAULT_TASKS)


@pytest.mark.parametrize(
    "instructions,expected",
    [
        (True, ("Represent this query for retrieving relevant documents: ", "Represent this document for retrieval: ")),
        (False, ("", "")),
        ("bge", ("Represent this sentence for searching relevant passages: ", "")),
        ("e5", ("query: ", "passage: ")),
        ("llm-embedder", None),
    ],
)
def test_instructions_override(tiny_encoder_dir, instructions, expected):
    emb = _load(tiny_encoder_dir, instructions=instructions)
    qa = emb.tasks["qa"]
    if expected is None:
        expected = (DEFAULT_TASKS["qa"].query_instruction, DEFAULT_TASKS["qa"].key_instruction)
    assert (qa.query_instruction, qa.key_instruction) == expected


def test_bad_instruction_set(tiny_encoder_dir):
    with pytest.raises(ValueError, match="unknown instruction set"):
        _load(tiny_encoder_dir, instructions="instructor")


def test_tasks_as_dict(tiny_encoder_dir):
    emb = _load(
        tiny_encoder_dir,
        instructions=True,
        tasks={"recipes": {"query_instruction": "Find a recipe for: ", "key_instruction": "Recipe: "}},
    )
    assert emb.tasks["recipes"].query_instruction == "Find a recipe for: "
    assert emb.tasks["qa"].query_instruction == DEFAULT_TASKS["qa"].query_instruction
    got = emb.encode_queries(["cat soup"], "recipes")
    np.testing.assert_allclose(got, emb.encode(["Find a recipe for: cat soup"], max_length=256), atol=1e-6)


def test_tasks_as_yaml_path(tiny_encoder_dir, tmp_path):
    file = tmp_path / "tasks.yaml"
    file.write_text(
        "tasks:\n  tool:\n    query_instruction: 'Welches Werkzeug hilft bei: '\n    query_max_length: 64\n",
        encoding="utf-8",
    )
    emb = _load(tiny_encoder_dir, tasks=file)
    assert emb.tasks["tool"].query_instruction == "Welches Werkzeug hilft bei: "
    assert emb.tasks["tool"].query_max_length == 64
    assert emb.tasks["tool"].key_instruction == ""  # unknown folder: instructions off elsewhere
    emb2 = _load(tiny_encoder_dir, tasks=str(file))
    assert emb2.tasks == emb.tasks


def test_tasks_as_table(tiny_encoder_dir):
    table = TaskTable({"only": DEFAULT_TASKS["qa"]})
    emb = _load(tiny_encoder_dir, tasks=table)
    assert list(emb.tasks) == ["only"]


def test_tasks_yaml_error_surfaces(tiny_encoder_dir, tmp_path):
    from llm_embedder.errors import InputError

    with pytest.raises(InputError, match="not found"):
        _load(tiny_encoder_dir, tasks=tmp_path / "missing.yaml")


def test_sentence_transformers_pooling_config_is_read(tiny_encoder_dir, tmp_path):
    folder = tmp_path / "st"
    shutil.copytree(tiny_encoder_dir, folder)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True})
    )
    assert _load(folder).pooling == "mean"
    assert _load(folder, pooling="last").pooling == "last"  # arguments win


def test_known_hub_settings_are_applied(tiny_encoder_dir, monkeypatch):
    """``BAAI/llm-embedder`` (hub, not reachable here) gets CLS pooling and its own instructions: serve
    the tiny folder under that name and load it as a user would."""
    real_locate = zoo.locate
    monkeypatch.setattr(
        zoo, "locate", lambda name: str(tiny_encoder_dir) if str(name) == "BAAI/llm-embedder" else real_locate(name)
    )
    emb = Embedder.from_pretrained("BAAI/llm-embedder", device="cpu")
    assert emb.pooling == "cls"
    assert emb.tasks == DEFAULT_TASKS
    emb = Embedder.from_pretrained("BAAI/llm-embedder", device="cpu", instructions=False, pooling="mean")
    assert emb.pooling == "mean"
    assert emb.tasks["qa"].query_instruction == ""


# ----------------------------------------------------------------------------- save / load
def test_save_load_round_trip(tiny_encoder_dir, tmp_path):
    emb = _load(
        tiny_encoder_dir,
        pooling="mean",
        normalize=False,
        instructions=True,
        tasks={
            "recipes": {
                "query_instruction": "Find a recipe for: ",
                "key_instruction": "Recipe: ",
                "key_max_length": 64,
            },
            "qa": {"query_max_length": 32},
        },
    )
    emb.save_pretrained(tmp_path / "saved")
    settings = json.loads((tmp_path / "saved" / SETTINGS_FILE).read_text())
    assert settings["pooling"] == "mean" and settings["normalize"] is False
    assert settings["tasks"]["recipes"]["key_max_length"] == 64

    again = _load(tmp_path / "saved")
    assert again.pooling == "mean"
    assert again.normalize is False
    assert again.tasks == emb.tasks
    assert list(again.tasks) == list(emb.tasks)
    assert again.tasks["qa"].query_max_length == 32
    texts = TEXTS[:5]
    for task in ("recipes", "qa", "icl"):
        np.testing.assert_allclose(again.encode_queries(texts, task), emb.encode_queries(texts, task), atol=1e-6)
        np.testing.assert_allclose(again.encode_keys(texts, task), emb.encode_keys(texts, task), atol=1e-6)
    # arguments still override saved settings
    switched = _load(tmp_path / "saved", instructions=False, normalize=True)
    assert switched.tasks["recipes"].query_instruction == ""
    assert switched.normalize is True
    assert switched.tasks["recipes"].key_max_length == 64


def test_repr_mentions_settings(tiny_embedder):
    text = repr(tiny_embedder)
    assert "dim=32" in text and "pooling=cls" in text and "qa" in text
