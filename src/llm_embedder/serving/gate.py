"""The ASGI layer in front of every route: API keys, the payload limit and the fingerprint header.

Written as plain ASGI (not a Starlette ``BaseHTTPMiddleware``) so that it can count the bytes of a
streamed body and stop reading at the limit, and so that it adds no task switch per request.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

FINGERPRINT_HEADER = "x-llm-embedder-fingerprint"
# The docs open in a browser, which sends no key; they describe the API, never data.
OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """An error in the shape OpenAI clients parse."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def key_matches(token: str, keys: Collection[str]) -> bool:
    """Constant-time membership: every key is compared in full, whatever matches."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(token.encode("utf-8"), key.encode("utf-8"))
    return found


class _BodyTooLarge(Exception):
    pass


class Gate:
    """``observe(scope, status, seconds)``, if given, sees every answer, the gate's own 401 and 413 included."""

    def __init__(
        self,
        app: Any,
        *,
        fingerprint: str,
        api_keys: Collection[str] = (),
        max_body_bytes: int,
        observe: Callable[[dict, int, float], None] | None = None,
    ):
        self.app = app
        self.fingerprint = fingerprint.encode("ascii")
        self.api_keys = tuple(api_keys)
        self.max_body_bytes = max_body_bytes
        self.observe = observe

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status: list[int] = []

        async def send_seen(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self._gate(scope, receive, send_seen)
        finally:
            if self.observe is not None and status:
                self.observe(scope, status[-1], time.perf_counter() - began)

    async def _gate(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable) -> None:
        started = too_large = False

        async def send_marked(message: dict) -> None:
            nonlocal started
            if too_large:  # the app answered a body cut short; the answer is 413 instead
                return
            if message["type"] == "http.response.start":
                started = True
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (FINGERPRINT_HEADER.encode(), self.fingerprint)],
                }
            await send(message)

        headers = dict(scope.get("headers") or ())
        if self.api_keys and scope["path"] not in OPEN_PATHS and not self._authorised(headers):
            await _respond(
                send_marked, 401, error_body("invalid or missing API key", "invalid_request_error", "invalid_api_key")
            )
            return
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await _respond(send_marked, 413, self._too_large())
            return
        received = 0

        async def counted_receive() -> dict:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes and not started:
                    too_large = True
                    raise _BodyTooLarge
            return message

        # FastAPI may catch the exception itself and answer 400, which send_marked drops.
        with contextlib.suppress(_BodyTooLarge):
            await self.app(scope, counted_receive, send_marked)
        if too_large:
            too_large = False
            await _respond(send_marked, 413, self._too_large())

    def _authorised(self, headers: dict[bytes, bytes]) -> bool:
        value = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = value.partition(" ")
        return scheme.lower() == "bearer" and key_matches(token.strip(), self.api_keys)

    def _too_large(self) -> dict[str, Any]:
        return error_body(
            f"request body over {self.max_body_bytes} bytes", "invalid_request_error", "payload_too_large"
        )


async def _respond(send: Callable, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
