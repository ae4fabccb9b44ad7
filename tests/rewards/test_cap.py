"""Which candidates the LLM scores (:mod:`llm_embedder.rewards.cap`): positives, then a capped share."""

from __future__ import annotations

import json
import math

import numpy as np

from llm_embedder.rewards.cap import cap_candidates, cap_file, scored_candidates, spread


def test_cap_keeps_every_positive_on_top_of_the_negative_budget():
    record = {"query": "q", "pos": ["p0", "p1", "p2"], "neg": ["n0", "n1", "n2", "n3"], "teacher_scores": [0] * 7}
    capped = cap_candidates(record, 2)
    assert capped == {"query": "q", "pos": ["p0", "p1", "p2"], "neg": ["n0", "n1"]}  # scores of the old list go
    assert cap_candidates(record, 9)["neg"] == record["neg"]


def test_spread_by_hand():
    # 10 earlier chunks, cap 4: the nearest 2 (8, 9) and the centres of 2 halves of chunks 0..7 (2, 6)
    assert spread(10, 4) == [2, 6, 8, 9]
    assert spread(10, 5) == [1, 5, 7, 8, 9]  # nearest 3; two older: centres 1.75 and 5.25 of chunks 0..6
    assert spread(10, 1) == [9]
    assert spread(3, 4) == [0, 1, 2]


def test_spread_brute_force_properties():
    for n in range(1, 30):
        for cap in range(1, 12):
            got = spread(n, cap)
            assert got == sorted(set(got)) and all(0 <= i < n for i in got)
            assert len(got) == min(n, cap)
            near = math.ceil(cap / 2)
            if n > cap:
                assert got[-near:] == list(range(n - near, n))  # the nearest ones are always kept
                older = got[: cap - near]
                if len(older) > 1:  # evenly spaced: neighbouring gaps differ by at most one chunk
                    gaps = np.diff(older)
                    assert gaps.max() - gaps.min() <= 1


def test_cap_of_lrlm_chunks_and_chat_history_keeps_the_nearest_and_aspread():
    chunks = [f"c{i}" for i in range(8)]
    lrlm = cap_candidates({"query": "q", "pos": [], "neg": chunks, "task": "lrlm"}, 4)
    assert lrlm["neg"] == ["c1", "c4", "c6", "c7"]  # in document order, the two nearest last
    chat = cap_candidates({"query": "q", "history": chunks}, 4)
    assert chat["history"] == ["c1", "c4", "c6", "c7"]


def test_cap_file_caps_every_record_and_the_count_is_candidates_times_answers(tmp_path):
    records = [
        {"query": "q0", "pos": ["p"], "neg": ["n0", "n1", "n2"], "answers": ["x", "y"]},
        {"query": "q1", "history": ["h0", "h1", "h2", "h3", "h4"]},  # no answers field: counted once
        {"query": "q2", "pos": [], "neg": ["c0"], "answers": ["z"]},
    ]
    source = tmp_path / "in.json"
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    cap_file(source, tmp_path / "capped.json", 2)
    capped = [json.loads(line) for line in (tmp_path / "capped.json").read_text().splitlines()]
    assert capped == [cap_candidates(r, 2) for r in records]
    # by hand: (1 positive + 2 negatives) x 2 answers, 2 of the history x 1, 1 chunk x 1 answer
    assert scored_candidates([tmp_path / "capped.json"]) == 3 * 2 + 2 + 1
