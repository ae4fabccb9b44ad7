"""The HTTP layer: FastAPI routes that parse and validate, then call the engine (and collections).

Routes: ``POST /v1/embeddings`` (OpenAI-compatible, plus ``task``, ``input_type`` and ``truncate``),
``GET /v1/models``, ``GET /v1/tasks``, ``GET /info``, ``GET /health``, ``GET /ready``, ``GET /metrics``;
the collection routes when a :class:`~llm_embedder.serving.collections.Collections` is given.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, StrictInt, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from llm_embedder.serving.collection_routes import add_collection_routes
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
from llm_embedder.serving.http import (
    ApiError,
    call_engine,
    engine_error,
    fast_json_response,
    json_response,
    retry_headers,
)
from llm_embedder.serving.metrics import ServingMetrics
from llm_embedder.version import __version__

MAX_INPUTS = 2048
MAX_BODY_BYTES = 16 << 20
access_log = logging.getLogger("llm_embedder.access")


@dataclass
class ServeSettings:
    served_name: str = "llm-embedder"
    """The ``model`` clients send; ``<served_name>/<task>.<side>`` picks a task and side."""
    model: str = ""
    """What was loaded (a zoo name, folder or hub id), shown by ``/info``."""
    model_names: tuple[str, ...] = ()
    """Other names clients may send for the served model (the ``--model`` given, a folder's basename)."""
    api_keys: tuple[str, ...] = ()
    max_inputs: int = MAX_INPUTS
    max_body_bytes: int = MAX_BODY_BYTES
    default_task: str = "qa"
    default_input_type: str = "query"
    access_log: bool = False
    extra_info: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """Every base name a client may send, the served name first."""
        return list(dict.fromkeys(n for n in (self.served_name, *self.model_names) if n))


class EmbeddingRequest(BaseModel):
    # Strict: JSON true is not the token id 1, nor 3 the text "3".
    input: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None
    task: str | None = None
    input_type: str | None = None
    truncate: Literal["error", "left", "right"] = "error"


INPUT_SHAPES = "a string, a list of strings, a list of token ids or a list of lists of token ids"


def model_aliases(settings: ServeSettings, engine: Engine) -> list[str]:
    return [f"{name}/{task}.{side}" for name in settings.names for task in engine.tasks for side in SIDES]


def resolve_task_side(body: EmbeddingRequest, settings: ServeSettings, engine: Engine) -> tuple[str, str]:
    """The task and side a request asks for: from the model alias, the extension fields, or the defaults."""
    alias_task = alias_side = None
    if body.model and body.model not in settings.names:
        base, _, alias = body.model.rpartition("/")
        alias_task, _, alias_side = alias.rpartition(".")
        if base not in settings.names or alias_task not in engine.tasks or alias_side not in SIDES:
            raise ApiError(
                404,
                f"unknown model {body.model!r}; use {' or '.join(map(repr, settings.names))}, or "
                f"{settings.served_name}/<task>.<side> (GET /v1/models lists them)",
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
    vocab = engine.vocab_size
    decoded = []
    for i, item in enumerate(texts):
        if not item:  # as OpenAI: an empty string (or token list) has no embedding
            raise ApiError(400, f"input {i} is empty", "empty_input", "input")
        if isinstance(item, list):
            if any(not 0 <= t < vocab for t in item):
                raise ApiError(400, f"input {i}: token ids must lie in [0, {vocab})", "invalid_tokens", "input")
            item = engine.decode(item)
        decoded.append(item)
    return decoded


def _validation_message(request: Request, exc: RequestValidationError) -> tuple[str, str, str | None]:
    """One line for a body FastAPI could not take: ``(message, code, param)``."""
    first = exc.errors()[0] if exc.errors() else {}
    kind = first.get("type", "")
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if kind == "json_invalid":
        position = loc[0] if loc else "?"
        reason = (first.get("ctx") or {}).get("error", "invalid JSON")
        return f"malformed JSON at character {position}: {reason}", "invalid_json", None
    content_type = request.headers.get("content-type", "")
    if not loc and "json" not in content_type:
        return (
            f"the body must be a JSON object sent as Content-Type: application/json, not {content_type or 'nothing'}",
            "invalid_content_type",
            None,
        )
    if loc and loc[0] == "input":
        return f"input must be {INPUT_SHAPES}", "invalid_input", "input"
    where = ".".join(loc)
    message = first.get("msg", "invalid request")
    return (f"{where}: {message}" if where else message), "invalid_request", where or None


def create_app(engine: Engine, settings: ServeSettings | None = None, collections: Any = None) -> Any:
    """The ASGI app serving ``engine`` (already started, or started by the app's lifespan)."""
    settings = settings or ServeSettings()
    metrics = ServingMetrics()
    engine.metrics = metrics
    app = FastAPI(title="llm-embedder", version=__version__, summary="Task-aware embeddings and retrieval for LLMs")

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, code, param = _validation_message(request, exc)
        return JSONResponse(error_body(message, "invalid_request_error", code, param), 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(exc.detail), "invalid_request_error", None), exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not a bad request: uvicorn logs its traceback; the client gets the shape it parses.
        message = f"internal error ({type(exc).__name__}); the server log has the details"
        return JSONResponse(error_body(message, "server_error", "internal_error"), 500)

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest) -> Response:
        began = time.perf_counter()
        task, side = resolve_task_side(body, settings, engine)
        if body.dimensions is not None and body.dimensions != engine.dim:
            raise ApiError(
                400,
                f"dimensions={body.dimensions}: this model gives {engine.dim} only (it is not trained for "
                "shorter, Matryoshka-style vectors)",
                "invalid_dimensions",
                "dimensions",
            )
        if isinstance(body.input, str) or all(isinstance(item, str) for item in body.input):
            texts = input_texts(body.input, engine, settings.max_inputs)  # checks only: no thread needed
        else:  # token ids, decoded with a borrowed tokenizer
            texts = await call_engine(input_texts, body.input, engine, settings.max_inputs)
        try:
            # A few short texts are tokenised here: cheaper than the hop to a thread, which dominates them.
            items = engine.prepare_now(texts, task, side, body.truncate)
            if items is None:
                items = await call_engine(engine.prepare, texts, task, side, body.truncate)
        except InputTooLong as exc:
            raise ApiError(400, str(exc), "input_too_long", "input") from None
        try:
            future = engine.submit(items)
        except (QueueFull, EngineStopped) as exc:
            raise engine_error(exc) from None
        result = await asyncio.wrap_future(future)
        metrics.embedded(task, side, len(texts), result.tokens, result.truncated, time.perf_counter() - began)
        if body.encoding_format == "base64":
            vectors: list[Any] = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in result.vectors]
        else:
            vectors = result.vectors.tolist()
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        usage = {"prompt_tokens": result.tokens, "total_tokens": result.tokens, "truncated_inputs": result.truncated}
        model = body.model or settings.served_name
        return fast_json_response({"object": "list", "data": data, "model": model, "usage": usage})

    @app.get("/v1/models")
    async def models() -> Response:
        names = [*settings.names, *model_aliases(settings, engine)]
        return json_response(
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
        return json_response({"object": "list", "data": rows})

    @app.get("/info")
    async def info() -> Response:
        embedder = engine.embedder
        return json_response(
            {
                "served_name": settings.served_name,
                "model_names": settings.names,
                "model": settings.model,
                "version": __version__,
                "backend": embedder.backend,
                "dtype": embedder.encoding_dtype,
                "device": str(embedder.device),
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
                "threads": {"model": _model_threads(embedder), "tokenizers": engine.tokenizer_workers},
                "auth": bool(settings.api_keys),
                **settings.extra_info,
            }
        )

    @app.get("/health")
    async def health() -> Response:
        alive = engine.running
        return json_response({"status": "ok" if alive else "worker stopped"}, 200 if alive else 503)

    @app.get("/ready")
    async def ready() -> Response:
        if not engine.running:
            raise ApiError(503, "the model is not loaded yet or is shutting down", "not_ready", **retry_headers(1))
        return json_response({"status": "ready", "queued_inputs": engine.queued_inputs})

    @app.get("/metrics")
    async def prometheus() -> Response:
        metrics.queue_inputs.set(engine.queued_inputs)
        return Response(metrics.render(), media_type=ServingMetrics.CONTENT_TYPE)

    if collections is not None:
        add_collection_routes(app, collections)

    def observe(scope: dict, status: int, seconds: float) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None) or _route_path(app, scope)
        metrics.request(path, scope.get("method", ""), status, seconds)
        if settings.access_log:
            client = scope.get("client") or ("-", 0)
            access_log.info(
                '%s "%s %s" %d %.1f ms', client[0], scope.get("method"), scope.get("path"), status, seconds * 1000
            )

    return Gate(
        app,
        fingerprint=engine.fingerprint,
        api_keys=settings.api_keys,
        max_body_bytes=settings.max_body_bytes,
        observe=observe,
    )


def _route_path(app: FastAPI, scope: dict) -> str:
    """The route template of a request the gate answered itself (401, 413): bounded label values."""
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return getattr(route, "path", "other")
    return "other"


def _model_threads(embedder: Any) -> int:
    import torch

    if embedder.runtime is not None:
        return int(embedder.runtime.session.get_session_options().intra_op_num_threads)
    return torch.get_num_threads()
