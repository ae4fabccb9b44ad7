"""Greedy generation stops a batch once every row has its stop string, without changing any answer."""

from __future__ import annotations

PROMPTS = [
    "Q: What is the capital of France? A: Paris\n\nQ: What is the capital of Italy? A:",
    "Q: Who wrote Hamlet? A: Shakespeare\n\nQ: Who painted the Mona Lisa? A:",
    "Review: a dull film.\nIs this movie review positive or negative?\n negative\n"
    "Review: a delight from start to end.\nIs this movie review positive or negative?\n",
]


def _count_forwards(lm):
    calls = []
    handle = lm.model.register_forward_hook(lambda *args: calls.append(1))
    return calls, handle


def test_stop_early_gives_the_same_text_in_fewer_steps(smollm2):
    calls, handle = _count_forwards(smollm2)
    try:
        full = smollm2.generate(PROMPTS, max_new_tokens=24, stop="", batch_size=2)
        full_steps = len(calls)
        calls.clear()
        stopped = smollm2.generate(PROMPTS, max_new_tokens=24, stop="\n", batch_size=2)
        stopped_steps = len(calls)
    finally:
        handle.remove()
    # The full continuations run past a newline, so the early stop had something to save.
    assert all("\n" in text for text in full)
    assert stopped == [text.split("\n")[0] for text in full]
    assert stopped_steps < full_steps
