"""JSON-lines reading with precise errors, and atomic writes of files and folders."""

from __future__ import annotations

import json
import os
import stat

import pytest

from llm_embedder.errors import InputError
from llm_embedder.fileio import atomic_path, iter_jsonl, read_jsonl, require_field, write_json, write_jsonl


def _leftovers(folder, name):
    """Hidden temporary siblings that atomic_path may have created for ``name``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ----------------------------------------------------------------------------- InputError
def test_input_error_message_parts():
    err = InputError("data/train.jsonl", 7, "query", "missing")
    assert str(err) == "data/train.jsonl:7: field 'query': missing"
    assert (err.path, err.line, err.field, err.message) == ("data/train.jsonl", 7, "query", "missing")
    assert isinstance(err, ValueError)
    assert str(InputError(None, None, None, "bad")) == "<input>: bad"


# ----------------------------------------------------------------------------- iter_jsonl
def test_iter_jsonl_numbers_lines_and_skips_blank_ones(tmp_path):
    file = tmp_path / "a.jsonl"
    file.write_text('{"a": 1}\n\n   \n{"a": 2, "b": "é"}\n', encoding="utf-8")
    assert list(iter_jsonl(file)) == [(1, {"a": 1}), (4, {"a": 2, "b": "é"})]
    assert read_jsonl(str(file)) == [{"a": 1}, {"a": 2, "b": "é"}]


def test_iter_jsonl_missing_file(tmp_path):
    file = tmp_path / "missing.jsonl"
    with pytest.raises(InputError, match="not found") as err:
        list(iter_jsonl(file))
    assert str(file) in str(err.value)


def test_iter_jsonl_directory(tmp_path):
    with pytest.raises(InputError, match="directory") as err:
        list(iter_jsonl(tmp_path))
    assert str(tmp_path) in str(err.value)


def test_iter_jsonl_malformed_line_number(tmp_path):
    file = tmp_path / "bad.jsonl"
    file.write_text('{"a": 1}\n\n{"a": 2,}\n{"a": 3}\n', encoding="utf-8")
    seen = []
    with pytest.raises(InputError, match="malformed JSON") as err:
        for number, record in iter_jsonl(file):
            seen.append((number, record))
    assert seen == [(1, {"a": 1})]  # records before the bad line are yielded
    assert err.value.line == 3
    assert f"{file}:3:" in str(err.value)


@pytest.mark.parametrize("line,kind", [("[1, 2]", "list"), ('"text"', "str"), ("3", "int"), ("null", "NoneType")])
def test_iter_jsonl_non_object_line(tmp_path, line, kind):
    file = tmp_path / "bad.jsonl"
    file.write_text('{"ok": true}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="expected a JSON object") as err:
        list(iter_jsonl(file))
    assert err.value.line == 2
    assert kind in str(err.value)
    assert str(file) in str(err.value)


def test_iter_jsonl_invalid_utf8_is_an_input_error(tmp_path):
    """A Latin-1 file is a user error with a line number, not a bare UnicodeDecodeError."""
    file = tmp_path / "latin1.jsonl"
    file.write_bytes('{"a": "ok"}\n{"a": "café"}\n'.encode("latin-1"))
    with pytest.raises(InputError) as err:
        list(iter_jsonl(file))
    assert str(file) in str(err.value)
    assert err.value.line == 2


# ----------------------------------------------------------------------------- require_field
def test_require_field():
    record = {"query": "q", "pos": ["p"], "n": 3}
    assert require_field(record, "query", "f.jsonl", 4) == "q"
    assert require_field(record, "pos", "f.jsonl", 4, list) == ["p"]

    with pytest.raises(InputError) as err:
        require_field(record, "neg", "f.jsonl", 4)
    assert (err.value.path, err.value.line, err.value.field) == ("f.jsonl", 4, "neg")
    assert str(err.value) == "f.jsonl:4: field 'neg': missing"

    with pytest.raises(InputError, match="expected list, got str") as err:
        require_field(record, "query", "f.jsonl", 9, list)
    assert err.value.line == 9 and err.value.field == "query"


# ----------------------------------------------------------------------------- atomic_path: files
def test_atomic_file_success_replaces(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp != target and tmp.parent == target.parent
        tmp.write_text("new")
        assert target.read_text() == "old"  # not visible before the end
    assert target.read_text() == "new"
    assert _leftovers(tmp_path, "out.json") == []


def test_atomic_file_creates_missing_parent(tmp_path):
    target = tmp_path / "a" / "b" / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("x")
    assert target.read_text() == "x"


def test_atomic_file_failure_keeps_previous_content(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path, "out.json") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_file_failure_without_previous_leaves_nothing(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(KeyError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyError("x")
    assert list(tmp_path.iterdir()) == []


def test_atomic_file_gets_normal_permissions(tmp_path):
    """Files written atomically must be readable like any other file (umask), not 0600 from mkstemp:
    a saved model or index is often shared with other users."""
    target = tmp_path / "settings.json"
    write_json(target, {"a": 1})
    mode = stat.S_IMODE(target.stat().st_mode)
    assert mode == 0o666 & ~_umask()


# ----------------------------------------------------------------------------- atomic_path: folders
def test_atomic_dir_success_replaces(tmp_path):
    target = tmp_path / "index"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_path(target, is_dir=True) as tmp:
        assert tmp.is_dir() and tmp != target
        (tmp / "new.txt").write_text("new")
        assert (target / "old.txt").exists()
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert _leftovers(tmp_path, "index") == []


def test_atomic_dir_new_target(tmp_path):
    target = tmp_path / "sub" / "index"
    with atomic_path(target, is_dir=True) as tmp:
        (tmp / "f").write_text("1")
    assert (target / "f").read_text() == "1"
    assert _leftovers(target.parent, "index") == []


def test_atomic_dir_failure_keeps_previous_content(tmp_path):
    target = tmp_path / "index"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target, is_dir=True) as tmp:
        (tmp / "new.txt").write_text("new")
        (tmp / "nested").mkdir()
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert (target / "old.txt").read_text() == "old"
    assert _leftovers(tmp_path, "index") == []


def test_atomic_dir_failure_without_previous_leaves_nothing(tmp_path):
    target = tmp_path / "index"
    with pytest.raises(RuntimeError), atomic_path(target, is_dir=True):
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_gets_normal_permissions(tmp_path):
    target = tmp_path / "index"
    with atomic_path(target, is_dir=True) as tmp:
        (tmp / "f").write_text("1")
    mode = stat.S_IMODE(target.stat().st_mode)
    assert mode == 0o777 & ~_umask()


# ----------------------------------------------------------------------------- writers
def test_write_json_and_jsonl_round_trip(tmp_path):
    data = {"name": "größe", "values": [1, 2.5, None]}
    write_json(tmp_path / "d.json", data)
    text = (tmp_path / "d.json").read_text(encoding="utf-8")
    assert "größe" in text  # not \\u-escaped
    assert json.loads(text) == data

    records = [{"id": i, "text": f"t{i}"} for i in range(5)]
    write_jsonl(tmp_path / "r.jsonl", iter(records))
    assert read_jsonl(tmp_path / "r.jsonl") == records
    assert (tmp_path / "r.jsonl").read_text().count("\n") == 5


def test_write_jsonl_failure_keeps_previous_file(tmp_path):
    target = tmp_path / "r.jsonl"
    write_jsonl(target, [{"a": 1}])

    def records():
        yield {"a": 2}
        raise RuntimeError("generator failed")

    with pytest.raises(RuntimeError):
        write_jsonl(target, records())
    assert read_jsonl(target) == [{"a": 1}]
    assert _leftovers(tmp_path, "r.jsonl") == []
