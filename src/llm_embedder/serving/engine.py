"""The serving engine: one worker thread owns the Embedder; callers queue tokenised inputs.

Inputs of any task and side share a batch (an instruction is only a prefix of the text), so the
worker takes what is waiting, sorts it by length and runs forward passes of at most
``max_batch_tokens`` padded tokens. A vector does not depend on its batch neighbours (right
padding, masked attention), so results equal ``Embedder.encode_queries`` / ``encode_keys``.

Callers tokenise in their own thread (the worker only pads and runs the model); the queue is
bounded by a number of inputs, and a full queue is refused at once (:class:`QueueFull`) rather
than letting latency grow without bound.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from llm_embedder.fingerprint import embedder_fingerprint
from llm_embedder.models.embedder import MERGE_MAX_TOKENS, Embedder

SIDES = ("query", "key")
# What other embedding APIs call the two sides.
SIDE_ALIASES = {
    "query": "query",
    "search_query": "query",
    "key": "key",
    "document": "key",
    "passage": "key",
    "search_document": "key",
}
TRUNCATIONS = ("error", "left", "right")
DEFAULT_MAX_QUEUE_INPUTS = 8192


class InputTooLong(ValueError):
    """An input is over its task's token budget and the caller asked for no truncation."""

    def __init__(self, index: int, budget: int, task: str, side: str):
        self.index = index
        super().__init__(
            f"input {index} is over the {task}.{side} budget of {budget} tokens (instruction included); "
            "send truncate='right' or 'left' to cut it"
        )


class QueueFull(RuntimeError):
    """The engine holds as many inputs as it may; try again shortly."""


class EngineStopped(RuntimeError):
    """The engine is not running (not started yet, or shutting down)."""


class EngineMetrics(Protocol):
    def batch(self, rows: int, padded_tokens: int, seconds: float) -> None: ...

    def queued(self, seconds: float) -> None: ...


def canonical_side(side: str) -> str:
    """``query`` or ``key`` for a side or one of its aliases (``document``, ``search_query`` ...)."""
    try:
        return SIDE_ALIASES[side]
    except KeyError:
        raise ValueError(f"unknown input_type {side!r}; expected one of {', '.join(SIDE_ALIASES)}") from None


@dataclass
class Prepared:
    """One tokenised input, ready for the worker."""

    features: dict[str, list[int]]
    task: str
    side: str
    truncated: bool

    @property
    def tokens(self) -> int:
        return len(self.features["input_ids"])


@dataclass
class EncodeResult:
    vectors: np.ndarray
    tokens: int
    truncated: int


@dataclass
class _Job:
    items: list[Prepared]
    future: Future
    out: np.ndarray
    enqueued: float
    remaining: int = field(init=False)

    def __post_init__(self) -> None:
        self.remaining = len(self.items)


class Engine:
    """Owns an :class:`Embedder` and serves encode requests from many threads.

    Use as a context manager (or ``start()``/``stop()``); :meth:`embed` is the blocking call a
    Python user makes, :meth:`prepare` + :meth:`submit` the two halves the HTTP layer uses.
    """

    def __init__(
        self,
        embedder: Embedder,
        *,
        max_batch_tokens: int = MERGE_MAX_TOKENS,
        max_queue_inputs: int = DEFAULT_MAX_QUEUE_INPUTS,
        metrics: EngineMetrics | None = None,
    ):
        if max_batch_tokens < 1 or max_queue_inputs < 1:
            raise ValueError("max_batch_tokens and max_queue_inputs must be positive")
        self.embedder = embedder
        self.max_batch_tokens = max_batch_tokens
        self.max_queue_inputs = max_queue_inputs
        self.metrics = metrics
        # Computed once: the served weights never change while the engine runs.
        self.fingerprint = embedder_fingerprint(embedder)
        self._pending: deque[tuple[_Job, int]] = deque()
        self._cond = threading.Condition()
        # Fast tokenizers raise "Already borrowed" when two threads use one with other settings.
        self._tokenizer_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False

    # ------------------------------------------------------------------ life cycle
    @property
    def dim(self) -> int:
        return self.embedder.dim

    @property
    def tasks(self):
        return self.embedder.tasks

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def start(self) -> Engine:
        if self._thread is None:
            self._stopping = False
            self.embedder.model.eval()  # the engine owns the model from now on
            self._thread = threading.Thread(target=self._work, name="llm-embedder-engine", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Finish what is queued, then stop the worker."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        self._thread = None

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def queued_inputs(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------------ requests
    def prepare(self, texts: Sequence[str], task: str, side: str, truncate: str = "right") -> list[Prepared]:
        """Tokenise ``texts`` with the task's instruction and budget for one side.

        ``truncate``: ``right`` cuts the end (as ``encode_queries``/``encode_keys`` do), ``left``
        cuts the start of the text (never the instruction), ``error`` raises :class:`InputTooLong`.
        """
        if isinstance(texts, str):
            raise TypeError("expected a list of texts, not a single string (wrap it: [text])")
        side = canonical_side(side)
        if truncate not in TRUNCATIONS:
            raise ValueError(f"unknown truncate {truncate!r}; expected one of {', '.join(TRUNCATIONS)}")
        spec = self.embedder.tasks.get_task(task)
        instruction = spec.query_instruction if side == "query" else spec.key_instruction
        budget = spec.query_max_length if side == "query" else spec.key_max_length
        full = [instruction + t for t in texts]
        tokenizer = self.embedder.tokenizer
        with self._tokenizer_lock:
            # One token over the budget is enough to tell a long input (and never warns or tokenises it all).
            encoded = tokenizer(full, truncation=True, max_length=budget + 1, padding=False)
            rows = [{k: v[i] for k, v in encoded.items()} for i in range(len(full))]
            long = [i for i, r in enumerate(rows) if len(r["input_ids"]) > budget]
            if long and truncate == "error":
                i = long[0]
                raise InputTooLong(i, budget, task, side)
            if long and truncate == "right":
                cut = tokenizer([full[i] for i in long], truncation=True, max_length=budget, padding=False)
                for j, i in enumerate(long):
                    rows[i] = {k: v[j] for k, v in cut.items()}
            for i in long if truncate == "left" else ():
                rows[i] = self._cut_left(instruction, texts[i], budget)
        marked = set(long)
        return [Prepared(r, task, side, i in marked) for i, r in enumerate(rows)]

    def _cut_left(self, instruction: str, text: str, budget: int) -> dict[str, list[int]]:
        """Drop tokens from the start of ``text`` until instruction + text fits ``budget``."""
        tokenizer = self.embedder.tokenizer
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        overhead = len(tokenizer(instruction)["input_ids"])  # the instruction and the special tokens
        drop = max(0, len(offsets) - (budget - overhead))
        while True:
            rest = text[offsets[drop][0] :] if drop < len(offsets) else ""
            row = dict(tokenizer(instruction + rest, truncation=False, padding=False))
            if len(row["input_ids"]) <= budget:
                return row
            if not rest:  # the instruction alone is over the budget: cut it as encode would
                return dict(tokenizer(instruction, truncation=True, max_length=budget, padding=False))
            drop += 1  # token boundaries can shift after a cut

    def submit(self, items: list[Prepared]) -> Future:
        """Queue prepared inputs; the future gives an :class:`EncodeResult` in their order."""
        future: Future = Future()
        job = _Job(items, future, np.empty((len(items), self.dim), dtype=np.float32), time.perf_counter())
        if not items:
            future.set_result(EncodeResult(job.out, 0, 0))
            return future
        with self._cond:
            if not self.running:
                raise EngineStopped("the engine is not running")
            if len(self._pending) + len(items) > self.max_queue_inputs:
                raise QueueFull(f"queue full ({len(self._pending)} inputs waiting, at most {self.max_queue_inputs})")
            self._pending.extend((job, i) for i in range(len(items)))
            self._cond.notify()
        return future

    def embed(self, texts: Sequence[str], task: str, side: str, truncate: str = "right") -> np.ndarray:
        """Blocking: embeddings of ``texts`` as queries or keys of ``task``, float32 ``[n, dim]``."""
        return self.submit(self.prepare(texts, task, side, truncate)).result().vectors

    def embed_mixed(self, requests: Sequence[tuple[str, str, str]], truncate: str = "right") -> np.ndarray:
        """Blocking: one vector per ``(text, task, side)``, all queued as one job (so they share batches)."""
        items = [self.prepare([text], task, side, truncate)[0] for text, task, side in requests]
        return self.submit(items).result().vectors

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if not self._pending:
                    return
                taken = self._take()
            self._run(taken)

    def _take(self) -> list[tuple[_Job, int]]:
        """The oldest waiting inputs, up to one batch's worth of tokens (at least one input)."""
        taken, tokens = [], 0
        while self._pending:
            job, i = self._pending[0]
            length = job.items[i].tokens
            if taken and tokens + length > self.max_batch_tokens:
                break
            taken.append(self._pending.popleft())
            tokens += length
        return taken

    def _run(self, taken: list[tuple[_Job, int]]) -> None:
        now = time.perf_counter()
        if self.metrics is not None:
            for job in {id(j): j for j, _ in taken}.values():
                self.metrics.queued(now - job.enqueued)
        taken.sort(key=lambda row: -row[0].items[row[1]].tokens)  # longest first: less padding
        lengths = [job.items[i].tokens for job, i in taken]
        start = 0
        while start < len(taken):
            longest = lengths[start]
            end = min(len(taken), start + max(1, self.max_batch_tokens // max(longest, 1)))
            # Padding is paid for in full on a CPU: a row under half the longest starts the next batch.
            cut = next((j for j in range(start + 1, end) if 2 * lengths[j] < longest), end)
            self._forward(taken[start:cut], longest)
            start = cut

    def _forward(self, rows: list[tuple[_Job, int]], longest: int) -> None:
        began = time.perf_counter()
        try:
            keys = rows[0][0].items[rows[0][1]].features.keys()
            features = {k: [job.items[i].features[k] for job, i in rows] for k in keys}
            with self._tokenizer_lock:
                batch = self.embedder.collate(features, range(len(rows)))
            with torch.inference_mode():
                vectors = self.embedder(**batch).float().cpu().numpy()
        except Exception as exc:  # a failed batch fails its requests, never the worker
            for job, _ in rows:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        if self.metrics is not None:
            self.metrics.batch(len(rows), len(rows) * longest, time.perf_counter() - began)
        for (job, i), vector in zip(rows, vectors, strict=True):
            job.out[i] = vector
            job.remaining -= 1
            if job.remaining == 0 and not job.future.done():
                items = job.items
                job.future.set_result(
                    EncodeResult(job.out, sum(p.tokens for p in items), sum(p.truncated for p in items))
                )
