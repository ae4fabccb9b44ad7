"""Fingerprints change exactly when what a result depends on changes."""

from __future__ import annotations

import hashlib

import pytest
import torch

from llm_embedder.fingerprint import (
    code_digest,
    embedder_fingerprint,
    file_digest,
    files_digest,
    parts_digest,
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


def test_parts_digest_is_sha1_of_nul_ended_parts():
    # The corpus-embedding cache keys on disk were made this way: they must not change.
    parts = ["dense:minilm|0123", "Represent this document: ", "256", "first passage", "ünïcode"]
    by_hand = hashlib.sha1(("\0".join(parts) + "\0").encode("utf-8")).hexdigest()
    assert parts_digest(parts, length=20) == by_hand[:20]
    assert parts_digest(parts, length=40) == by_hand
    assert parts_digest(["ab", "c"]) != parts_digest(["a", "bc"])


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


def test_code_digest_follows_the_source_of_a_package_and_its_modules(tmp_path, monkeypatch):
    package = tmp_path / "pkg_for_digest"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "a.py").write_text("X = 1\n", encoding="utf-8")
    (package / "sub" / "__init__.py").write_text("", encoding="utf-8")
    (package / "sub" / "b.py").write_text("Y = 1\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    whole, module = code_digest("pkg_for_digest"), code_digest("pkg_for_digest.a")
    assert whole != module and code_digest("pkg_for_digest") == whole
    (package / "sub" / "b.py").write_text("Y = 2\n", encoding="utf-8")  # a file deep in the package
    assert code_digest("pkg_for_digest") != whole
    assert code_digest("pkg_for_digest.a") == module  # another module's change leaves it alone
    (package / "a.py").write_text("X = 2\n", encoding="utf-8")
    assert code_digest("pkg_for_digest.a") != module
    with pytest.raises(ValueError, match="no module named 'pkg_for_digest.nope'"):
        code_digest("pkg_for_digest.nope")
