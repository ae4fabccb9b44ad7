"""Readers for the formats users already have, each checked with file:line:field errors.

- corpus: JSON lines (``text``, optional ``title`` and ``id``) or a folder of ``.txt`` / ``.md`` files,
  cut into passages by :func:`chunk_passages`;
- tools: OpenAI function-calling definitions, a JSON list or one per line;
- conversations: JSON lines of OpenAI chat messages (``{"messages": [{"role", "content"}, ...]}``);
- documents: long texts, a folder of ``.txt`` / ``.md`` files or JSON lines (``text``, ``title``, ``id``);
- examples: JSON lines of ``{"input", "output"}`` demonstrations.

Nothing here writes: the user's files are only read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_embedder.errors import InputError
from llm_embedder.fileio import iter_jsonl, read_text

PASSAGE_WORDS = 128
"""Target passage length: paragraphs are joined up to this many words; a longer paragraph is cut."""
TEXT_SUFFIXES = (".txt", ".md")


@dataclass(frozen=True)
class Passage:
    doc: str
    """The source document's id: the dev split holds out whole documents."""
    title: str
    text: str


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str


@dataclass(frozen=True)
class Tool:
    name: str
    definition: dict[str, Any]
    """The ``function`` object: name, description, parameters."""


@dataclass(frozen=True)
class Chat:
    id: str
    turns: list[tuple[str, str]]
    """(role, text) with role ``user`` or ``assistant``; consecutive messages of one role joined."""


@dataclass(frozen=True)
class Example:
    input: str
    output: str
    line: int


def chunk_passages(text: str, words: int = PASSAGE_WORDS) -> list[str]:
    """Passages of about ``words`` words on paragraph boundaries (blank-line or line breaks).

    Paragraphs are joined while the passage stays within ``words``; a paragraph longer than
    ``words`` is cut into pieces of ``words`` words (the last piece may be shorter).
    """
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n|\n", text) if p.strip()]
    out: list[str] = []
    current: list[str] = []
    for paragraph in paragraphs:
        tokens = paragraph.split()
        if len(tokens) > words:
            if current:
                out.append(" ".join(current))
                current = []
            out.extend(" ".join(tokens[i : i + words]) for i in range(0, len(tokens), words))
            continue
        if current and len(current) + len(tokens) > words:
            out.append(" ".join(current))
            current = []
        current.extend(tokens)
    if current:
        out.append(" ".join(current))
    return out


def _require_text(record: dict[str, Any], field: str, path: Path, line: int, optional: bool = False) -> str:
    value = record.get(field)
    if value is None and optional:
        return ""
    if not isinstance(value, str) or (not optional and not value.strip()):
        raise InputError(path, line, field, "expected a non-empty string" if not optional else "expected a string")
    return value


def _text_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        raise InputError(folder, None, None, f"no {' or '.join(TEXT_SUFFIXES)} files in this folder")
    return files


def read_documents(path: str | Path) -> list[Document]:
    """Long texts: a folder of ``.txt`` / ``.md`` files (title: the file name) or JSON lines."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, None, None, "no such file or folder")
    docs: list[Document] = []
    if path.is_dir():
        for file in _text_files(path):
            text = read_text(file, "text file")
            if text.strip():
                rel = file.relative_to(path).as_posix()
                docs.append(Document(rel, file.stem.replace("_", " "), text))
    else:
        for line, record in iter_jsonl(path):
            text = _require_text(record, "text", path, line)
            title = _require_text(record, "title", path, line, optional=True)
            doc_id = record.get("id", line)
            if not isinstance(doc_id, str | int) or isinstance(doc_id, bool):
                raise InputError(path, line, "id", "expected a string or an integer")
            docs.append(Document(str(doc_id), title, text))
    ids = [d.id for d in docs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InputError(path, None, "id", f"document id {dup!r} appears more than once")
    if not docs:
        raise InputError(path, None, None, "no text found; expected JSON lines with a 'text' field or text files")
    return docs


def read_corpus(path: str | Path, words: int = PASSAGE_WORDS) -> list[Passage]:
    """A corpus as passages: each document cut by :func:`chunk_passages` (a JSON-lines row already
    shorter than ``words`` stays one passage)."""
    passages = [
        Passage(doc.id, doc.title, chunk) for doc in read_documents(path) for chunk in chunk_passages(doc.text, words)
    ]
    if not passages:
        raise InputError(path, None, "text", "every text is empty")
    return passages


def _tool_definition(item: Any, path: Path, line: int | None) -> Tool:
    if not isinstance(item, dict):
        raise InputError(path, line, None, 'expected a tool definition {"type": "function", "function": {...}}')
    function = item.get("function", item) if item.get("type", "function") == "function" else None
    if function is None:
        raise InputError(path, line, "type", f"only function tools are supported, got {item.get('type')!r}")
    if not isinstance(function, dict):
        raise InputError(path, line, "function", "expected an object with name, description and parameters")
    name = function.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InputError(path, line, "function.name", "expected a non-empty string")
    description = function.get("description", "")
    if not isinstance(description, str):
        raise InputError(path, line, "function.description", "expected a string")
    parameters = function.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InputError(path, line, "function.parameters", "expected a JSON schema object")
    return Tool(name, {"name": name, "description": description, "parameters": parameters})


def read_tools(path: str | Path) -> list[Tool]:
    """OpenAI tool definitions: one JSON list (or ``{"tools": [...]}``), or one definition per line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, None, "no such file")
    text = read_text(path, "tools file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("tools"), list):
        data = data["tools"]
    if isinstance(data, list):
        tools = [_tool_definition(item, path, None) for item in data]
    elif isinstance(data, dict) and ("function" in data or "name" in data):
        tools = [_tool_definition(data, path, 1)]
    else:
        tools = [_tool_definition(record, path, line) for line, record in iter_jsonl(path)]
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InputError(path, None, "function.name", f"tool {dup!r} is defined more than once")
    if len(tools) < 2:
        raise InputError(path, None, None, f"{len(tools)} tool(s); retrieval needs at least 2 to choose from")
    return tools


def _message_text(message: dict[str, Any], path: Path, line: int, index: int) -> str:
    content = message.get("content")
    if content is None:  # an assistant message that only calls tools
        return ""
    if isinstance(content, str):
        return " ".join(content.split())
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if all(isinstance(p, str) for p in parts):
            return " ".join(" ".join(parts).split())
    raise InputError(path, line, f"messages[{index}].content", "expected a string or a list of text parts")


def read_conversations(path: str | Path) -> list[Chat]:
    """JSON lines of ``{"messages": [{"role", "content"}, ...]}`` (optional ``id``).  System and tool
    messages are skipped; consecutive messages of the same role are joined."""
    path = Path(path)
    chats = []
    for line, record in iter_jsonl(path):
        messages = record.get("messages")
        if not isinstance(messages, list):
            raise InputError(path, line, "messages", "expected a list of chat messages")
        turns: list[tuple[str, str]] = []
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise InputError(path, line, f"messages[{index}].role", "expected a message with a role")
            role = message["role"]
            if role not in ("system", "developer", "user", "assistant", "tool", "function"):
                raise InputError(path, line, f"messages[{index}].role", f"unknown role {role!r}")
            text = _message_text(message, path, line, index)
            if role not in ("user", "assistant") or not text:
                continue
            if turns and turns[-1][0] == role:
                turns[-1] = (role, turns[-1][1] + " " + text)
            else:
                turns.append((role, text))
        chats.append(Chat(str(record.get("id", line)), turns))
    if not chats:
        raise InputError(path, None, "messages", "no conversations; expected JSON lines of {'messages': [...]}")
    return chats


def read_examples(path: str | Path) -> list[Example]:
    """JSON lines of ``{"input", "output"}`` demonstrations."""
    path = Path(path)
    examples = [
        Example(_require_text(r, "input", path, line), _require_text(r, "output", path, line), line)
        for line, r in iter_jsonl(path)
    ]
    if len(examples) < 3:
        raise InputError(path, None, None, f"{len(examples)} example(s); a pool to retrieve from needs at least 3")
    return examples
