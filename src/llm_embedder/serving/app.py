"""The HTTP layer: FastAPI routes that parse and validate, then call the engine (and collections).

Routes: ``POST /v1/embeddings`` (OpenAI-compatible, plus ``task``, ``input_type`` and ``truncate``),
``GET /v1/models``, ``GET /v1/tasks``, ``GET /info``, ``GET /health``, ``GET /ready``, ``GET /metrics``;
the collection routes when a :class:`~llm_embedder.serving.collections.Collections` is given.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from llm_embedder.serving.engine import (
    SIDE_ALIASES,
    SIDES,
    Engine,
    EngineStopped,
    InputTooLong,
    QueueFull,
    canonical_side,
)
from llm_embedder.serving.gate import Gate, error_body
from llm_embedder.serving.metrics import ServingMetrics

MAX_INPUTS = 2048
MAX_BODY_BYTES = 16 << 20


@dataclass
class ServeSettings:
    served_name: str = "llm-embedder"
    """The ``model`` clients send; ``<served_name>/<task>.<side>`` picks a task and side."""
    model: str = ""
    """What was loaded (a zoo name, folder or hub id), shown by ``/info``."""
    api_keys: tuple[str, ...] = ()
    max_inputs: int = MAX_INPUTS
    max_body_bytes: int = MAX_BODY_BYTES
    default_task: str = "qa"
    default_input_type: str = "query"
    retry_after_s: int = 1
    extra_info: dict[str, Any] = field(default_factory=dict)


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None, **headers: str):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.headers = status, message, code, param, headers

    def response(self) -> JSONResponse:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return JSONResponse(error_body(self.message, kind, self.code, self.param), self.status, headers=self.headers)


class EmbeddingRequest(BaseModel):
    input: str | list[str] | list[int] | list[list[int]]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None
    task: str | None = None
    input_type: str | None = None
    truncate: Literal["error", "left", "right"] = "error"


def model_aliases(settings: ServeSettings, engine: Engine) -> list[str]:
    return [f"{settings.served_name}/{task}.{side}" for task in engine.tasks for side in SIDES]


def resolve_task_side(body: EmbeddingRequest, settings: ServeSettings, engine: Engine) -> tuple[str, str]:
    """The task and side a request asks for: from the model alias, the extension fields, or the defaults."""
    alias_task = alias_side = None
    if body.model and body.model != settings.served_name:
        prefix = settings.served_name + "/"
        alias_task, _, alias_side = body.model.removeprefix(prefix).rpartition(".")
        if not body.model.startswith(prefix) or alias_task not in engine.tasks or alias_side not in SIDES:
            raise ApiError(
                404,
                f"unknown model {body.model!r}; use {settings.served_name!r} or {settings.served_name}/<task>.<side> "
                f"(GET /v1/models lists them)",
                "model_not_found",
                "model",
            )
    task = body.task or alias_task or settings.default_task
    if body.task and alias_task and body.task != alias_task:
        raise ApiError(400, f"task {body.task!r} contradicts model {body.model!r}", "invalid_task", "task")
    if task not in engine.tasks:
        raise ApiError(400, f"unknown task {task!r}; known: {', '.join(engine.tasks)}", "invalid_task", "task")
    try:
        side = canonical_side(body.input_type) if body.input_type else alias_side or settings.default_input_type
    except ValueError as exc:
        raise ApiError(400, str(exc), "invalid_input_type", "input_type") from None
    if body.input_type and alias_side and side != alias_side:
        raise ApiError(400, f"input_type {body.input_type!r} contradicts model {body.model!r}", "invalid_input_type")
    return task, side


def input_texts(value: Any, engine: Engine, max_inputs: int) -> list[str]:
    """``input`` as texts: a string, strings, or token ids of this model's tokenizer (decoded)."""
    if isinstance(value, str):
        texts: list[Any] = [value]
    elif value and all(isinstance(v, int) for v in value):
        texts = [value]
    else:
        texts = list(value)
    if not texts:
        raise ApiError(400, "input must not be empty", "empty_input", "input")
    if len(texts) > max_inputs:
        raise ApiError(400, f"{len(texts)} inputs, at most {max_inputs} per request", "too_many_inputs", "input")
    vocab = len(engine.embedder.tokenizer)
    decoded = []
    for i, item in enumerate(texts):
        if isinstance(item, list):
            if any(not 0 <= t < vocab for t in item):
                raise ApiError(400, f"input {i}: token ids must lie in [0, {vocab})", "invalid_tokens", "input")
            item = engine.embedder.tokenizer.decode(item, skip_special_tokens=True)
        decoded.append(item)
    return decoded


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, ensure_ascii=False), status, media_type="application/json")


def create_app(engine: Engine, settings: ServeSettings | None = None, collections: Any = None) -> Any:
    """The ASGI app serving ``engine`` (already started, or started by the app's lifespan)."""
    settings = settings or ServeSettings()
    metrics = ServingMetrics()
    engine.metrics = metrics
    app = FastAPI(title="llm-embedder", version="1", summary="Task-aware embeddings and retrieval for LLMs")

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "invalid request")
        return JSONResponse(error_body(message, "invalid_request_error", "invalid_request", where or None), 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(exc.detail), "invalid_request_error", None), exc.status_code)

    @app.middleware("http")
    async def _count(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        route = request.scope.get("route")
        metrics.requests.labels(getattr(route, "path", "other"), str(response.status_code)).inc()
        return response

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest) -> Response:
        began = time.perf_counter()
        task, side = resolve_task_side(body, settings, engine)
        if body.dimensions is not None and body.dimensions != engine.dim:
            raise ApiError(
                400,
                f"dimensions={body.dimensions}: this model gives {engine.dim} only",
                "invalid_dimensions",
                "dimensions",
            )
        texts = input_texts(body.input, engine, settings.max_inputs)
        try:
            items = await run_in_threadpool(engine.prepare, texts, task, side, body.truncate)
        except InputTooLong as exc:
            raise ApiError(400, str(exc), "input_too_long", "input") from None
        result = await asyncio.wrap_future(_submit(engine, items, settings))
        metrics.embedded(task, side, len(texts), result.tokens, result.truncated, time.perf_counter() - began)
        if body.encoding_format == "base64":
            vectors: list[Any] = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in result.vectors]
        else:
            vectors = result.vectors.tolist()
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        usage = {"prompt_tokens": result.tokens, "total_tokens": result.tokens, "truncated_inputs": result.truncated}
        model = body.model or settings.served_name
        return _json({"object": "list", "data": data, "model": model, "usage": usage})

    @app.get("/v1/models")
    async def models() -> Response:
        names = [settings.served_name, *model_aliases(settings, engine)]
        return _json(
            {
                "object": "list",
                "data": [{"id": n, "object": "model", "created": 0, "owned_by": "llm-embedder"} for n in names],
            }
        )

    @app.get("/v1/tasks")
    async def tasks() -> Response:
        rows = []
        for name, task in engine.tasks.items():
            row = {k: v for k, v in asdict(task).items() if k != "training"}
            row["models"] = [f"{settings.served_name}/{name}.{side}" for side in SIDES]
            rows.append({"id": name, "object": "task", **row})
        return _json({"object": "list", "data": rows})

    @app.get("/info")
    async def info() -> Response:
        embedder = engine.embedder
        return _json(
            {
                "served_name": settings.served_name,
                "model": settings.model,
                "dimension": engine.dim,
                "pooling": embedder.pooling,
                "normalize": embedder.normalize,
                "fingerprint": engine.fingerprint,
                "tasks": list(engine.tasks),
                "input_types": SIDE_ALIASES,
                "defaults": {
                    "task": settings.default_task,
                    "input_type": settings.default_input_type,
                    "truncate": "error",
                },
                "limits": {
                    "max_inputs": settings.max_inputs,
                    "max_body_bytes": settings.max_body_bytes,
                    "max_batch_tokens": engine.max_batch_tokens,
                    "max_queue_inputs": engine.max_queue_inputs,
                },
                "auth": bool(settings.api_keys),
                **settings.extra_info,
            }
        )

    @app.get("/health")
    async def health() -> Response:
        alive = engine.running
        return _json({"status": "ok" if alive else "worker stopped"}, 200 if alive else 503)

    @app.get("/ready")
    async def ready() -> Response:
        if not engine.running:
            raise ApiError(503, "the model is not loaded yet or is shutting down", "not_ready", **_retry(settings))
        return _json({"status": "ready", "queued_inputs": engine.queued_inputs})

    @app.get("/metrics")
    async def prometheus() -> Response:
        metrics.queue_inputs.set(engine.queued_inputs)
        return Response(metrics.render(), media_type=ServingMetrics.CONTENT_TYPE)

    if collections is not None:
        from llm_embedder.serving.collection_routes import add_collection_routes

        add_collection_routes(app, collections, settings, engine)

    return Gate(app, fingerprint=engine.fingerprint, api_keys=settings.api_keys, max_body_bytes=settings.max_body_bytes)


def _retry(settings: ServeSettings) -> dict[str, str]:
    return {"Retry-After": str(settings.retry_after_s)}


def _submit(engine: Engine, items: list, settings: ServeSettings) -> Any:
    try:
        return engine.submit(items)
    except QueueFull as exc:
        raise ApiError(429, str(exc), "queue_full", **_retry(settings)) from None
    except EngineStopped as exc:
        raise ApiError(503, str(exc), "not_ready", **_retry(settings)) from None
