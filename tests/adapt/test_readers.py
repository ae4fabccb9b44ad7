"""The readers of the formats users have: what they accept, and the one-line errors for what they do not."""

from __future__ import annotations

import json

import pytest

from llm_embedder.errors import InputError
from llm_embedder.userdata.readers import (
    chunk_passages,
    read_conversations,
    read_corpus,
    read_documents,
    read_examples,
    read_tools,
)


def test_chunks_join_paragraphs_up_to_the_word_budget_and_cut_long_ones():
    text = "a b c\n\nd e\n\nf g h i\n" + " ".join(f"w{i}" for i in range(9))
    # by hand, budget 5: [a b c d e] [f g h i] then the 9-word paragraph cut 5 + 4
    assert chunk_passages(text, 5) == ["a b c d e", "f g h i", "w0 w1 w2 w3 w4", "w5 w6 w7 w8"]
    assert chunk_passages("   \n\n ", 5) == []


def test_chunks_keep_every_word_in_order():
    text = "\n\n".join(" ".join(f"p{p}w{i}" for i in range(p * 7 % 23 + 1)) for p in range(30))
    assert " ".join(chunk_passages(text, 16)).split() == text.split()
    assert all(len(c.split()) <= 16 for c in chunk_passages(text, 16))


def test_corpus_from_a_folder_and_from_json_lines(tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a_note.md").write_text("first paragraph\n\nsecond paragraph", encoding="utf-8")
    (folder / "sub" / "b.txt").write_text("another text", encoding="utf-8")
    (folder / "ignored.pdf").write_bytes(b"%PDF")
    passages = read_corpus(folder, words=128)
    assert [(p.doc, p.title, p.text) for p in passages] == [
        ("a_note.md", "a note", "first paragraph second paragraph"),
        ("sub/b.txt", "b", "another text"),
    ]
    lines = tmp_path / "c.jsonl"
    lines.write_text('{"text": "x y", "title": "T", "id": "d1"}\n\n{"text": "z"}\n', encoding="utf-8")
    assert [(p.doc, p.title, p.text) for p in read_corpus(lines)] == [("d1", "T", "x y"), ("3", "", "z")]


@pytest.mark.parametrize(
    ("content", "where"),
    [
        ('{"title": "no text"}\n', "c.jsonl:1: field 'text'"),
        ('{"text": "ok"}\n{"text": 5}\n', "c.jsonl:2: field 'text'"),
        ('{"text": "ok", "id": 1}\n{"text": "again", "id": 1}\n', "field 'id'"),
        ('{"text": "ok"}\nnot json\n', "c.jsonl:2: malformed JSON"),
    ],
)
def test_corpus_errors_name_file_line_and_field(tmp_path, content, where):
    path = tmp_path / "c.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as info:
        read_corpus(path)
    assert where in str(info.value)


def test_an_empty_folder_says_what_was_expected(tmp_path):
    with pytest.raises(InputError, match=r"no \.txt or \.md files"):
        read_documents(tmp_path)


TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {}}},
    {"type": "function", "function": {"name": "send_mail", "description": "Mail", "parameters": {"type": "object"}}},
]


def test_tools_as_a_list_a_wrapped_list_and_one_per_line(tmp_path):
    as_list, wrapped, per_line = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.jsonl"
    as_list.write_text(json.dumps(TOOLS), encoding="utf-8")
    wrapped.write_text(json.dumps({"tools": TOOLS}), encoding="utf-8")
    per_line.write_text("\n".join(json.dumps(t) for t in TOOLS), encoding="utf-8")
    for path in (as_list, wrapped, per_line):
        assert [t.name for t in read_tools(path)] == ["get_weather", "send_mail"]
    assert read_tools(as_list)[1].definition == {
        "name": "send_mail",
        "description": "Mail",
        "parameters": {"type": "object"},
    }


@pytest.mark.parametrize(
    ("tools", "where"),
    [
        ([TOOLS[0], {"type": "function", "function": {"description": "x"}}], "field 'function.name'"),
        ([TOOLS[0], TOOLS[0]], "defined more than once"),
        ([TOOLS[0]], "at least 2"),
        ([TOOLS[0], {"type": "retrieval"}], "field 'type'"),
        ([TOOLS[0], {"type": "function", "function": {"name": "f", "parameters": []}}], "function.parameters"),
    ],
)
def test_tool_errors(tmp_path, tools, where):
    path = tmp_path / "tools.jsonl"
    path.write_text("\n".join(json.dumps(t) for t in tools), encoding="utf-8")
    with pytest.raises(InputError, match=where):
        read_tools(path)


def test_conversations_join_same_role_messages_and_skip_system_and_tool_calls(tmp_path):
    path = tmp_path / "chats.jsonl"
    messages = [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "hi"},
        {"role": "user", "content": [{"type": "text", "text": "there"}]},
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "assistant", "content": "hello"},
    ]
    path.write_text(json.dumps({"id": "c1", "messages": messages}) + "\n", encoding="utf-8")
    (chat,) = read_conversations(path)
    assert chat.id == "c1" and chat.turns == [("user", "hi there"), ("assistant", "hello")]


def test_conversation_errors(tmp_path):
    path = tmp_path / "chats.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "a"}]}\n{"messages": [{"role": "robot"}]}\n')
    with pytest.raises(InputError, match=r"chats.jsonl:2: field 'messages\[0\].role'"):
        read_conversations(path)
    path.write_text('{"messages": "hello"}\n')
    with pytest.raises(InputError, match="chats.jsonl:1: field 'messages'"):
        read_conversations(path)


def test_examples_need_input_and_output(tmp_path):
    path = tmp_path / "ex.jsonl"
    rows = [{"input": f"q{i}", "output": f"a{i}"} for i in range(3)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + '\n{"input": "q"}\n')
    with pytest.raises(InputError, match="ex.jsonl:4: field 'output'"):
        read_examples(path)
    path.write_text("\n".join(json.dumps(r) for r in rows))
    assert [e.output for e in read_examples(path)] == ["a0", "a1", "a2"]
