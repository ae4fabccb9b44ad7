"""Corpus.from_jsonl: key templates, ids and precise input errors."""

from __future__ import annotations

import json

import pytest

from llm_embedder.errors import InputError
from llm_embedder.retrieval.corpus import DEFAULT_KEY_TEMPLATE, Corpus, template_fields


def _write(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


ROWS = [
    {"title": "Paris", "text": "Paris is the capital of France.", "contents": "Paris: capital"},
    {"title": "", "text": "Rivers flow to the sea.", "contents": "rivers"},
    {"title": "Manhattan Project", "text": "The first atomic bomb.", "contents": "bomb"},
]


def test_template_fields():
    assert template_fields("{title} {text}") == ["title", "text"]
    assert template_fields("{contents}") == ["contents"]
    assert template_fields("plain") == []
    assert DEFAULT_KEY_TEMPLATE == "{text}"


def test_title_text_template(tmp_path):
    corpus = Corpus.from_jsonl(_write(tmp_path / "c.jsonl", ROWS), "{title} {text}")
    assert corpus.texts == [
        "Paris Paris is the capital of France.",
        "Rivers flow to the sea.",  # empty title: stripped, no leading space
        "Manhattan Project The first atomic bomb.",
    ]
    assert corpus.ids == [0, 1, 2]
    assert len(corpus) == 3


def test_text_template_is_default(tmp_path):
    file = _write(tmp_path / "c.jsonl", ROWS)
    assert Corpus.from_jsonl(file).texts == [r["text"] for r in ROWS]
    assert Corpus.from_jsonl(file, "{text}").texts == [r["text"] for r in ROWS]


def test_contents_template(tmp_path):
    corpus = Corpus.from_jsonl(_write(tmp_path / "c.jsonl", ROWS), "{contents}")
    assert corpus.texts == ["Paris: capital", "rivers", "bomb"]


def test_ids_are_row_numbers_skipping_blank_lines(tmp_path):
    file = tmp_path / "c.jsonl"
    file.write_text('{"text": "a"}\n\n{"text": "b"}\n', encoding="utf-8")
    corpus = Corpus.from_jsonl(file)
    assert corpus.texts == ["a", "b"]
    assert corpus.ids == [0, 1]


def test_id_field(tmp_path):
    rows = [{"pid": 70, "text": "a"}, {"pid": 3, "text": "b"}, {"pid": 12, "text": "c"}]
    corpus = Corpus.from_jsonl(_write(tmp_path / "c.jsonl", rows), id_field="pid")
    assert corpus.ids == [70, 3, 12]
    assert corpus.texts == ["a", "b", "c"]


@pytest.mark.parametrize("bad", ["7", 7.0, True, None])
def test_id_field_must_be_integer(tmp_path, bad):
    rows = [{"pid": 1, "text": "a"}, {"pid": bad, "text": "b"}]
    file = _write(tmp_path / "c.jsonl", rows)
    with pytest.raises(InputError, match="integer id") as err:
        Corpus.from_jsonl(file, id_field="pid")
    assert err.value.line == 2
    assert err.value.field == "pid"
    assert str(file) in str(err.value)


def test_duplicate_ids(tmp_path):
    file = _write(tmp_path / "c.jsonl", [{"pid": 1, "text": "a"}, {"pid": 1, "text": "b"}])
    with pytest.raises(InputError, match="id 1 is also the id of line 1") as err:
        Corpus.from_jsonl(file, id_field="pid")
    assert (err.value.path, err.value.line, err.value.field) == (str(file), 2, "pid")


def test_missing_field_names_file_line_and_field(tmp_path):
    rows = [ROWS[0], ROWS[1], {"text": "no title here"}]
    file = _write(tmp_path / "corpus.jsonl", rows)
    with pytest.raises(InputError) as err:
        Corpus.from_jsonl(file, "{title} {text}")
    message = str(err.value)
    assert str(file) in message
    assert ":3:" in message
    assert "title" in message
    assert (err.value.line, err.value.field) == (3, "title")


def test_malformed_json_line_number(tmp_path):
    file = tmp_path / "corpus.jsonl"
    file.write_text('{"text": "a"}\n{"text": "b"\n', encoding="utf-8")
    with pytest.raises(InputError, match="malformed JSON") as err:
        Corpus.from_jsonl(file)
    assert err.value.line == 2
    assert str(file) in str(err.value)


def test_empty_corpus(tmp_path):
    file = tmp_path / "empty.jsonl"
    file.write_text("\n\n", encoding="utf-8")
    with pytest.raises(InputError, match="empty") as err:
        Corpus.from_jsonl(file)
    assert str(file) in str(err.value)


def test_missing_corpus_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        Corpus.from_jsonl(tmp_path / "nope.jsonl")


def test_template_without_field(tmp_path):
    file = _write(tmp_path / "c.jsonl", ROWS)
    with pytest.raises(ValueError, match="names no field"):
        Corpus.from_jsonl(file, "text")


def test_real_toy_passages(tmp_path, toy_records):
    """The released qa passages, written as an Anserini-style corpus, read back verbatim."""
    passages = list(dict.fromkeys(p for r in toy_records("qa") for p in r["pos"] + r["neg"]))
    file = _write(tmp_path / "qa.jsonl", [{"text": p} for p in passages])
    corpus = Corpus.from_jsonl(file)
    assert len(corpus) == len(passages) > 100
    assert corpus.texts == [p.strip() for p in passages]
