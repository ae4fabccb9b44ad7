"""The HTTP load of ``benchmarks/serve.py``, run as its own process so that it never shares a GIL with the server.

Standard library only, and a bare HTTP/1.1 keep-alive client (one connection per simulated client): it
costs the machine much less per request than a full client library, so the figures are the server's.
It reads one JSON job on stdin and writes one JSON result on stdout.

Job fields: ``url``, ``bodies`` (request bodies, JSON strings), ``clients``, ``mode`` and per mode:

- ``timed``: each client sends its next body as soon as it has an answer (closed loop) for
  ``warmup + seconds``; counted: the requests started and answered within the last ``seconds``;
- ``drain``: the clients share the bodies and send each once (closed loop); counted: all of them;
- ``open``: one request every ``1 / rate`` seconds whatever the answers' pace, one body each.

Result: ``{"requests": n, "seconds": s, "latencies": [...], "sent": m, "cpu_seconds": c}`` (latencies in
seconds, one per counted request; ``sent`` and ``cpu_seconds``: all requests and this process's CPU time,
warm-up included).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

PATH = "/v1/embeddings"


class Connection:
    """One keep-alive connection that posts JSON and reads the answer (Content-Length framing)."""

    sent = 0  # answers received by every connection (warm-up included)

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> bytes:
        head = (
            f"POST {PATH} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("ascii")
        for attempt in (1, 2):
            if self.writer is None or self.reader.at_eof():
                await self.close()
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.writer.write(head + body)
            try:
                status_line = await self.reader.readuntil(b"\r\n")
                break
            except (asyncio.IncompleteReadError, ConnectionResetError):
                # The server closed a connection left idle past its keep-alive: send again on a new one.
                await self.close()
                if attempt == 2:
                    raise
        headers = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
        length = close = None
        for line in headers.split("\r\n"):
            name, _, value = line.partition(":")
            if name == "content-length":
                length = int(value)
            elif name == "connection":
                close = value.strip() == "close"
        if length is None:
            raise RuntimeError(f"answer without Content-Length: {status_line!r}")
        payload = await self.reader.readexactly(length)
        status = int(status_line.split()[1])
        Connection.sent += 1
        if close:
            await self.close()
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {payload[:300]!r}")
        return payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


async def run(job: dict) -> dict:
    parts = urlsplit(job["url"])
    host, port = parts.hostname, parts.port
    bodies = [b.encode("utf-8") for b in job["bodies"]]
    clients = int(job["clients"])
    connections = [Connection(host, port) for _ in range(clients)]
    for connection in connections:  # connect and warm every connection once
        await connection.post(bodies[0])
    mode = job["mode"]
    latencies: list[float] = []

    if mode == "timed":
        began = time.perf_counter()
        start = began + float(job.get("warmup", 0))
        end = start + float(job["seconds"])

        async def client(k: int, connection: Connection) -> None:
            n = k * len(bodies) // clients  # clients start at different places of the text list
            while time.perf_counter() < end:
                sent = time.perf_counter()
                await connection.post(bodies[n % len(bodies)])
                done = time.perf_counter()
                n += 1
                if sent >= start and done <= end:
                    latencies.append(done - sent)

        await asyncio.gather(*(client(k, c) for k, c in enumerate(connections)))
        seconds = end - start
    elif mode == "drain":
        pending = list(reversed(bodies))

        async def client(k: int, connection: Connection) -> None:
            while pending:
                body = pending.pop()
                sent = time.perf_counter()
                await connection.post(body)
                latencies.append(time.perf_counter() - sent)

        began = time.perf_counter()
        await asyncio.gather(*(client(k, c) for k, c in enumerate(connections)))
        seconds = time.perf_counter() - began
    elif mode == "open":
        rate = float(job["rate"])
        idle: list[Connection] = list(connections)

        async def one(body: bytes) -> None:
            connection = idle.pop() if idle else Connection(host, port)
            sent = time.perf_counter()
            await connection.post(body)
            latencies.append(time.perf_counter() - sent)
            idle.append(connection)

        began = time.perf_counter()
        tasks = []
        for n, body in enumerate(bodies):
            await asyncio.sleep(max(0.0, began + n / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(body)))
        await asyncio.gather(*tasks)
        seconds = time.perf_counter() - began
        connections = idle
    else:
        raise ValueError(f"unknown mode {mode!r}")
    for connection in connections:
        await connection.close()
    return {
        "requests": len(latencies),
        "seconds": seconds,
        "latencies": latencies,
        "sent": Connection.sent,
        "cpu_seconds": time.process_time(),
    }


def main() -> None:
    job = json.loads(sys.stdin.read())
    json.dump(asyncio.run(run(job)), sys.stdout)


if __name__ == "__main__":
    main()
