"""Fingerprints change exactly when what a result depends on changes."""

from __future__ import annotations

import torch

from llm_embedder.fingerprint import (
    embedder_fingerprint,
    file_digest,
    files_digest,
    settings_digest,
    text_digest,
    weights_digest,
)


def test_settings_digest_ignores_key_order_and_tuple_vs_list():
    assert settings_digest({"a": 1, "b": (1, 2)}) == settings_digest({"b": [1, 2], "a": 1})
    assert settings_digest({"a": 1}) != settings_digest({"a": 2})


def test_text_digest_has_no_concatenation_collisions():
    assert text_digest(["ab", "c"]) != text_digest(["a", "bc"])
    assert text_digest(["ab", "c"]) == text_digest(["ab", "c"])


def test_file_digest_follows_content_not_name(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("same")
    b.write_text("same")
    assert file_digest(a) == file_digest(b)
    b.write_text("other")
    assert file_digest(a) != file_digest(b)
    assert files_digest([a, b]) != files_digest([b, a])
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "x").write_text("1")
    before = file_digest(folder)
    (folder / "x").write_text("2")
    assert file_digest(folder) != before


def test_weights_digest_sees_every_value_and_dtype():
    torch.manual_seed(0)
    module = torch.nn.Linear(300, 300)
    before = weights_digest(module)
    with torch.no_grad():
        module.weight[-1, -1] += 1e-3  # far past any sampled prefix
    assert weights_digest(module) != before
    assert weights_digest(module.to(torch.bfloat16)) != weights_digest(module.float())


class _Table(dict):
    pass


class _Task:
    def __init__(self, instruction):
        self.query_instruction = instruction
        self.key_instruction = ""
        self.query_max_length = 8
        self.key_max_length = 8


class _Embedder:
    def __init__(self, instruction="q: "):
        self.model = torch.nn.Linear(2, 2)
        self.tasks = _Table(qa=_Task(instruction))
        self.pooling = "cls"
        self.normalize = True


def test_embedder_fingerprint_covers_instructions_pooling_and_weights():
    torch.manual_seed(0)
    one = _Embedder()
    torch.manual_seed(0)
    two = _Embedder()
    assert embedder_fingerprint(one) == embedder_fingerprint(two)
    torch.manual_seed(0)
    other_instruction = _Embedder("query: ")
    assert embedder_fingerprint(other_instruction) != embedder_fingerprint(one)
    two.pooling = "mean"
    assert embedder_fingerprint(two) != embedder_fingerprint(one)
    with torch.no_grad():
        one.model.weight[0, 0] += 1e-4  # one training step, in place
    torch.manual_seed(0)
    assert embedder_fingerprint(one) != embedder_fingerprint(_Embedder())
