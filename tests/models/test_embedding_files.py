"""``encode``'s files: texts read from JSON lines, embeddings written as .npy, and the command end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llm_embedder.cli import build_parser
from llm_embedder.cli import main as cli_main
from llm_embedder.commands.options import embedder_options
from llm_embedder.errors import InputError
from llm_embedder.models.embedding_files import read_texts, save_embeddings

TEXTS = ["where is Paris?", "café au lait", "a third, longer text about rivers and bridges"]


def _write_jsonl(path, records, bom=False):
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    path.write_text(("\ufeff" if bom else "") + "\n\n".join(lines) + "\n", encoding="utf-8")  # blank lines between
    return path


def test_read_texts_keeps_order_and_reads_the_field(tmp_path):
    file = _write_jsonl(tmp_path / "q.jsonl", [{"query": t, "text": t.upper()} for t in TEXTS], bom=True)
    assert read_texts(file) == TEXTS
    assert read_texts(file, "text") == [t.upper() for t in TEXTS]


@pytest.mark.parametrize(
    "record, message",
    [({"other": "x"}, r"q\.jsonl:3: field 'query': missing$"), ({"query": 7}, r"expected a string, got int$")],
)
def test_read_texts_names_file_line_and_field(tmp_path, record, message):
    file = _write_jsonl(tmp_path / "q.jsonl", [{"query": "fine"}, record])  # the record is on line 3
    with pytest.raises(InputError, match=message):
        read_texts(file)


def test_save_embeddings_replaces_whole_and_leaves_no_temporary(tmp_path):
    out = tmp_path / "v.npy"
    out.write_bytes(b"an earlier version")
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    save_embeddings(out, vectors)
    loaded = np.load(out)
    assert loaded.dtype == np.float32 and np.array_equal(loaded, vectors)
    assert [p.name for p in tmp_path.iterdir()] == ["v.npy"]


@pytest.mark.parametrize("side", ["query", "key"])
def test_encode_command_writes_what_the_embedder_computes(tmp_path, tiny_encoder_dir, side):
    from llm_embedder import Embedder

    file = _write_jsonl(tmp_path / "q.jsonl", [{"query": t} for t in TEXTS])
    out = tmp_path / "v.npy"
    argv = ["encode", "--input", file, "--task", "qa", "--side", side, "--model", tiny_encoder_dir, "--out", out]
    assert cli_main(["-q", *map(str, argv), "--device", "cpu", "--batch-size", "2"]) == 0
    embedder = Embedder.from_pretrained(tiny_encoder_dir, device="cpu")
    encode = embedder.encode_queries if side == "query" else embedder.encode_keys
    np.testing.assert_allclose(np.load(out), encode(TEXTS, task="qa"), atol=1e-6)


def test_embedder_options_are_mapped_once_and_only_given_ones_override():
    parser = build_parser()
    plain = parser.parse_args(["search", "--index", "i", "--query", "q"])
    assert embedder_options(plain) == {"device": "auto", "dtype": None, "batch_size": 64, "backend": "auto"}
    given = parser.parse_args(
        ["encode", "--input", "x", "--task", "qa", "--out", "o", "--instructions", "none", "--tasks-file", "t.yaml"]
        + ["--device", "cpu", "--dtype", "float32", "--batch-size", "8", "--backend", "torch"]
    )
    assert embedder_options(given) == {
        "device": "cpu",
        "dtype": "float32",
        "batch_size": 8,
        "backend": "torch",
        "instructions": "none",
        "tasks": "t.yaml",
    }
