"""Serving speed: the HTTP server against in-process ``encode`` and against a naive server, on two loads.

Run from the repository root (offline)::

    python benchmarks/serve.py --out serve.json                   # both loads, 60 s per short-query run
    python benchmarks/serve.py --workload short --seconds 5       # a smoke test
    python benchmarks/serve.py --backend torch --dtype float32    # another backend (default: auto, as serve)

Three ways to embed the same real texts as ``qa`` queries with the same model, backend and threads:

- **in-process**: ``Embedder.encode_queries`` on many texts at once (the library's own batching);
- **server**: the app ``llm-embedder serve`` runs (engine micro-batching) on a free local port;
- **naive**: a FastAPI server that runs one forward pass per request, one request at a time.

Loads (``--workload``), each request carrying one text, from ``--clients`` concurrent clients:

- **short** (what an embedding server mostly sees): short queries of 5 to 20 words, real text from the
  toy files shipped in ``data/flagembedding-toy`` (their queries and the sentences of their MS MARCO and
  QReCC passages); closed loop for ``--seconds`` after ``--warmup`` seconds.  Printed: requests/s and
  p50/p99 latency of the server and the naive one, in-process texts/s over the same time, and the ratios.
  Goals (issue 22): server/naive >= 3 at a p99 no worse than the naive's; server/in-process >= 0.85.
- **mixed**: ``--texts`` mixed-length texts (every pos/neg/history string of the toy files, 20 to
  8,400 characters), sent once each (closed loop), then the server's p50/p99 under an open-loop load
  of half its throughput.

The clients run in their own process (``benchmarks/loadgen.py``: a bare keep-alive HTTP client, standard
library only), so they do not share the server's GIL, but they do share this machine's cores.  The
machine's load average is recorded before and after each measurement: a figure taken beside other work
means little.  ``--out`` writes every figure as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from encode import DATA_DIR, load_texts  # noqa: E402
from figures import check_out, write_figures  # noqa: E402

TASK = "qa"
LOADGEN = HERE / "loadgen.py"
SHORT_WORDS = (5, 20)
# Files whose passages are web English (MS MARCO, QReCC): their sentences read like search queries.
SENTENCE_FILES = ("qa.json", "convsearch.json")
JSON = {"Content-Type": "application/json"}
GOALS = {"short_server_over_naive": 3.0, "short_server_over_in_process": 0.85}


def load_short_queries(data_dir: Path, words: tuple[int, int] = SHORT_WORDS) -> list[str]:
    """Real short texts: every query of the toy files with ``words`` words, then the sentences of that
    length in the pos/neg passages of :data:`SENTENCE_FILES`, deduplicated, in file order."""
    low, high = words
    seen: dict[str, None] = {}
    records = {}
    for file in sorted(data_dir.glob("*.json")):
        lines = file.read_text(encoding="utf-8").splitlines()
        records[file.name] = [json.loads(line) for line in lines if line.strip()]
    for rows in records.values():
        for record in rows:
            query = record.get("query")
            if isinstance(query, str) and low <= len(query.split()) <= high:
                seen.setdefault(query.strip(), None)
    for name in SENTENCE_FILES:
        for record in records.get(name, ()):
            for field in ("pos", "neg"):
                for text in record.get(field) or ():
                    for sentence in re.split(r"(?<=[.?!])\s+", text):
                        if low <= len(sentence.split()) <= high:
                            seen.setdefault(sentence.strip(), None)
    return list(seen)


class NaiveBody(BaseModel):
    input: list[str]
    task: str = TASK


def naive_app(embedder):
    """One forward pass per request, one request at a time: what a plain model wrapper does.

    It answers with the same JSON writer as the server, so the two differ only in how they batch."""
    from fastapi import FastAPI
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import Response

    app = FastAPI()
    lock = threading.Lock()

    def encode(texts: list[str], task: str) -> list[list[float]]:
        with lock:
            return embedder.encode_queries(texts, task).tolist()

    @app.post("/v1/embeddings")
    async def embeddings(body: NaiveBody) -> Response:
        vectors = await run_in_threadpool(encode, body.input, body.task)
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        return Response(json.dumps({"object": "list", "data": data}), media_type="application/json")

    return app


def body(text: str) -> str:
    # truncate=right: what in-process encode does with texts over the task's budget
    return json.dumps({"input": [text], "task": TASK, "model": "llm-embedder", "truncate": "right"})


def load(url: str, texts: Sequence[str], clients: int, mode: str, **options: float) -> dict:
    """Run ``benchmarks/loadgen.py`` against ``url``: its result with p50/p99 (ms), requests/s, and the CPU
    seconds this process (the server) used meanwhile, warm-up included."""
    job = {"url": url, "bodies": [body(t) for t in texts], "clients": clients, "mode": mode, **options}
    cpu = time.process_time()  # this process holds the server under test and nothing else busy
    done = subprocess.run(
        [sys.executable, str(LOADGEN)], input=json.dumps(job), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed: {done.stderr[-2000:]}")
    cpu = time.process_time() - cpu
    result = json.loads(done.stdout)
    result["server_cpu_ms_per_request"] = 1000 * cpu / result["sent"]
    result["client_cpu_ms_per_request"] = 1000 * result.pop("cpu_seconds") / result["sent"]
    latencies = np.array(result.pop("latencies")) * 1000
    result["throughput"] = result["requests"] / result["seconds"]
    result["p50_ms"], result["p99_ms"] = (float(x) for x in np.percentile(latencies, [50, 99]))
    return result


def check_vectors(url: str, embedder, texts: Sequence[str]) -> None:
    """The server answers the in-process vectors (a benchmark of wrong answers would mean nothing): to
    float32 rounding, or in bf16 to its rounding, which changes with the other texts of a batch."""
    got = []
    for text in texts:
        response = httpx.post(f"{url}/v1/embeddings", content=body(text), headers=JSON, timeout=60)
        response.raise_for_status()
        got.append(response.json()["data"][0]["embedding"])
    want = embedder.encode_queries(list(texts), TASK)
    got = np.asarray(got, dtype=np.float64)
    cosine = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    tolerance = 1e-5 if embedder.encoding_dtype == "float32" else 1e-3
    if cosine.min() < 1 - tolerance:
        raise AssertionError(f"{url} answered vectors unlike in-process encode (min cosine {cosine.min():.6f})")


class BatchCounter:
    """Counts, on a running engine, the batches its worker takes and the forward passes it splits them into."""

    def __init__(self, engine):
        self.inner, self.engine = engine.metrics, engine
        engine.metrics = self
        run = engine._run

        def counted_run(taken):
            self.batches += 1
            self.inputs += len(taken)
            run(taken)

        engine._run = counted_run
        self.batches = self.inputs = self.passes = self.padded = 0

    def batch(self, rows: int, padded_tokens: int, seconds: float) -> None:
        self.passes += 1
        self.padded += padded_tokens
        if self.inner is not None:
            self.inner.batch(rows, padded_tokens, seconds)

    def queued(self, seconds: float) -> None:
        if self.inner is not None:
            self.inner.queued(seconds)

    def take(self) -> dict:
        """Means since the last call: inputs per batch taken, forward passes per batch, padded tokens per input."""
        out = {
            "inputs_per_batch": self.inputs / self.batches if self.batches else 0.0,
            "passes_per_batch": self.passes / self.batches if self.batches else 0.0,
            "padded_tokens_per_input": self.padded / self.inputs if self.inputs else 0.0,
        }
        self.batches = self.inputs = self.passes = self.padded = 0
        return out


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on this system
        return []


def in_process_rate(embedder, texts: Sequence[str], seconds: float) -> float:
    """Texts/s of ``encode_queries`` on chunks of ``texts`` (cycled) for about ``seconds``."""
    chunk = list(texts[:256])
    embedder.encode_queries(chunk[:64], TASK)  # warm-up
    done, began = 0, time.perf_counter()
    while True:
        embedder.encode_queries(chunk, TASK, show_progress=False)
        done += len(chunk)
        elapsed = time.perf_counter() - began
        if elapsed >= seconds:
            return done / elapsed
        chunk = chunk[len(chunk) // 2 :] + chunk[: len(chunk) // 2]  # same texts, other neighbours


def batching_gain(embedder, texts: Sequence[str], size: int = 32, rounds: int = 4) -> dict:
    """In-process milliseconds per text, one text a call and ``size`` a call: what batching wins on the model.

    On a CPU a forward pass costs nearly in proportion to its tokens, so the gain is small there; on a
    GPU a batch of 32 short texts costs little more than one."""
    texts = list(texts[: size * rounds])
    embedder.encode_queries(texts[:size], TASK, show_progress=False)  # warm-up
    began = time.perf_counter()
    for text in texts:
        embedder.encode_queries([text], TASK, show_progress=False)
    one = (time.perf_counter() - began) * 1000 / len(texts)
    began = time.perf_counter()
    for start in range(0, len(texts), size):
        embedder.encode_queries(texts[start : start + size], TASK, show_progress=False)
    batched = (time.perf_counter() - began) * 1000 / len(texts)
    return {"ms_per_text_alone": one, f"ms_per_text_in_{size}": batched, "gain": one / batched}


def run_short(args, embedder, engine_factory, queries: list[str]) -> dict:
    from llm_embedder.serving.app import create_app
    from llm_embedder.serving.server import BackgroundServer

    timed = {"warmup": args.warmup, "seconds": args.seconds}
    out: dict = {"texts": len(queries), "clients": args.clients, **timed}
    out["load_before"] = loadavg()
    out["batching"] = gain = batching_gain(embedder, queries, args.clients)
    print(
        f"short  in-process: {gain['ms_per_text_alone']:.2f} ms a text one at a time, "
        f"{gain[f'ms_per_text_in_{args.clients}']:.2f} in batches of {args.clients} ({gain['gain']:.2f}x)",
        flush=True,
    )
    rate = in_process_rate(embedder, queries, args.seconds)
    out["in_process"] = {"throughput": rate}
    print(f"short  in-process   {rate:9.1f} texts/s", flush=True)
    with engine_factory() as engine, BackgroundServer(create_app(engine)) as server:
        counter = BatchCounter(engine)
        check_vectors(server.url, embedder, queries[:4])
        counter.take()
        out["server"] = load(server.url, queries, args.clients, "timed", **timed)
        out["server"]["batches"] = counter.take()
    print(_row("short", "server", out["server"]), flush=True)
    with BackgroundServer(naive_app(embedder)) as server:
        check_vectors(server.url, embedder, queries[:4])
        out["naive"] = load(server.url, queries, args.clients, "timed", **timed)
    print(_row("short", "naive", out["naive"]), flush=True)
    out["load_after"] = loadavg()
    out["server_over_naive"] = out["server"]["throughput"] / out["naive"]["throughput"]
    out["server_over_in_process"] = out["server"]["throughput"] / rate
    out["p99_no_worse_than_naive"] = out["server"]["p99_ms"] <= out["naive"]["p99_ms"]
    return out


def run_mixed(args, embedder, engine_factory, texts: list[str]) -> dict:
    from llm_embedder.serving.app import create_app
    from llm_embedder.serving.server import BackgroundServer

    out: dict = {"texts": len(texts), "clients": args.clients, "load_before": loadavg()}
    embedder.encode_queries(texts[:64], TASK)  # warm-up
    began = time.perf_counter()
    embedder.encode_queries(texts, TASK, show_progress=False)
    out["in_process"] = {"throughput": len(texts) / (time.perf_counter() - began)}
    print(f"mixed  in-process   {out['in_process']['throughput']:9.1f} texts/s", flush=True)
    with engine_factory() as engine, BackgroundServer(create_app(engine)) as server:
        counter = BatchCounter(engine)
        check_vectors(server.url, embedder, texts[:4])
        counter.take()
        out["server"] = load(server.url, texts, args.clients, "drain")
        out["server"]["batches"] = counter.take()
        print(_row("mixed", "server", out["server"]), flush=True)
        half = out["server"]["throughput"] / 2
        out["server_half_load"] = load(server.url, texts[: max(64, len(texts) // 2)], args.clients, "open", rate=half)
        out["server_half_load"]["rate"] = half
    print(_row("mixed", f"server @{half:.0f}/s", out["server_half_load"]), flush=True)
    with BackgroundServer(naive_app(embedder)) as server:
        out["naive"] = load(server.url, texts, args.clients, "drain")
    print(_row("mixed", "naive", out["naive"]), flush=True)
    out["load_after"] = loadavg()
    out["server_over_naive"] = out["server"]["throughput"] / out["naive"]["throughput"]
    out["server_over_in_process"] = out["server"]["throughput"] / out["in_process"]["throughput"]
    return out


def _row(workload: str, name: str, r: dict) -> str:
    speed = f"{r['throughput']:9.1f} req/s"
    return f"{workload:6} {name:18} {speed}   p50 {r['p50_ms']:8.1f} ms   p99 {r['p99_ms']:8.1f} ms"


def summary(results: dict) -> str:
    lines = [
        "",
        "| load | in-process texts/s | server req/s | naive req/s | server p50/p99 ms | naive p50/p99 ms "
        "| server/naive | server/in-process | inputs a batch (passes) | load avg before → after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["workloads"].items():
        s, n = r["server"], r["naive"]
        lines.append(
            f"| {name} | {r['in_process']['throughput']:.1f} | {s['throughput']:.1f} | {n['throughput']:.1f} "
            f"| {s['p50_ms']:.1f} / {s['p99_ms']:.1f} | {n['p50_ms']:.1f} / {n['p99_ms']:.1f} "
            f"| {r['server_over_naive']:.2f} | {r['server_over_in_process']:.2f} "
            f"| {s['batches']['inputs_per_batch']:.1f} ({s['batches']['passes_per_batch']:.1f}) "
            f"| {r['load_before']} → {r['load_after']} |"
        )
    short = results["workloads"].get("short")
    if short:
        met = (
            short["server_over_naive"] >= GOALS["short_server_over_naive"]
            and short["p99_no_worse_than_naive"]
            and short["server_over_in_process"] >= GOALS["short_server_over_in_process"]
        )
        lines.append(
            f"\nshort: in-process, a batch of {short['clients']} costs {1 / short['batching']['gain']:.2f} of "
            f"{short['clients']} single calls: the model's own gain from batching is {short['batching']['gain']:.2f}x "
            "here, what server/naive can reach besides the naive server's extra HTTP costs"
        )
        lines.append(
            f"short-query goals (server/naive >= 3 at p99 <= naive's, server/in-process >= 0.85): "
            f"{'met' if met else 'NOT met'}"
        )
    mixed = results["workloads"].get("mixed")
    if mixed:
        h = mixed["server_half_load"]
        lines.append(
            f"mixed: server at half load ({h['rate']:.0f} requests/s, {h['requests']} requests): "
            f"p50 {h['p50_ms']:.1f} ms, p99 {h['p99_ms']:.1f} ms"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=("short", "mixed", "both"), default="both")
    parser.add_argument("--model", default="minilm", help="encoder (default minilm)")
    parser.add_argument("--backend", default="auto", help="auto (serve's default), torch or onnx")
    parser.add_argument("--dtype", default=None, help="torch: float32, bfloat16; onnx: float32, int8 (default: auto)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--seconds", type=float, default=60, help="short load: measured seconds per run (default 60)")
    parser.add_argument("--warmup", type=float, default=5, help="short load: unmeasured seconds first (default 5)")
    parser.add_argument("--texts", type=int, default=512, help="mixed load: texts sent (default 512)")
    parser.add_argument("--threads", type=int, default=None, help="model threads (default: as serve)")
    parser.add_argument("--tokenizer-workers", type=int, default=None, help="server tokenizers (default: as serve)")
    parser.add_argument("--max-batch-tokens", type=int, default=None, help="engine (default: the engine's)")
    parser.add_argument("--batch-wait-ms", type=float, default=None, help="engine batching window (default: its own)")
    parser.add_argument("--pass-overhead-tokens", type=int, default=None, help="engine length split (default: its own)")
    parser.add_argument("--data", type=Path, default=DATA_DIR, help=f"toy files (default {DATA_DIR})")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    check_out(args.out, "serve")

    from llm_embedder import Embedder
    from llm_embedder.models.cpu import cpu_model
    from llm_embedder.serving.engine import Engine
    from llm_embedder.serving.server import set_threads

    load_at_start = loadavg()
    threads, tokenizer_workers = set_threads(args.threads, args.tokenizer_workers)  # before the model loads
    embedder = Embedder.from_pretrained(
        args.model, device=args.device, instructions=True, backend=args.backend, dtype=args.dtype
    )
    options = {"tokenizer_workers": tokenizer_workers}
    if args.max_batch_tokens:
        options["max_batch_tokens"] = args.max_batch_tokens
    if args.pass_overhead_tokens is not None:
        options["pass_overhead_tokens"] = args.pass_overhead_tokens
    if args.batch_wait_ms is not None:
        options["batch_wait_s"] = args.batch_wait_ms / 1000

    def engine_factory() -> Engine:
        return Engine(embedder, **options)

    probe = engine_factory()
    config = {
        "model": args.model,
        "backend": embedder.backend,
        "dtype": embedder.encoding_dtype,
        "device": str(embedder.device),
        "model_threads": threads,
        "tokenizer_workers": tokenizer_workers,
        "clients": args.clients,
        "max_batch_tokens": probe.max_batch_tokens,
        "batch_wait_ms": probe.batch_wait_s * 1000,
        "pass_overhead_tokens": probe.pass_overhead_tokens,
    }
    results = {
        "benchmark": "serve",
        "argv": sys.argv[1:] if argv is None else list(argv),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "config": config,
        "load_at_start": load_at_start,
        "workloads": {},
    }
    print(
        f"model {args.model}: {embedder.backend} {embedder.encoding_dtype} on {embedder.device}, {threads} model "
        f"threads, {tokenizer_workers} tokenizers, {args.clients} clients; load average {load_at_start}",
        flush=True,
    )
    if args.workload in ("short", "both"):
        queries = load_short_queries(args.data)
        print(f"short: {len(queries)} queries of {SHORT_WORDS[0]}-{SHORT_WORDS[1]} words, {args.seconds:g} s per run")
        results["workloads"]["short"] = run_short(args, embedder, engine_factory, queries)
    if args.workload in ("mixed", "both"):
        texts = load_texts(args.data)
        texts = (texts * (args.texts // max(len(texts), 1) + 1))[: args.texts]
        print(f"mixed: {len(texts)} texts of 20 to 8,400 characters")
        results["workloads"]["mixed"] = run_mixed(args, embedder, engine_factory, texts)
    results["load_at_end"] = loadavg()
    print(summary(results))
    if args.out:
        write_figures(args.out, results)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
