"""What every route shares: API errors in OpenAI's shape, JSON responses, and engine errors as HTTP answers.

Its own module so that the app and the collection routes both import it and not each other.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from llm_embedder.serving.engine import EngineStopped, QueueFull
from llm_embedder.serving.gate import error_body


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None, **headers: str):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.headers = status, message, code, param, headers

    def response(self) -> JSONResponse:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return JSONResponse(error_body(self.message, kind, self.code, self.param), self.status, headers=self.headers)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, ensure_ascii=False), status, media_type="application/json")


def fast_json_response(data: Any, status: int = 200) -> Response:
    """:func:`json_response` for payloads of plain JSON types (string keys) that are mostly floats.

    With ``orjson`` installed it writes them many times faster than the standard library (whose float
    formatting is most of an embedding response's cost); the numbers read back the same either way.
    """
    if _orjson is None:
        return json_response(data, status)
    return Response(_orjson.dumps(data), status, media_type="application/json")


def _load_orjson() -> Any:
    try:
        import orjson
    except ImportError:
        return None
    return orjson


_orjson = _load_orjson()


def retry_headers(seconds: int) -> dict[str, str]:
    return {"Retry-After": str(max(1, int(seconds)))}


def engine_error(exc: Exception) -> ApiError:
    """429 for a full queue (retry when it should have drained), 503 for a stopped engine."""
    if isinstance(exc, QueueFull):
        return ApiError(429, str(exc), "queue_full", **retry_headers(exc.retry_after_s))
    if isinstance(exc, EngineStopped):
        return ApiError(503, str(exc), "not_ready", **retry_headers(1))
    raise TypeError(f"not an engine error: {exc!r}")


async def call_engine(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``func`` in a worker thread, with the engine's errors answered as HTTP errors."""
    try:
        return await run_in_threadpool(func, *args, **kwargs)
    except (QueueFull, EngineStopped) as exc:
        raise engine_error(exc) from None
