"""The serving engine: one worker thread owns the Embedder; callers queue tokenised inputs.

Inputs of any task and side share a batch (an instruction is only a prefix of the text), so the
worker takes what is waiting, sorts it by length and runs forward passes of at most
``max_batch_tokens`` padded tokens, split by length where the padding saved pays for another pass
(:func:`plan_passes`). A vector does not depend on its batch neighbours (right padding, masked
attention), so results equal ``Embedder.encode_queries`` / ``encode_keys``. When fewer inputs wait
than the last batch took, the worker holds the batch open up to ``batch_wait_s`` for the clients it
just answered (many one-query clients then share a forward pass); a lone client is never held.

Callers tokenise in their own thread with a tokenizer borrowed from a small pool (the worker
owns its own and only pads and runs the model), so a huge input never holds up the worker or
other callers; texts are cut to a character bound derived from the token budget before they are
tokenised. A request of a few short texts may be tokenised at once by its caller with a tokenizer
kept for that (:meth:`Engine.prepare_now`), sparing it the hand-off to a thread. The worker takes
inputs round-robin across waiting requests, so a small request is not stuck behind a bulk one. The
queue is bounded by a number of inputs, and a full queue is refused at once (:class:`QueueFull`)
with a retry delay estimated from the recent throughput.
"""

from __future__ import annotations

import copy
import math
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import SimpleNamespace
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
# How long the worker may hold a batch open for inputs it expects (Engine._gather): the model idles
# meanwhile, so it stays short beside a forward pass.
DEFAULT_BATCH_WAIT_S = 0.002
# A request of at most this many characters may be tokenised by its caller at once (Engine.prepare_now).
INLINE_MAX_CHARS = 2048
# Characters looked at per token of budget before tokenising: English runs ~4-6 characters a token,
# so this is generous; a text whose first CHARS_PER_TOKEN * budget characters hold fewer tokens
# (long unsplittable words) is looked at in doubling windows, never all at once unless it must.
CHARS_PER_TOKEN = 32


class InputTooLong(ValueError):
    """An input is over its task's token budget and the caller asked for no truncation."""

    def __init__(self, index: int, budget: int, task: str, side: str):
        self.index = index
        super().__init__(
            f"input {index} is over the {task}.{side} budget of {budget} tokens (instruction included); "
            "send truncate='right' or 'left' to cut it"
        )


class QueueFull(RuntimeError):
    """The engine holds as many inputs as it may; try again in ``retry_after_s`` seconds."""

    def __init__(self, message: str, retry_after_s: int = 1):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class EngineStopped(RuntimeError):
    """The engine is not running (not started yet, or shutting down)."""


class EngineMetrics(Protocol):
    def batch(self, rows: int, padded_tokens: int, seconds: float) -> None: ...

    def queued(self, seconds: float) -> None: ...


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads(cores: int | None = None) -> tuple[int, int]:
    """``(model threads, tokenizer workers)`` for a machine: every core busy, none oversubscribed.

    Tokenising runs beside the forward pass, so it gets its own share of the cores (a quarter, at least
    one); on a small CPU one model thread beats several that fight the tokenizers for two cores.
    """
    cores = cores or available_cores()
    tokenizers = max(1, cores // 4)
    return max(1, cores - tokenizers), tokenizers


def vectors_fingerprint(embedder: Any) -> str:
    """What a collection's vectors depend on: :func:`embedder_fingerprint`, with one equivalence.

    ONNX float32 gives torch float32's vectors (cosine 1 - 1e-12, see the README's encoding speed), so
    the two share a fingerprint and a data dir filled by one is served by the other; int8 and bf16 do not.
    """
    if getattr(embedder, "runtime", None) is not None and embedder.runtime_dtype == "float32":
        same = SimpleNamespace(
            model=embedder.model, tasks=embedder.tasks, pooling=embedder.pooling, normalize=embedder.normalize
        )
        return embedder_fingerprint(same)
    return embedder_fingerprint(embedder)


def encoder_info(embedder: Any, model_name: str = "") -> dict[str, str]:
    """How an embedder makes vectors, as collections record it (to say what differs on a conflict)."""
    info = {"backend": embedder.backend, "dtype": embedder.encoding_dtype}
    return {"model": model_name, **info} if model_name else info


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
    next: int = 0
    """The first of its inputs not yet taken by the worker."""

    def __post_init__(self) -> None:
        self.remaining = len(self.items)


class Engine:
    """Owns an :class:`Embedder` and serves encode requests from many threads.

    Use as a context manager (or ``start()``/``stop()``); :meth:`embed` is the blocking call a
    Python user makes, :meth:`prepare` + :meth:`submit` the two halves the HTTP layer uses.
    ``tokenizer_workers``: how many callers tokenise at once (each with its own tokenizer copy);
    ``model_name``: what was loaded (a zoo name, folder or hub id), recorded by the collections it fills;
    ``batch_wait_s``: how long the worker may hold a batch open for inputs it expects (0: never);
    ``pass_overhead_tokens``: what one more forward pass costs in padded tokens, which decides how a
    batch is split by length (default: :func:`default_pass_overhead` of the model's device).
    """

    def __init__(
        self,
        embedder: Embedder,
        *,
        max_batch_tokens: int = MERGE_MAX_TOKENS,
        max_queue_inputs: int = DEFAULT_MAX_QUEUE_INPUTS,
        metrics: EngineMetrics | None = None,
        tokenizer_workers: int | None = None,
        model_name: str = "",
        batch_wait_s: float = DEFAULT_BATCH_WAIT_S,
        pass_overhead_tokens: int | None = None,
    ):
        if max_batch_tokens < 1 or max_queue_inputs < 1:
            raise ValueError("max_batch_tokens and max_queue_inputs must be positive")
        if not batch_wait_s >= 0:
            raise ValueError("batch_wait_s must be zero or more")
        tokenizer_workers = tokenizer_workers or default_threads()[1]
        if tokenizer_workers < 1:
            raise ValueError("tokenizer_workers must be positive")
        self.embedder = embedder
        self.max_batch_tokens = max_batch_tokens
        self.max_queue_inputs = max_queue_inputs
        self.metrics = metrics
        self.tokenizer_workers = tokenizer_workers
        self.vocab_size = len(embedder.tokenizer)
        self.model_name = model_name
        self.batch_wait_s = batch_wait_s
        self.pass_overhead_tokens = (
            default_pass_overhead(embedder.device) if pass_overhead_tokens is None else pass_overhead_tokens
        )
        # Computed once: the served weights never change while the engine runs.
        self.fingerprint = vectors_fingerprint(embedder)
        # Waiting requests, each with its own cursor: the worker takes from them in turn.
        self._jobs: deque[_Job] = deque()
        self._queued = 0
        self._cond = threading.Condition()
        # A fast tokenizer raises "Already borrowed" when two threads use it with other settings, so each
        # caller borrows a copy; the worker pads with the embedder's own and never waits for a caller.
        self._tokenizers: queue.Queue = queue.Queue()
        for _ in range(tokenizer_workers):
            self._tokenizers.put(copy.deepcopy(embedder.tokenizer))
        self._inline_tokenizer = copy.deepcopy(embedder.tokenizer)
        self._inline_lock = threading.Lock()
        self._rate = 0.0  # inputs per second of recent forward passes (for Retry-After)
        self._last_taken = 0  # inputs the worker took last time: as many are likely to come back soon
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
    def encoder_info(self) -> dict[str, str]:
        return encoder_info(self.embedder, self.model_name)

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
        return self._queued

    def retry_after_s(self) -> int:
        """Seconds until the queue has drained at the recent throughput (1 to 300)."""
        rate = self._rate
        if rate <= 0:
            return 1
        return int(min(300, max(1, math.ceil(self._queued / rate))))

    # ------------------------------------------------------------------ requests
    def tokenizer(self) -> _Borrowed:
        """A tokenizer for this thread alone while the ``with`` block runs (waits when all are lent)."""
        return _Borrowed(self._tokenizers)

    def decode(self, ids: list[int]) -> str:
        with self.tokenizer() as tokenizer:
            return tokenizer.decode(ids, skip_special_tokens=True)

    def prepare(self, texts: Sequence[str], task: str, side: str, truncate: str = "right") -> list[Prepared]:
        """Tokenise ``texts`` with the task's instruction and budget for one side.

        ``truncate``: ``right`` cuts the end (as ``encode_queries``/``encode_keys`` do), ``left``
        cuts the start of the text (never the instruction), ``error`` raises :class:`InputTooLong`.
        """
        with self.tokenizer() as tokenizer:
            return self._prepare(tokenizer, texts, task, side, truncate)

    def prepare_now(self, texts: Sequence[str], task: str, side: str, truncate: str = "right") -> list[Prepared] | None:
        """:meth:`prepare` in the calling thread with a tokenizer kept for it, for a request so small that
        handing it to another thread would cost more than tokenising it (the HTTP layer's event loop
        calls this: a few short texts take it well under a millisecond). ``None`` when the request is
        larger than ``INLINE_MAX_CHARS`` or that tokenizer is busy in another thread: use :meth:`prepare`.
        """
        if not isinstance(texts, str) and sum(map(len, texts)) > INLINE_MAX_CHARS:
            return None
        if not self._inline_lock.acquire(blocking=False):
            return None
        try:
            return self._prepare(self._inline_tokenizer, texts, task, side, truncate)
        finally:
            self._inline_lock.release()

    def _prepare(self, tokenizer: Any, texts: Sequence[str], task: str, side: str, truncate: str) -> list[Prepared]:
        if isinstance(texts, str):
            raise TypeError("expected a list of texts, not a single string (wrap it: [text])")
        side = canonical_side(side)
        if truncate not in TRUNCATIONS:
            raise ValueError(f"unknown truncate {truncate!r}; expected one of {', '.join(TRUNCATIONS)}")
        spec = self.embedder.tasks.get_task(task)
        instruction = spec.query_instruction if side == "query" else spec.key_instruction
        budget = spec.query_max_length if side == "query" else spec.key_max_length
        window = CHARS_PER_TOKEN * (budget + 1)
        rows: list[dict[str, list[int]]] = [{} for _ in texts]
        over: set[int] = set()
        # Texts within the character window (nearly all) in one call; the others one by one.
        short = [i for i, text in enumerate(texts) if len(text) <= window]
        if short:
            # One token over the budget is enough to tell a long input (and never warns).
            encoded = tokenizer(
                [instruction + texts[i] for i in short], truncation=True, max_length=budget + 1, padding=False
            )
            for j, i in enumerate(short):
                rows[i] = {k: v[j] for k, v in encoded.items()}
                if len(rows[i]["input_ids"]) > budget:
                    over.add(i)
        parts = {}  # the part of each long text that decides its tokens
        for i in (i for i, text in enumerate(texts) if len(text) > window):
            parts[i], is_over = self._look(tokenizer, instruction, texts[i], budget, window, truncate)
            if is_over:
                over.add(i)
        if over and truncate == "error":
            raise InputTooLong(min(over), budget, task, side)
        for i in sorted(over | parts.keys()):
            text = parts.get(i, texts[i])
            if i in over and truncate == "left":
                rows[i] = self._cut_left(tokenizer, instruction, text, budget)
            else:
                rows[i] = dict(tokenizer(instruction + text, truncation=True, max_length=budget, padding=False))
        return [Prepared(r, task, side, i in over) for i, r in enumerate(rows)]

    @staticmethod
    def _look(tokenizer: Any, instruction: str, text: str, budget: int, window: int, truncate: str) -> tuple[str, bool]:
        """The part of a long ``text`` that decides its tokens, and whether it is over ``budget``.

        Doubling windows from the end that truncation keeps: a 5M-character text is refused or cut after
        tokenising a few thousand characters, not all of them.
        """
        while True:
            part = text if len(text) <= window else _window(text, window, from_end=truncate == "left")
            row = tokenizer(instruction + part, truncation=True, max_length=budget + 1, padding=False)
            if len(row["input_ids"]) > budget or part is text:
                return part, len(row["input_ids"]) > budget
            window *= 2  # few tokens in many characters (long words): look further

    @staticmethod
    def _cut_left(tokenizer: Any, instruction: str, text: str, budget: int) -> dict[str, list[int]]:
        """Drop tokens from the start of ``text`` until instruction + text fits ``budget``."""
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
            if self._queued + len(items) > self.max_queue_inputs:
                raise QueueFull(
                    f"queue full ({self._queued} inputs waiting, at most {self.max_queue_inputs})",
                    self.retry_after_s(),
                )
            self._jobs.append(job)
            self._queued += len(items)
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
                while not self._jobs and not self._stopping:
                    self._cond.wait()
                if not self._jobs:
                    return
                self._gather()
                taken = self._take()
                self._last_taken = len(taken)
            self._run(taken)

    def _gather(self) -> None:
        """Hold the batch open up to ``batch_wait_s`` while fewer inputs wait than the last batch took.

        Clients answered by the last batch tend to send again at once (a closed loop, a busy service), and
        on many devices a batch of a few rows costs nearly what a full one does. A lone client is never
        held: it was the last batch on its own, and it is already here. Called with the lock held.
        """
        if self.batch_wait_s <= 0:
            return
        deadline = time.perf_counter() + self.batch_wait_s
        while self._queued < self._last_taken and not self._stopping:
            left = deadline - time.perf_counter()
            if left <= 0:
                return
            self._cond.wait(left)

    def _take(self) -> list[tuple[_Job, int]]:
        """Up to one batch's worth of tokens (at least one input), one input from each waiting request in turn.

        Round-robin rather than first-come: a one-text query queued behind a 2,048-text bulk request
        rides in the next batch instead of waiting for the whole bulk request.
        """
        taken: list[tuple[_Job, int]] = []
        tokens = 0
        while self._jobs:
            job = self._jobs[0]
            length = job.items[job.next].tokens
            if taken and tokens + length > self.max_batch_tokens:
                break
            taken.append((job, job.next))
            tokens += length
            job.next += 1
            self._queued -= 1
            self._jobs.popleft()
            if job.next < len(job.items):
                self._jobs.append(job)
        return taken

    def _run(self, taken: list[tuple[_Job, int]]) -> None:
        now = time.perf_counter()
        if self.metrics is not None:
            for job in {id(j): j for j, i in taken if i == 0}.values():
                self.metrics.queued(now - job.enqueued)
        taken.sort(key=lambda row: -row[0].items[row[1]].tokens)  # longest first: less padding
        lengths = [job.items[i].tokens for job, i in taken]
        for start, end in plan_passes(lengths, self.max_batch_tokens, self.pass_overhead_tokens):
            self._forward(taken[start:end], lengths[start])
        seconds = time.perf_counter() - now
        if seconds > 0:
            rate = len(taken) / seconds
            self._rate = rate if self._rate == 0 else 0.8 * self._rate + 0.2 * rate

    def _forward(self, rows: list[tuple[_Job, int]], longest: int) -> None:
        began = time.perf_counter()
        embedder = self.embedder
        try:
            keys = rows[0][0].items[rows[0][1]].features.keys()
            features = {k: [job.items[i].features[k] for job, i in rows] for k in keys}
            batch = embedder.collate(features, range(len(rows)))
            with torch.inference_mode():
                if embedder.runtime is None:
                    out = embedder(**batch)
                else:  # the backend the server reports (onnx), as Embedder.encode runs it
                    out = embedder._pool(embedder.runtime(**batch), batch["attention_mask"])
                vectors = out.float().cpu().numpy()
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


def default_pass_overhead(device: Any) -> int:
    """What one more forward pass costs, in padded tokens (see :func:`plan_passes`).

    On a CPU a pass costs nearly in proportion to its padded tokens, with a fixed part worth a few dozen
    (onnxruntime less, torch more); on a GPU the fixed part (kernel launches) is worth thousands.
    """
    return 32 if torch.device(device).type == "cpu" else 4096


def plan_passes(lengths: Sequence[int], max_tokens: int, overhead: int) -> list[tuple[int, int]]:
    """Split rows sorted longest first into forward passes ``[(start, end), ...]`` of least total cost.

    A pass costs ``overhead`` plus its padded tokens (rows x its longest row) and holds at most
    ``max_tokens`` padded tokens (one row at least). Rows of one length never gain from being apart,
    so the search runs over the distinct lengths: a few dozen for short queries, at most a few hundred.
    """
    n = len(lengths)
    if n == 0:
        return []
    bounds = [0] + [j for j in range(1, n) if lengths[j] != lengths[j - 1]] + [n]  # groups of one length
    m = len(bounds) - 1
    best = [0.0] + [math.inf] * m  # best[k]: least cost of the rows before group k
    choice = [0] * (m + 1)
    for k in range(1, m + 1):
        for i in range(k - 1, -1, -1):
            longest = max(lengths[bounds[i]], 1)
            rows = bounds[k] - bounds[i]
            passes = -(-rows // max(1, max_tokens // longest))
            cost = best[i] + passes * overhead + rows * longest
            if cost < best[k]:
                best[k], choice[k] = cost, i
    plan: list[tuple[int, int]] = []
    k = m
    while k > 0:
        i = choice[k]
        start, end = bounds[i], bounds[k]
        cap = max(1, max_tokens // max(lengths[start], 1))
        plan[:0] = [(a, min(a + cap, end)) for a in range(start, end, cap)]
        k = i
    return plan


class _Borrowed:
    def __init__(self, pool: queue.Queue):
        self.pool = pool

    def __enter__(self) -> Any:
        self.tokenizer = self.pool.get()
        return self.tokenizer

    def __exit__(self, *exc: Any) -> None:
        self.pool.put(self.tokenizer)


def _window(text: str, chars: int, from_end: bool) -> str:
    """The first (or last) ``chars`` characters of ``text``, cut at a space when one is near.

    A cut at a space leaves every whole word's tokens as the full text gives them; only the cut word
    could tokenise otherwise, and it lies beyond the budget.
    """
    if from_end:
        part = text[-chars:]
        space = part.find(" ", 0, max(1, chars // 8))
        return part[space + 1 :] if space >= 0 else part
    part = text[:chars]
    space = part.rfind(" ", chars - max(1, chars // 8))
    return part[:space] if space > 0 else part
