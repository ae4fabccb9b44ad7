"""Serving speed: the HTTP server against in-process ``encode`` and against a naive server.

Run from the repository root (offline)::

    python benchmarks/serve.py
    python benchmarks/serve.py --model minilm --texts 512 --clients 32

All three embed the same real texts (the toy files' strings, see ``benchmarks/encode.py``) as
``qa`` queries with the same model:

- **in-process**: one ``Embedder.encode_queries`` call on all texts (the library's own batching);
- **server**: ``llm-embedder serve``'s app (engine micro-batching) on a free local port, ``--clients``
  concurrent clients each sending one text per request until all texts are done;
- **naive**: a FastAPI server that runs one forward pass per request (one text), same clients.

Printed: texts/second of each, the ratios server/in-process (target >= 0.85) and server/naive
(target >= 3), then p50/p99 latency of the server under an open-loop load of half its measured
throughput (requests sent at a fixed rate, one text each). Clients and server share this machine's
cores, which costs the HTTP figures some throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
from pydantic import BaseModel  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encode import DATA_DIR, load_texts  # noqa: E402

TASK = "qa"


class NaiveBody(BaseModel):
    input: list[str]
    task: str = TASK


def naive_app(embedder):
    """One forward pass per request, one request at a time: what a plain model wrapper does."""
    from fastapi import FastAPI
    from fastapi.concurrency import run_in_threadpool

    app = FastAPI()
    lock = threading.Lock()

    def encode(texts: list[str], task: str) -> list[list[float]]:
        with lock:
            return embedder.encode_queries(texts, task).tolist()

    @app.post("/v1/embeddings")
    async def embeddings(body: NaiveBody) -> dict:
        vectors = await run_in_threadpool(encode, body.input, body.task)
        return {"data": [{"index": i, "embedding": v} for i, v in enumerate(vectors)]}

    return app


async def send(http: httpx.AsyncClient, text: str) -> None:
    # truncate=right: what in-process encode does with texts over the task's budget
    body = {"input": [text], "task": TASK, "model": "llm-embedder", "truncate": "right"}
    response = await http.post("/v1/embeddings", json=body)
    response.raise_for_status()


async def closed_loop(url: str, texts: Sequence[str], clients: int) -> float:
    """Seconds for ``clients`` concurrent clients to send every text, one per request."""
    queue = list(reversed(texts))

    async def client(http: httpx.AsyncClient) -> None:
        while queue:
            await send(http, queue.pop())

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        await send(http, texts[0])  # warm-up request
        began = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return time.perf_counter() - began


async def open_loop(url: str, texts: Sequence[str], rate: float) -> np.ndarray:
    """Latencies (s) of one-text requests sent at ``rate`` per second, whatever the answers' pace."""
    latencies: list[float] = []

    async def one(http: httpx.AsyncClient, text: str) -> None:
        began = time.perf_counter()
        await send(http, text)
        latencies.append(time.perf_counter() - began)

    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        start = time.perf_counter()
        tasks = []
        for n, text in enumerate(texts):
            await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(http, text)))
        await asyncio.gather(*tasks)
    return np.array(latencies)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm", help="encoder (default minilm)")
    parser.add_argument("--texts", type=int, default=512, help="texts per measurement (default 512)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    args = parser.parse_args(argv)

    from llm_embedder import Embedder
    from llm_embedder.serving.app import create_app
    from llm_embedder.serving.engine import Engine
    from llm_embedder.serving.server import BackgroundServer

    texts = load_texts(args.data)
    texts = (texts * (args.texts // max(len(texts), 1) + 1))[: args.texts]
    embedder = Embedder.from_pretrained(args.model, device=args.device, instructions=True)
    print(f"{len(texts)} texts, {args.clients} clients, model {args.model} on {args.device}; {embedder}")

    embedder.encode_queries(texts[:64], TASK)  # warm-up
    began = time.perf_counter()
    embedder.encode_queries(texts, TASK)
    in_process = len(texts) / (time.perf_counter() - began)
    print(f"in-process encode : {in_process:8.1f} texts/s")

    with Engine(embedder) as engine, BackgroundServer(create_app(engine)) as server:
        served = len(texts) / asyncio.run(closed_loop(server.url, texts, args.clients))
        print(f"server (batching) : {served:8.1f} texts/s")
        latencies = asyncio.run(open_loop(server.url, texts[: max(64, len(texts) // 2)], served / 2))
    with BackgroundServer(naive_app(embedder)) as server:
        naive = len(texts) / asyncio.run(closed_loop(server.url, texts, args.clients))
    print(f"naive server      : {naive:8.1f} texts/s")
    print(f"ratio server / in-process: {served / in_process:.2f} (target >= 0.85)")
    print(f"ratio server / naive     : {served / naive:.2f} (target >= 3)")
    p50, p99 = np.percentile(latencies, [50, 99]) * 1000
    print(
        f"latency at half load ({served / 2:.0f} requests/s, {len(latencies)} requests): "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    )


if __name__ == "__main__":
    main()
