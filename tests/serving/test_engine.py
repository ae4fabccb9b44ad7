"""The engine: equal to in-process encoding whatever the batch mix; truncation; a bounded queue."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from serving_helpers import LONG, TEXTS, min_cosine, reference

from llm_embedder.serving.engine import Engine, InputTooLong, QueueFull, canonical_side


def test_twelve_pairs_in_one_mixed_batch_equal_in_process(tiny_embedder):
    pairs = [(task, side) for task in tiny_embedder.tasks for side in ("query", "key")]
    assert len(pairs) == 12
    engine = Engine(tiny_embedder)
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
