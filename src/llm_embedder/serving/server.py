"""Running the app: ``serve`` for the command line, :class:`BackgroundServer` for tests and benchmarks."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from llm_embedder.errors import InputError

API_KEY_ENV = "LLM_EMBEDDER_API_KEYS"


def read_api_keys(path: str | os.PathLike | None) -> tuple[str, ...]:
    """Keys from a file (one per line, ``#`` comments) and the comma-separated ``LLM_EMBEDDER_API_KEYS``."""
    keys = [k.strip() for k in os.environ.get(API_KEY_ENV, "").split(",") if k.strip()]
    if path is not None:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError) as exc:
            raise InputError(path, None, None, f"cannot read API keys: {type(exc).__name__}") from None
        keys += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not keys:
            raise InputError(path, None, None, "no API key in the file")
    return tuple(dict.fromkeys(keys))


def model_names(model: str | None) -> tuple[str, ...]:
    """Names clients may send for the served model: the ``--model`` given and, for a folder, its basename."""
    from llm_embedder.models.zoo import DEFAULT_ENCODER

    model = model or DEFAULT_ENCODER
    names = [model]
    if Path(model).is_dir():
        names.append(Path(model).resolve().name)
    return tuple(dict.fromkeys(names))


def set_threads(threads: int | None, tokenizer_workers: int | None) -> tuple[int, int]:
    """Model threads and tokenizer workers, defaults from the core count; call before loading the model
    (the onnx backend sizes its session from torch's thread count)."""
    import torch

    from llm_embedder.serving.engine import default_threads

    model_default, tokenizer_default = default_threads()
    threads = threads or model_default
    tokenizer_workers = tokenizer_workers or tokenizer_default
    if threads < 1 or tokenizer_workers < 1:
        raise ValueError("--threads and --tokenizer-workers must be positive")
    torch.set_num_threads(threads)
    return threads, tokenizer_workers


def _config(app: Any, **options: Any) -> uvicorn.Config:
    # One event loop, h11 and no access log: the model is the bottleneck, not the HTTP parser.
    return uvicorn.Config(app, log_level=options.pop("log_level", "warning"), access_log=False, **options)


def serve(app: Any, host: str, port: int) -> None:
    uvicorn.Server(_config(app, host=host, port=port)).run()


class BackgroundServer:
    """Serve an app on 127.0.0.1 and a free port from a thread: ``with BackgroundServer(app) as s: s.url``.

    The socket is bound before uvicorn starts, so no other process can take the port in between.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.url = f"http://{host}:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(_config(app))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


def serve_model(
    embedder: Any,
    *,
    host: str,
    port: int,
    settings: Any,
    max_batch_tokens: int,
    max_queue_inputs: int,
    tokenizer_workers: int | None = None,
    collections_factory: Any = None,
) -> None:
    """Run the server until interrupted: an engine on ``embedder``, the app, and the collections if any."""
    import logging

    from llm_embedder.serving.app import create_app
    from llm_embedder.serving.engine import Engine

    if settings.access_log:
        logging.getLogger("llm_embedder.access").setLevel(logging.INFO)
    engine = Engine(
        embedder,
        max_batch_tokens=max_batch_tokens,
        max_queue_inputs=max_queue_inputs,
        tokenizer_workers=tokenizer_workers,
        model_name=settings.model,
    )
    with engine:
        collections = collections_factory(engine) if collections_factory else None
        try:
            serve(create_app(engine, settings, collections), host, port)
        finally:
            if collections is not None:
                collections.close()
