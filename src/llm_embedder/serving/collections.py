"""Collections: the six retrieval needs of an LLM as one Python API (the HTTP routes call the same).

A collection has a kind, which fixes its task (its query and key instructions), and is bound to
the fingerprint of the model that filled it: adding to it or searching it with another model is
refused (:class:`Conflict`), since vectors of two models are not comparable.

=============  =========  ======================================================================
kind           task       what ``add`` and ``search`` do
=============  =========  ======================================================================
knowledge      qa         documents cut into chunks (:data:`CHUNK_WORDS` words); search by question;
                          ``task="convsearch"`` searches it with a whole conversation as the query
memory         chat       turns of one session; a turn is searchable once ``add`` returns; sessions
                          never see each other's turns
examples       icl        demonstrations
tools          tool       tool descriptions keyed by a hash of their text: re-registering an
                          unchanged tool costs no forward pass
documents      lrlm       a long text's chunks, one session per text; search with the latest chunk
=============  =========  ======================================================================
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llm_embedder.fingerprint import text_digest
from llm_embedder.serving.stores.base import CollectionSpec, MissingCollection, Record, Store

KIND_TASKS = {"knowledge": "qa", "memory": "chat", "examples": "icl", "tools": "tool", "documents": "lrlm"}
CHUNKED_KINDS = ("knowledge", "documents")
SESSION_KINDS = ("memory", "documents")
METHODS = ("dense",)
CHUNK_WORDS = 128
# Names become keys in databases and, for some backends, file names: a safe alphabet only.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_ID = re.compile(r"[^\x00-\x1f\x7f]{1,256}")
_SESSION = re.compile(r"[A-Za-z0-9_.:@-]{0,128}")


class CollectionError(ValueError):
    """A bad collection request (HTTP 400)."""

    status = 400


class NotFound(CollectionError):
    status = 404


class Conflict(CollectionError):
    status = 409


@dataclass
class Hit:
    id: str
    text: str
    score: float
    session: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


def _describe(encoder: dict[str, Any]) -> str:
    how = " ".join(str(encoder[k]) for k in ("backend", "dtype") if encoder.get(k))
    model = encoder.get("model") or "?"
    return f"{model} ({how + ', ' if how else ''}fingerprint {encoder['fingerprint']})"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise CollectionError(f"bad collection name {name!r}: 1-64 of A-Z a-z 0-9 _ -, starting with a letter or digit")
    return name


def check_session(session: str) -> str:
    if not isinstance(session, str) or not _SESSION.fullmatch(session):
        raise CollectionError(f"bad session {session!r}: at most 128 of A-Z a-z 0-9 _ . : @ -")
    return session


def check_id(item_id: str) -> str:
    if not isinstance(item_id, str) or not _ID.fullmatch(item_id):
        raise CollectionError(f"bad id {item_id!r}: 1-256 characters, no control characters")
    return item_id


def chunk_words(text: str, size: int = CHUNK_WORDS) -> list[str]:
    """The chunking rule: runs of at most ``size`` whitespace-separated words, no overlap."""
    words = text.split()
    return [" ".join(words[i : i + size]) for i in range(0, len(words), size)] or [""]


def tool_id(text: str) -> str:
    return "tool-" + text_digest([text])


class Collections:
    """Collections on a :class:`Store`, embedded by an :class:`~llm_embedder.serving.engine.Engine`."""

    def __init__(self, store: Store, engine: Any):
        self.store = store
        self.engine = engine

    # ------------------------------------------------------------------ collections
    def create(self, name: str, kind: str, method: str = "dense", factory: str = "Flat") -> CollectionSpec:
        check_name(name)
        if kind not in KIND_TASKS:
            raise CollectionError(f"unknown kind {kind!r}; known: {', '.join(KIND_TASKS)}")
        if method not in METHODS:
            raise CollectionError(f"method {method!r} is not supported; supported: {', '.join(METHODS)}")
        task = KIND_TASKS[kind]
        self.engine.tasks.get_task(task)
        encoder = dict(getattr(self.engine, "encoder_info", {}))
        spec = CollectionSpec(name, kind, task, self.engine.fingerprint, self.engine.dim, method, factory, encoder)
        existing = self.store.spec(name)
        if existing is not None and existing != spec:
            raise Conflict(f"collection {name!r} exists with other settings: {existing.to_dict()}")
        try:
            self.store.create(spec)
        except ValueError as exc:
            raise CollectionError(str(exc)) from None
        return spec

    def get(self, name: str) -> CollectionSpec:
        spec = self.store.spec(check_name(name))
        if spec is None:
            raise NotFound(f"no collection {name!r}")
        return spec

    def list(self) -> list[CollectionSpec]:
        return self.store.specs()

    def drop(self, name: str) -> None:
        if not self.store.drop(check_name(name)):
            raise NotFound(f"no collection {name!r}")

    def _bound(self, name: str) -> CollectionSpec:
        spec = self.get(name)
        if spec.fingerprint != self.engine.fingerprint:
            here = {**getattr(self.engine, "encoder_info", {}), "fingerprint": self.engine.fingerprint}
            there = {**spec.encoder, "fingerprint": spec.fingerprint}
            differs = ", ".join(f"{k} {there.get(k, '?')} here {here[k]}" for k in here if here[k] != there.get(k))
            data_dir = getattr(self.store, "data_dir", "DIR")
            raise Conflict(
                f"collection {name!r} was filled by model {_describe(there)}; this server runs {_describe(here)} "
                f"({differs}): serve the model that filled it, or re-embed every collection with this one: "
                f"llm-embedder collections reembed --data-dir {data_dir} --model MODEL [--backend/--dtype as served]"
            )
        return spec

    # ------------------------------------------------------------------ writing
    def add(self, name: str, items: Sequence[Mapping[str, Any] | str], session: str = "") -> list[str]:
        """Add items (``{"text", "id"?, "metadata"?}`` or plain strings); returns the stored ids.

        Chunked kinds store ``<id>#<n>`` per chunk; tools are keyed by a hash of their text.
        Returns once the items are durable and searchable.
        """
        spec = self._bound(name)
        check_session(session)
        if spec.kind in SESSION_KINDS and not session:
            raise CollectionError(f"a {spec.kind} collection needs a session")
        records = []
        for n, item in enumerate(items):
            item = {"text": item} if isinstance(item, str) else dict(item)
            text = item.get("text")
            if not isinstance(text, str):
                raise CollectionError(f"item {n}: 'text' must be a string")
            metadata = item.get("metadata") or {}
            if not isinstance(metadata, Mapping):
                raise CollectionError(f"item {n}: 'metadata' must be an object")
            item_id = item.get("id") or (tool_id(text) if spec.kind == "tools" else uuid.uuid4().hex)
            check_id(item_id)
            if spec.kind in CHUNKED_KINDS:
                chunks = chunk_words(text)
                for c, chunk in enumerate(chunks):
                    meta = {**metadata, "source": item_id, "chunk": c}
                    records.append(Record(f"{item_id}#{c}", chunk, session, meta))
            else:
                records.append(Record(item_id, text, session, dict(metadata)))
        if len({r.id for r in records}) != len(records):
            raise CollectionError("two items share an id")
        todo = records
        if spec.kind == "tools":  # unchanged tools are already stored under the same hash
            have = self.store.existing_ids(name, [r.id for r in records])
            todo = [r for r in records if r.id not in have]
        if todo:
            vectors = self.engine.embed([r.text for r in todo], spec.task, "key")
            try:
                self.store.upsert(name, todo, vectors, expect=spec)
            except MissingCollection:
                raise NotFound(
                    f"collection {name!r} was deleted (or replaced) while the items were embedded; nothing was added"
                ) from None
        return [r.id for r in records]

    # ------------------------------------------------------------------ reading
    def search(self, name: str, query: str, k: int = 5, session: str = "", task: str | None = None) -> list[Hit]:
        return self.search_many([(name, query, k, session, task)])[0]

    def search_many(self, requests: Sequence[tuple[str, str, int, str, str | None]]) -> list[list[Hit]]:
        """Several searches ``(collection, query, k, session, task)``; all queries embedded in one job."""
        plans = []
        for name, query, k, session, task in requests:
            spec = self._bound(name)
            check_session(session)
            if not isinstance(query, str):
                raise CollectionError("the query must be a string")
            if not isinstance(k, int) or not 1 <= k <= 1000:
                raise CollectionError("k must be an integer in [1, 1000]")
            if task is not None and task != spec.task and not (task == "convsearch" and spec.kind == "knowledge"):
                raise CollectionError(f"a {spec.kind} collection is searched with task {spec.task}, not {task!r}")
            plans.append((name, query, k, session, task or spec.task))
        if not plans:
            return []
        vectors = self.engine.embed_mixed([(query, task, "query") for _, query, _, _, task in plans])
        results = []
        for (name, _, k, session, _), vector in zip(plans, vectors, strict=True):
            hits = self.store.search(name, vector, k, session)
            results.append(
                [Hit(h.record.id, h.record.text, h.score, h.record.session, h.record.metadata) for h in hits]
            )
        return results

    def records(self, name: str, session: str | None = None) -> list[Record]:
        self.get(name)
        return self.store.records(name, None if session is None else check_session(session))

    def close(self) -> None:
        self.store.close()
