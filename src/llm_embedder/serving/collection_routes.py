"""HTTP routes of the collections and ``/v1/augment``: parse, then call :class:`Collections`."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from pydantic import BaseModel, Field

from llm_embedder.serving.augment import Need, augment
from llm_embedder.serving.collections import CollectionError, Collections
from llm_embedder.serving.http import ApiError, call_engine
from llm_embedder.serving.http import json_response as _json


class CreateCollection(BaseModel):
    name: str
    kind: str
    method: str = "dense"
    factory: str = "Flat"


class Item(BaseModel):
    text: str
    id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class AddItems(BaseModel):
    items: list[Item | str] = Field(max_length=2048)
    session: str = ""


class Search(BaseModel):
    query: str
    k: int = 5
    session: str = ""
    task: str | None = None


class Message(BaseModel):
    role: str
    content: str


class NeedRequest(BaseModel):
    need: str
    collection: str
    k: int = 3


class Augment(BaseModel):
    messages: list[Message]
    needs: list[NeedRequest] = Field(max_length=16)
    session: str = ""
    assemble: bool = False


def add_collection_routes(app: FastAPI, collections: Collections) -> None:
    async def call(func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await call_engine(func, *args, **kwargs)
        except CollectionError as exc:
            raise ApiError(exc.status, str(exc), type(exc).__name__.lower()) from None

    @app.post("/v1/collections")
    async def create(body: CreateCollection) -> Response:
        spec = await call(collections.create, body.name, body.kind, body.method, body.factory)
        return _json(spec.to_dict())

    @app.get("/v1/collections")
    async def listing() -> Response:
        return _json({"object": "list", "data": [s.to_dict() for s in collections.list()]})

    @app.get("/v1/collections/{name}")
    async def get(name: str) -> Response:
        return _json((await call(collections.get, name)).to_dict())

    @app.delete("/v1/collections/{name}")
    async def drop(name: str) -> Response:
        await call(collections.drop, name)
        return _json({"deleted": name})

    @app.post("/v1/collections/{name}/items")
    async def add(name: str, body: AddItems) -> Response:
        items = [i if isinstance(i, str) else i.model_dump(exclude_none=True) for i in body.items]
        ids = await call(collections.add, name, items, body.session)
        return _json({"ids": ids})

    @app.get("/v1/collections/{name}/items")
    async def items(name: str, session: str | None = None) -> Response:
        records = await call(collections.records, name, session)
        return _json({"object": "list", "data": [asdict(r) for r in records]})

    @app.post("/v1/collections/{name}/search")
    async def search(name: str, body: Search) -> Response:
        hits = await call(collections.search, name, body.query, body.k, body.session, body.task)
        return _json({"object": "list", "data": [asdict(h) for h in hits]})

    @app.post("/v1/augment")
    async def augment_route(body: Augment) -> Response:
        needs = [Need(n.need, n.collection, n.k) for n in body.needs]
        messages = [m.model_dump() for m in body.messages]
        return _json(await call(augment, collections, messages, needs, body.session, body.assemble))
