"""One call for one LLM turn: the conversation and the needs wanted -> what each need retrieves.

Every need's query is embedded in one engine job (so in one forward pass when they fit the token
budget). Queries: the last user message, except ``convsearch`` (the whole conversation, one
``role: content`` line per message, searched over a knowledge collection).

The assembled prompt (``assemble=True``) follows the task table's templates: the first need whose
task has an ``lm_template`` frames the prompt (its hits as ``{key}``, the last user message as
``{query}``, ``{answer}`` left empty, so the prompt ends where the LLM continues); the hits of the
other needs come before that frame, one block per need, one hit per line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from llm_embedder.serving.collections import SESSION_KINDS, CollectionError, Collections

NEED_KINDS = {
    "knowledge": "knowledge",
    "memory": "memory",
    "examples": "examples",
    "tools": "tools",
    "documents": "documents",
    "convsearch": "knowledge",
}


@dataclass
class Need:
    need: str
    collection: str
    k: int = 3


def conversation_text(messages: Sequence[Mapping[str, str]]) -> str:
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def last_user_message(messages: Sequence[Mapping[str, str]]) -> str:
    for message in reversed(messages):
        if message["role"] == "user":
            return message["content"]
    return messages[-1]["content"]


def augment(
    collections: Collections,
    messages: Sequence[Mapping[str, str]],
    needs: Sequence[Need],
    session: str = "",
    assemble: bool = False,
) -> dict[str, Any]:
    if not messages:
        raise CollectionError("messages must not be empty")
    for n, message in enumerate(messages):
        if not isinstance(message.get("role"), str) or not isinstance(message.get("content"), str):
            raise CollectionError(f"message {n}: needs string 'role' and 'content'")
    question = last_user_message(messages)
    requests = []
    for need in needs:
        if need.need not in NEED_KINDS:
            raise CollectionError(f"unknown need {need.need!r}; known: {', '.join(NEED_KINDS)}")
        spec = collections.get(need.collection)
        if spec.kind != NEED_KINDS[need.need]:
            raise CollectionError(
                f"need {need.need!r} wants a {NEED_KINDS[need.need]} collection, {spec.name!r} is {spec.kind}"
            )
        convsearch = need.need == "convsearch"
        query = conversation_text(messages) if convsearch else question
        requests.append(
            (
                need.collection,
                query,
                need.k,
                session if spec.kind in SESSION_KINDS else "",
                "convsearch" if convsearch else None,
            )
        )
    found = collections.search_many(requests)
    result: dict[str, Any] = {
        "results": [
            {"need": need.need, "collection": need.collection, "hits": [asdict(h) for h in hits]}
            for need, hits in zip(needs, found, strict=True)
        ]
    }
    if assemble:
        result["prompt"] = assemble_prompt(collections, question, needs, found)
    return result


def assemble_prompt(collections: Collections, question: str, needs: Sequence[Need], found: Sequence[list]) -> str:
    tasks = collections.engine.tasks
    frame = None
    blocks = []
    for need, hits in zip(needs, found, strict=True):
        task = "convsearch" if need.need == "convsearch" else collections.get(need.collection).task
        template = tasks[task].lm_template
        keys = "\n".join(h.text for h in hits)
        if frame is None and template is not None:
            frame = template.format(key=keys, query=question, answer="", context="")
        elif keys:
            blocks.append(keys)
    if frame is None:
        frame = question
    return "\n\n".join([*blocks, frame])
