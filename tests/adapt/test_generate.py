"""Query writing: the prompts, the cleaning, the consistency filter and the dev split by source."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from processes import subprocess_env, torchrun

from llm_embedder.userdata.generate import (
    MAX_PER_KEY,
    QUESTION_SHOTS,
    REQUEST_SHOTS,
    GenerationSettings,
    clean_query,
    consistent,
    question_prompt,
    request_prompt,
    split_by_source,
    write_queries,
)

KEYS = [
    "The capital of France is Paris, on the river Seine.",
    "Photosynthesis turns light, water and carbon dioxide into sugar in plant leaves.",
    "The Pacific is the largest and deepest ocean on Earth.",
]


class ScriptedLM:
    """Stands in for the LLM's greedy generation: each prompt's answer comes from ``reply(prompt)``."""

    def __init__(self, reply):
        self.reply = reply
        self.calls = 0

    def generate(self, prompts, max_new_tokens=32, stop="\n", batch_size=8):
        self.calls += 1
        return [self.reply(p) for p in prompts]


def _last_key(prompt: str) -> str:
    return prompt.rsplit("Passage: ", 1)[-1].split("\n")[0]


def test_prompts_end_with_the_key_and_vary_their_demonstrations():
    first, second = question_prompt(KEYS[0], 0), question_prompt(KEYS[0], 1)
    assert first.endswith(f"Passage: {KEYS[0]}\nQuestion:") and first != second
    assert first.count("Question:") == 3  # two demonstrations, then the open slot
    assert request_prompt("get_time, Current time", 2).endswith("Tool: get_time, Current time\nUser request:")


def test_every_variant_has_its_own_ordered_pair_of_demonstrations():
    # 4 shots give 12 ordered pairs; the first 4 are the neighbours (0, 1), (1, 2), (2, 3), (3, 0)
    assert len(QUESTION_SHOTS) == len(REQUEST_SHOTS) == 4 and MAX_PER_KEY == 12
    by_hand = [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2), (1, 3), (2, 0), (3, 1), (0, 3), (1, 0), (2, 1), (3, 2)]
    prompts = [request_prompt("get_time, Current time", v) for v in range(MAX_PER_KEY)]
    for prompt, (a, b) in zip(prompts, by_hand, strict=True):
        assert prompt.startswith(f"Tool: {REQUEST_SHOTS[a][0]}") and f"User request: {REQUEST_SHOTS[b][1]}" in prompt
    assert len(set(prompts)) == MAX_PER_KEY
    with pytest.raises(ValueError, match="per_tool must be 1-12"):
        GenerationSettings(per_tool=MAX_PER_KEY + 1)


def test_per_tool_sets_the_requests_per_tool_and_leaves_questions_alone():
    settings = GenerationSettings(per_key=1, per_tool=5, filter_top_k=0)
    tools = ["get_time, Current time"]
    requests = write_queries(ScriptedLM(lambda p: f" Request number {p.count('a')} please"), tools, settings, "request")
    assert requests.counts["written"] == 5
    questions = write_queries(ScriptedLM(lambda p: " What is it here?"), KEYS, settings, "question")
    assert questions.counts["written"] == len(KEYS)


@pytest.mark.parametrize(
    ("text", "question", "expected"),
    [
        ("  What is the capital of France? It is Paris.", True, "What is the capital of France?"),
        ('"Where is it?"', True, "Where is it?"),
        ("Paris is the capital", True, None),  # no question mark
        ("Why?", True, None),  # too short
        (QUESTION_SHOTS[0][1], True, None),  # a copy of a demonstration
        ("Book me a table for two tonight", False, "Book me a table for two tonight"),
        ('get_x, required_params: [{"name": "a"}]', False, None),  # a copy of the tool's rendering
    ],
)
def test_clean_query(text, question, expected):
    assert clean_query(text, question) == expected


def test_consistency_filter_by_hand():
    queries = [
        "Which river runs through Paris?",
        "What does photosynthesis make in leaves?",
        "What is the capital of France?",
    ]
    # the third query was written for the ocean passage: BM25's top 1 is the France passage, so it fails
    assert consistent(queries, [0, 1, 2], KEYS, top_k=1) == [True, True, False]
    # no word in common with the ocean passage: BM25 never returns it, however deep the filter looks
    assert consistent(queries, [0, 1, 2], KEYS, top_k=3) == [True, True, False]
    assert consistent(["Which ocean is the capital of France?"], [2], KEYS, top_k=1) == [False]
    assert consistent(["Which ocean is the capital of France?"], [2], KEYS, top_k=2) == [True]
    assert consistent(queries, [0, 1, 2], KEYS, top_k=0) == [True, True, True]


def test_write_queries_counts_every_drop_and_keeps_sources():
    replies = {
        KEYS[0]: " What is the capital of France?",
        KEYS[1]: " Not a question",
        KEYS[2]: " What is the capital of France?",
    }
    lm = ScriptedLM(lambda p: replies[_last_key(p)])
    made = write_queries(lm, KEYS, GenerationSettings(per_key=2, filter_top_k=1), "question")
    assert made.queries == ["What is the capital of France?"] and made.sources == [0]
    assert made.counts == {"written": 6, "dropped: malformed": 2, "dropped: duplicate": 3, "kept": 1}
    assert made.dropped_samples["malformed"][0]["query"] == "Not a question"


def test_dev_split_holds_out_whole_sources_never_all():
    sources = [f"doc{i % 7}" for i in range(40)]
    dev = split_by_source(sources, 0.3, seed=1)
    assert len(dev) == 2 and dev < set(sources)
    assert dev == split_by_source(list(reversed(sources)), 0.3, seed=1)  # the order of queries does not matter
    assert split_by_source(["only"], 0.5, 0) == set()
    assert len(split_by_source(["a", "b"], 0.99, 0)) == 1
    assert split_by_source(["a", "b"], 0.0, 0) == set()


def test_dev_share_over_many_seeds_is_the_rounded_share():
    sizes = {len(split_by_source([str(i) for i in range(10)], 0.2, seed)) for seed in range(20)}
    assert sizes == {2}
    picks = np.array([sorted(split_by_source([str(i) for i in range(10)], 0.2, s)) for s in range(200)]).ravel()
    assert len(set(picks.tolist())) == 10  # every source can be held out


def test_max_keys_writes_for_a_seeded_sample_but_filters_against_every_key():
    lm = ScriptedLM(lambda p: f" What does {_last_key(p).split()[1]} mean here?")
    made = write_queries(lm, KEYS, GenerationSettings(per_key=1, filter_top_k=1, max_keys=2), "question", seed=3)
    again = write_queries(lm, KEYS, GenerationSettings(per_key=1, filter_top_k=1, max_keys=2), "question", seed=3)
    assert made.counts["written"] == 2 and made.sources == again.sources
    assert len(set(made.sources)) == len(made.sources) <= 2


def test_two_gloo_ranks_write_what_one_process_writes(tmp_path):
    worker = Path(__file__).with_name("generate_worker.py")
    proc = torchrun(2, [str(worker), str(tmp_path)], subprocess_env(), timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    spec = importlib.util.spec_from_file_location("generate_worker", worker)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    single_lm = module.RecordingLM()
    single = module.run(single_lm)
    for rank in ranks:
        assert {k: rank[k] for k in single} == single
    # each prompt written once, by one rank
    assert sorted(ranks[0]["seen"] + ranks[1]["seen"]) == sorted(single_lm.seen)
    assert not set(ranks[0]["seen"]) & set(ranks[1]["seen"]) and ranks[0]["seen"] and ranks[1]["seen"]


def test_a_request_that_names_the_tool_is_a_copy_not_a_request():
    tools = ["GetWeather, Current weather for a city", "send_mail, Send an email"]
    replies = {tools[0]: " GetWeather, Current weather of a city.", tools[1]: " Email Sam that I am late please"}
    lm = ScriptedLM(lambda p: replies[p.rsplit("Tool: ", 1)[-1].split("\n")[0]])
    made = write_queries(lm, tools, GenerationSettings(per_key=1, filter_top_k=0), "request")
    assert made.queries == ["Email Sam that I am late please"] and made.counts["dropped: malformed"] == 1
