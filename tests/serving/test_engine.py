"""The engine: equal to in-process encoding whatever the batch mix; truncation; a bounded queue."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from serving_helpers import LONG, TEXTS, min_cosine, reference

from llm_embedder.serving.engine import Engine, InputTooLong, QueueFull, canonical_side


def test_twelve_pairs_in_one_mixed_batch_equal_in_process(tiny_embedder):
    pairs = [(task, side) for task in tiny_embedder.tasks for side in ("query", "key")]
    assert len(pairs) == 12
    engine = Engine(tiny_embedder, pass_overhead_tokens=10**6)  # one pass, whatever the lengths
    entered, release, seen = threading.Event(), threading.Event(), []
    forward = engine._forward

    def gated_forward(rows, longest):  # hold the first batch until every request is queued
        entered.set()
        release.wait(10)
        seen.append({(job.items[i].task, job.items[i].side) for job, i in rows})
        forward(rows, longest)

    engine._forward = gated_forward
    with engine:
        first = engine.submit(engine.prepare(["warm up"], "qa", "query"))
        assert entered.wait(10)
        futures = {pair: engine.submit(engine.prepare(TEXTS, *pair)) for pair in pairs}
        release.set()
        first.result(10)
        results = {pair: f.result(10).vectors for pair, f in futures.items()}
    assert any(len(batch) == 12 for batch in seen), "the queued requests did not share a batch"
    for (task, side), got in results.items():
        assert min_cosine(got, reference(tiny_embedder, TEXTS, task, side)) >= 1 - 1e-6, (task, side)


def test_concurrent_callers_get_their_own_rows(engine, tiny_embedder):
    jobs = [([f"{w} number {i}" for i in range(n)], task) for n, w, task in [(3, "cat", "chat"), (7, "dog", "tool")]]
    out = {}

    def call(k, texts, task):
        out[k] = engine.embed(texts, task, "key")

    threads = [threading.Thread(target=call, args=(k, *job)) for k, job in enumerate(jobs * 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, (texts, task) in enumerate(jobs * 4):
        assert min_cosine(out[k], reference(tiny_embedder, texts, task, "key")) >= 1 - 1e-6


def test_truncation_rules(engine, tiny_embedder):
    spec = tiny_embedder.tasks["qa"]
    with pytest.raises(InputTooLong, match="over the qa.query budget of 256"):
        engine.prepare(["short", LONG], "qa", "query", truncate="error")
    right = engine.prepare([LONG], "qa", "query", truncate="right")[0]
    assert right.truncated and right.tokens == spec.query_max_length
    np.testing.assert_allclose(
        engine.embed([LONG], "qa", "query", "right"), tiny_embedder.encode_queries([LONG], "qa"), atol=1e-5
    )
    # left keeps [CLS] + instruction + the text's last tokens + [SEP]
    tok = tiny_embedder.tokenizer
    instruction = tok(spec.query_instruction, add_special_tokens=False)["input_ids"]
    text = tok(LONG, add_special_tokens=False)["input_ids"]
    keep = spec.query_max_length - 2 - len(instruction)
    expected = [tok.cls_token_id, *instruction, *text[-keep:], tok.sep_token_id]
    left = engine.prepare([LONG], "qa", "query", truncate="left")[0]
    assert left.truncated and left.features["input_ids"] == expected
    short = engine.prepare(["paris"], "qa", "query", truncate="error")[0]
    assert not short.truncated


def test_queue_is_bounded(tiny_embedder):
    with Engine(tiny_embedder, max_queue_inputs=3) as small, pytest.raises(QueueFull):
        small.submit(small.prepare(["a", "b", "c", "d"], "qa", "key"))


def test_side_aliases():
    assert [canonical_side(s) for s in ("document", "passage", "search_query", "search_document")] == [
        "key",
        "key",
        "query",
        "key",
    ]
    with pytest.raises(ValueError, match="unknown input_type"):
        canonical_side("answer")


# ---------------------------------------------------------------------------- bounded tokenization (issue 23, §4)
class _Spy:
    """A tokenizer that records how many characters it was given."""

    def __init__(self, tokenizer, seen):
        self.tokenizer, self.seen = tokenizer, seen

    def __call__(self, text, *args, **kwargs):
        self.seen.extend(len(t) for t in ([text] if isinstance(text, str) else text))
        return self.tokenizer(text, *args, **kwargs)


def test_a_huge_input_is_tokenised_only_as_far_as_its_budget(tiny_embedder):
    from llm_embedder.serving.engine import CHARS_PER_TOKEN

    engine = Engine(tiny_embedder, tokenizer_workers=1)
    seen = []
    engine._tokenizers.put(_Spy(engine._tokenizers.get(), seen))
    huge = LONG * 2000  # 5.4M characters
    budget = tiny_embedder.tasks["qa"].query_max_length
    bound = CHARS_PER_TOKEN * (budget + 1) + len(tiny_embedder.tasks["qa"].query_instruction)
    with pytest.raises(InputTooLong):
        engine.prepare(["paris", huge], "qa", "query", truncate="error")
    assert max(seen) <= bound
    # and the cut is the one the whole text gets: the first (right) or last (left) tokens of LONG
    for side in ("right", "left"):
        seen.clear()
        got = engine.prepare([huge], "qa", "query", truncate=side)[0]
        assert got.features == engine.prepare([LONG], "qa", "query", truncate=side)[0].features and got.truncated
        assert max(seen) <= bound


def test_a_text_of_few_tokens_in_many_characters_is_looked_at_further(tiny_embedder):
    engine = Engine(tiny_embedder, tokenizer_workers=1)
    wide = "x" * 30_000 + " paris"  # one long word: few tokens in many characters, under the budget
    got = engine.prepare([wide], "qa", "query", truncate="error")[0]
    expected = tiny_embedder.tokenizer(tiny_embedder.tasks["qa"].query_instruction + wide)["input_ids"]
    assert got.features["input_ids"] == expected and not got.truncated


def test_the_worker_never_waits_for_tokenizers(tiny_embedder):
    with Engine(tiny_embedder, tokenizer_workers=1) as engine:
        items = engine.prepare(TEXTS, "qa", "key")
        with engine.tokenizer():  # every tokenizer busy (as with a huge input being tokenised)
            vectors = engine.submit(items).result(30).vectors
    assert min_cosine(vectors, reference(tiny_embedder, TEXTS, "qa", "key")) >= 1 - 1e-6


def test_a_small_request_is_not_stuck_behind_a_bulk_one(tiny_embedder):
    engine = Engine(tiny_embedder, max_batch_tokens=64)
    entered, release = threading.Event(), threading.Event()
    forward = engine._forward

    def gated_forward(rows, longest):
        entered.set()
        release.wait(10)
        forward(rows, longest)

    engine._forward = gated_forward
    finished = []
    with engine:
        warm = engine.submit(engine.prepare(["warm up"], "qa", "query"))
        assert entered.wait(10)
        bulk = engine.submit(engine.prepare([f"bulk text number {i}" for i in range(200)], "qa", "key"))
        small = engine.submit(engine.prepare(["paris"], "qa", "query"))
        bulk.add_done_callback(lambda _: finished.append("bulk"))
        small.add_done_callback(lambda _: finished.append("small"))
        release.set()
        warm.result(10), bulk.result(30), small.result(30)
    assert finished == ["small", "bulk"]


def test_retry_after_is_the_time_to_drain_the_queue(tiny_embedder):
    engine = Engine(tiny_embedder, max_queue_inputs=10)
    entered, release = threading.Event(), threading.Event()
    forward = engine._forward
    engine._forward = lambda rows, longest: (entered.set(), release.wait(10), forward(rows, longest))
    with engine:
        first = engine.submit(engine.prepare(["warm up"], "qa", "query"))
        assert entered.wait(10)
        engine.submit(engine.prepare(["a"] * 9, "qa", "key"))
        engine._rate = 2.0  # inputs per second, as measured from recent batches
        with pytest.raises(QueueFull) as full:
            engine.submit(engine.prepare(["b", "c"], "qa", "key"))
        release.set()
        first.result(10)
    assert full.value.retry_after_s == 5  # 9 queued at 2 per second


def test_thread_defaults_from_the_core_count():
    from llm_embedder.serving.engine import default_threads

    assert default_threads(1) == (1, 1)
    assert default_threads(2) == (1, 1)  # one model thread beside one tokenizer, not two fighting for two cores
    assert default_threads(16) == (12, 4)


def test_serve_threads_options(tiny_encoder_dir):
    import torch

    from llm_embedder.cli import build_parser
    from llm_embedder.serving.server import set_threads

    args = build_parser().parse_args(["serve", "--threads", "1", "--tokenizer-workers", "3"])
    assert (args.threads, args.tokenizer_workers) == (1, 3)
    before = torch.get_num_threads()
    try:
        assert set_threads(1, 3) == (1, 3) and torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="must be positive"):
            set_threads(-1, None)
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------- many one-query clients (issue 22, §2)
def _gated(engine):
    """Hold the engine's first forward pass until released; record the rows of every pass."""
    entered, release, seen = threading.Event(), threading.Event(), []
    forward = engine._forward

    def gated_forward(rows, longest):
        entered.set()
        release.wait(10)
        seen.append(len(rows))
        forward(rows, longest)

    engine._forward = gated_forward
    return entered, release, seen


def test_one_query_requests_queued_meanwhile_share_one_forward_pass(tiny_embedder):
    queries = [f"who was king number {i} of the north" for i in range(20)]
    engine = Engine(tiny_embedder, batch_wait_s=0)
    entered, release, seen = _gated(engine)
    with engine:
        first = engine.submit(engine.prepare(["warm up"], "qa", "query"))
        assert entered.wait(10)
        futures = [engine.submit(engine.prepare([q], "qa", "query")) for q in queries]
        release.set()
        first.result(10)
        got = np.concatenate([f.result(10).vectors for f in futures])
    assert seen == [1, 20]  # the warm-up alone, then all twenty in one pass (one length bucket)
    # computed another way: the embedder's own batching of the same texts
    assert min_cosine(got, reference(tiny_embedder, queries, "qa", "query")) >= 1 - 1e-6


def test_the_batch_is_held_open_for_the_clients_just_answered(tiny_embedder):
    engine = Engine(tiny_embedder, batch_wait_s=30)
    _, release, seen = _gated(engine)
    release.set()  # record the passes only
    with engine:
        engine._last_taken = 5  # the last batch took five inputs: five clients are expected back
        began = time.perf_counter()
        futures = [engine.submit(engine.prepare(["paris"], "qa", "query"))]
        time.sleep(0.2)  # the worker is waiting for four more by now
        futures += [engine.submit(engine.prepare([f"text {i}"], "qa", "query")) for i in range(4)]
        for f in futures:
            f.result(10)
        assert time.perf_counter() - began < 10  # it ran when the fifth arrived, not when the window closed
    assert seen == [5]


def test_the_window_closes_on_time_and_a_lone_client_is_never_held(tiny_embedder):
    engine = Engine(tiny_embedder, batch_wait_s=0.3)
    with engine:
        engine._last_taken = 5  # expected back, but no one comes: the batch runs when the window closes
        began = time.perf_counter()
        engine.submit(engine.prepare(["paris"], "qa", "query")).result(10)
        assert time.perf_counter() - began >= 0.3
    assert engine._last_taken == 1
    with Engine(tiny_embedder, batch_wait_s=60) as engine:  # one client in turn: never held
        for text in ["paris", "london", "rome"]:
            began = time.perf_counter()
            engine.submit(engine.prepare([text], "qa", "query")).result(10)
            assert time.perf_counter() - began < 10
    with pytest.raises(ValueError, match="batch_wait_s"):
        Engine(tiny_embedder, batch_wait_s=-1)


def test_a_small_request_is_tokenised_by_its_caller_as_prepare_would(tiny_embedder):
    from llm_embedder.serving.engine import INLINE_MAX_CHARS

    engine = Engine(tiny_embedder, tokenizer_workers=1)
    for texts, truncate in [(TEXTS, "right"), ([LONG[:1500]], "left"), (["paris"], "error")]:
        inline = engine.prepare_now(texts, "chat", "key", truncate)
        assert inline == engine.prepare(texts, "chat", "key", truncate)
    with pytest.raises(InputTooLong):
        engine.prepare_now([LONG[:2000]], "qa", "query", truncate="error")
    assert engine.prepare_now(["x" * (INLINE_MAX_CHARS + 1)], "qa", "query") is None  # too big: to a thread
    with engine._inline_lock:  # its tokenizer busy in another thread: to the pool, never wait
        assert engine.prepare_now(["paris"], "qa", "query") is None
    with pytest.raises(TypeError, match="single string"):
        engine.prepare_now("paris", "qa", "query")


def _brute_force_cost(lengths, max_tokens, overhead):
    """The least cost over every way to cut the sorted rows into consecutive passes (2^(n-1) of them)."""
    import itertools

    n, best = len(lengths), float("inf")
    for cuts in itertools.product((False, True), repeat=n - 1):
        starts = [0] + [j + 1 for j, cut in enumerate(cuts) if cut] + [n]
        passes = list(zip(starts, starts[1:], strict=False))
        if all((end - start) * lengths[start] <= max_tokens or end - start == 1 for start, end in passes):
            best = min(best, sum(overhead + (end - start) * lengths[start] for start, end in passes))
    return best


@pytest.mark.parametrize("seed", range(40))
def test_passes_are_split_by_length_at_least_cost(seed):
    from llm_embedder.serving.engine import plan_passes

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 11))
    lengths = sorted(rng.integers(1, 60, size=n).tolist(), reverse=True)
    max_tokens, overhead = int(rng.choice([40, 120, 8192])), int(rng.choice([0, 5, 32, 1000]))
    plan = plan_passes(lengths, max_tokens, overhead)
    assert [a for a, _ in plan] == [0, *[b for _, b in plan[:-1]]] and plan[-1][1] == n  # every row, in order
    assert all((b - a) * lengths[a] <= max_tokens or b - a == 1 for a, b in plan)
    cost = sum(overhead + (b - a) * lengths[a] for a, b in plan)
    assert cost == _brute_force_cost(lengths, max_tokens, overhead)


def test_pass_plans_in_words():
    from llm_embedder.serving.engine import plan_passes

    short = [40, 39, 38, 30, 29, 21, 20]
    assert plan_passes(short, 8192, 10**6) == [(0, 7)]  # passes dear (a GPU): one pass, padding and all
    assert plan_passes(short, 8192, 0) == [(i, i + 1) for i in range(7)]  # padding dear: one length a pass
    assert plan_passes(short, 8192, 32) == [(0, 3), (3, 7)]  # 32 + 3 x 40 + 32 + 4 x 30: 304 tokens' worth
    assert plan_passes(short, 8192, 8) == [(0, 3), (3, 5), (5, 7)]
    assert plan_passes([50] * 5, 100, 0) == [(0, 2), (2, 4), (4, 5)]  # the token bound: two rows of 50 a pass
    assert plan_passes([], 100, 32) == []
