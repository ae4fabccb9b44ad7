"""The training split (:mod:`llm_embedder.data.split`): the held-out rows and the teacher guard."""

from __future__ import annotations

import json
from pathlib import Path

from llm_embedder.data.split import holdout_rows, split_file, teacher_guard_file, teacher_guard_record


def write_records(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_holdout_rows_are_seeded_and_at_most_half_the_file():
    for n in range(0, 12):
        for holdout in (0, 1, 3, 20):
            rows = holdout_rows(n, holdout, seed=7)
            assert len(rows) == min(holdout, n // 2) and all(0 <= i < n for i in rows)
            assert holdout_rows(n, holdout, seed=7) == rows  # the same every run
    draws = {frozenset(holdout_rows(40, 5, seed)) for seed in range(10)}
    assert len(draws) > 1  # the seed matters


def test_split_file_partitions_the_records_and_guards_only_the_training_part(tmp_path):
    records = [
        {"query": f"q{i}", "pos": ["p"], "neg": ["a", "b"], "teacher_scores": [0.0, 1.0, -1.0]} for i in range(10)
    ]
    source = write_records(tmp_path / "scored.json", records)
    for guard in (False, True):
        train, held = tmp_path / f"train-{guard}.json", tmp_path / f"held-{guard}.json"
        split_file(source, train, held, holdout=3, seed=0, teacher_guard=guard)
        out = holdout_rows(len(records), 3, 0)
        assert read_records(held) == [r for i, r in enumerate(records) if i in out]  # never guarded
        kept = [r for i, r in enumerate(records) if i not in out]
        # the teacher scores "a" (1.0) above the positive (0.0): the guard drops it from the training part
        expected = [dict(r, neg=["b"], teacher_scores=[0.0, -1.0]) for r in kept] if guard else kept
        assert read_records(train) == expected


def test_teacher_guard_by_hand():
    record = {
        "query": "q",
        "pos": ["p0", "p1"],
        "neg": ["a", "b", "c", "d"],
        "neg_index": [10, 11, 12, 13],
        "teacher_scores": [-1.0, -0.5, -0.2, -0.5, -0.7, 0.0],
    }
    out, dropped = teacher_guard_record(record)
    # best positive -0.5: a (-0.2) and d (0.0) are above it, b ties it; only c stays
    assert dropped == 3
    assert out == {
        "query": "q",
        "pos": ["p0", "p1"],
        "neg": ["c"],
        "neg_index": [12],
        "teacher_scores": [-1.0, -0.5, -0.7],
    }
    assert record["neg"] == ["a", "b", "c", "d"]  # the input is not changed


def test_teacher_guard_leaves_unlabelled_and_unscored_records_alone():
    chat = {"query": "q", "history": ["h0", "h1"], "teacher_scores": [0.0, 1.0]}
    lrlm = {"query": "q", "pos": [], "neg": ["c0", "c1"], "teacher_scores": [0.0, 1.0]}
    mined = {"query": "q", "pos": ["p"], "neg": ["a"]}
    for record in (chat, lrlm, mined):
        assert teacher_guard_record(record) == (record, 0)


def test_teacher_guard_file_counts_what_it_drops(tmp_path):
    scored = write_records(
        tmp_path / "scored.json",
        [
            {"query": "q1", "pos": ["p"], "neg": ["a", "b"], "teacher_scores": [-1.0, -0.5, -2.0]},
            {"query": "q2", "pos": ["p"], "neg": ["c"], "teacher_scores": [0.0, -1.0]},
        ],
    )
    assert teacher_guard_file(scored, tmp_path / "guarded.json") == (2, 1)
    assert [r["neg"] for r in read_records(tmp_path / "guarded.json")] == [["b"], ["c"]]
