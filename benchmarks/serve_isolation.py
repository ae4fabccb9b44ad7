"""Serving isolation: a small request's latency beside a huge input and behind a bulk queue.

Run from the repository root (offline)::

    python benchmarks/serve_isolation.py
    python benchmarks/serve_isolation.py --model minilm --small 40 --huge-chars 5000000 --bulk 8192

One server (the app ``llm-embedder serve`` runs, on a free local port) and three measurements of a
one-text ``qa`` query, sent one after another ``--small`` times:

- **alone**: nothing else runs (the baseline of this run);
- **beside a huge input**: another client keeps posting one ``--huge-chars`` input with
  ``truncate=error`` (refused each time); printed with the time each refusal took;
- **behind bulk**: ``--bulk`` short key inputs queued first in requests of 2,048; printed with the time
  the bulk took, and the ``Retry-After`` a request refused by the full queue was given against the time
  the queue then took to drain.

Printed: p50/p99 of each and the ratios huge/alone and bulk/alone (the goal: close to 1 beside a
huge input; far below the bulk's drain time behind it).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encode import DATA_DIR, load_texts  # noqa: E402

SMALL = {"input": "what is the capital of france?", "task": "qa", "input_type": "query"}


def small_latencies(url: str, n: int) -> np.ndarray:
    out = []
    with httpx.Client(base_url=url, timeout=600) as client:
        for _ in range(n):
            began = time.perf_counter()
            assert client.post("/v1/embeddings", json=SMALL).status_code == 200
            out.append(time.perf_counter() - began)
    return np.array(out)


def beside_huge(url: str, n: int, chars: int) -> tuple[np.ndarray, list[float]]:
    huge = {"input": ("lorem ipsum dolor sit amet " * (chars // 27 + 1))[:chars], "truncate": "error"}
    stop, refusals = threading.Event(), []

    def hammer() -> None:
        with httpx.Client(base_url=url, timeout=600) as client:
            while not stop.is_set():
                began = time.perf_counter()
                assert client.post("/v1/embeddings", json=huge).status_code == 400
                refusals.append(time.perf_counter() - began)

    thread = threading.Thread(target=hammer)
    thread.start()
    time.sleep(0.2)
    try:
        latencies = small_latencies(url, n)
    finally:
        stop.set()
        thread.join()
    return latencies, refusals


def behind_bulk(url: str, n: int, bulk: int, texts: list[str]) -> tuple[np.ndarray, float, str | None, float]:
    rows = (texts * (bulk // max(len(texts), 1) + 1))[:bulk]
    requests = [rows[i : i + 2048] for i in range(0, len(rows), 2048)]
    with httpx.Client(base_url=url, timeout=600) as client, ThreadPoolExecutor(len(requests) + 1) as pool:
        began = time.perf_counter()
        futures = [
            pool.submit(
                client.post, "/v1/embeddings", json={"input": r, "task": "qa", "input_type": "key", "truncate": "right"}
            )
            for r in requests
        ]
        time.sleep(0.5)  # the bulk is queued
        refused = client.post(
            "/v1/embeddings", json={"input": rows[:2048], "task": "qa", "input_type": "key", "truncate": "right"}
        )
        retry_after = refused.headers.get("Retry-After") if refused.status_code == 429 else None
        refused_at = time.perf_counter()
        latencies = small_latencies(url, n)
        for f in futures:
            assert f.result().status_code == 200
        done = time.perf_counter()
    return latencies, done - began, retry_after, done - refused_at


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm", help="encoder (default minilm)")
    parser.add_argument("--small", type=int, default=40, help="small requests per measurement (default 40)")
    parser.add_argument("--huge-chars", type=int, default=5_000_000, help="characters of the huge input")
    parser.add_argument("--bulk", type=int, default=8192, help="bulk inputs queued first (default 8192)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    args = parser.parse_args(argv)

    from llm_embedder import Embedder
    from llm_embedder.serving.app import create_app
    from llm_embedder.serving.engine import Engine
    from llm_embedder.serving.server import BackgroundServer, set_threads

    threads, tokenizers = set_threads(None, None)
    embedder = Embedder.from_pretrained(args.model, device=args.device, instructions=True)
    texts = load_texts(args.data)
    print(f"model {args.model}: {embedder}; {threads} model threads, {tokenizers} tokenizers")
    with (
        # Room for the bulk and the small requests; one more bulk request is refused (429).
        Engine(embedder, max_queue_inputs=args.bulk + 64, tokenizer_workers=tokenizers) as engine,
        BackgroundServer(create_app(engine)) as server,
    ):
        small_latencies(server.url, 5)  # warm-up
        alone = small_latencies(server.url, args.small)
        huge, refusals = beside_huge(server.url, args.small, args.huge_chars)
        bulk, bulk_s, retry_after, drain_s = behind_bulk(server.url, args.small, args.bulk, texts)

    def show(name: str, values: np.ndarray) -> float:
        p50, p99 = np.percentile(values, [50, 99]) * 1000
        print(f"{name:24s}: p50 {p50:8.1f} ms  p99 {p99:8.1f} ms")
        return p50

    base = show("alone", alone)
    beside = show("beside a huge input", huge)
    behind = show("behind bulk", bulk)
    print(f"huge input refused in    : median {np.median(refusals) * 1000:.1f} ms ({len(refusals)} refusals)")
    given = f"Retry-After {retry_after} s" if retry_after else "no request refused"
    print(f"bulk of {args.bulk:<6d} took     : {bulk_s:.1f} s; {given}, drained {drain_s:.1f} s after the refusal")
    print(f"ratio huge / alone (p50) : {beside / base:.2f} (goal: close to 1)")
    print(f"ratio bulk / alone (p50) : {behind / base:.2f} (goal: far below the bulk's {bulk_s * 1000 / base:.0f})")


if __name__ == "__main__":
    main()
