"""Training records: loading and validation of released-format files, and per-visit key groups.

Expected values are worked out by hand or by brute force over many generator seeds, never by
calling the module's own helpers.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from llm_embedder.data.records import TrainRecord, load_train_file, make_group
from llm_embedder.errors import InputError
from llm_embedder.tasks import DEFAULT_TASKS, TrainingSettings

TOY_TASKS = ("qa", "icl", "chat", "lrlm", "tool", "convsearch")


def write_jsonl(path: Path, records: list) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# ============================================================================ loading the toy files


@pytest.mark.parametrize("task", TOY_TASKS)
def test_toy_file_loads_with_its_task_and_candidates(toy_dir, toy_records, task):
    raw = toy_records(task)
    data = load_train_file(toy_dir / f"{task}.json", DEFAULT_TASKS)
    assert data.task == task and data.name == task
    assert data.settings == DEFAULT_TASKS[task].training
    assert len(data) == len(raw) == 8
    assert data.dropped == {}
    for line, (record, rec) in enumerate(zip(data.records, raw, strict=True), start=1):
        assert record.line == line
        assert record.query == rec["query"]
        if "history" in rec:
            assert record.candidates == tuple(rec["history"]) and record.num_positives == 0
        else:
            assert record.candidates == tuple(rec["pos"] + rec["neg"])
            assert record.num_positives == len(rec["pos"])
        if "teacher_scores" in rec:
            assert record.teacher_scores == tuple(float(s) for s in rec["teacher_scores"])
            assert len(record.teacher_scores) == len(record.candidates)
        else:
            assert record.teacher_scores is None


def test_toy_icl_teacher_scores_are_pos_scores_then_neg_scores(toy_dir, toy_records):
    # The icl files carry the same scores twice; alignment with pos + neg must hold.
    data = load_train_file(toy_dir / "icl.json", DEFAULT_TASKS)
    for record, rec in zip(data.records, toy_records("icl"), strict=True):
        assert record.teacher_scores == tuple(rec["pos_scores"] + rec["neg_score"])


def test_dataset_name_can_be_given(toy_dir):
    assert load_train_file(toy_dir / "tool.json", DEFAULT_TASKS, name="toolbench").name == "toolbench"


# ============================================================================ validation errors


def _good(task="tool", **extra) -> dict:
    record = {"query": "q", "task": task, "pos": ["p"], "neg": ["n1", "n2"]}
    record.update(extra)
    return record


def _expect_error(path: Path, line: int | None, field: str | None, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        load_train_file(path, DEFAULT_TASKS, **kwargs)
    err = info.value
    text = str(err)
    assert str(path) in text
    assert err.line == line
    if line is not None:
        assert f"{path}:{line}" in text
    assert err.field == field
    if field is not None:
        assert repr(field) in text
    return err


def test_malformed_json_names_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "bad.json", [_good(), '{"query": "q", "task": ', _good()])
    err = _expect_error(path, 2, None)
    assert "malformed JSON" in str(err)


def test_missing_query(tmp_path):
    path = write_jsonl(tmp_path / "f.json", [_good(), _good(), {"task": "tool", "pos": ["p"], "neg": ["n"]}])
    _expect_error(path, 3, "query")


def test_query_not_a_string(tmp_path):
    path = write_jsonl(tmp_path / "f.json", [_good(query=["q"])])
    _expect_error(path, 1, "query")


def test_missing_task(tmp_path):
    path = write_jsonl(tmp_path / "f.json", [{"query": "q", "pos": ["p"], "neg": ["n"]}])
    _expect_error(path, 1, "task")


def test_unknown_task_lists_known_tasks(tmp_path):
    path = write_jsonl(tmp_path / "f.json", [_good(task="poetry")])
    err = _expect_error(path, 1, "task")
    assert "poetry" in str(err)
    for name in TOY_TASKS:
        assert name in str(err)


def test_file_mixing_tasks(tmp_path):
    path = write_jsonl(tmp_path / "f.json", [_good(), _good(), _good(task="convsearch")])
    err = _expect_error(path, 3, "task")
    assert "convsearch" in str(err) and "tool" in str(err)


def test_teacher_scores_length_mismatch(tmp_path):
    path = write_jsonl(tmp_path / "f.json", [_good(teacher_scores=[1, 2, 3]), _good(teacher_scores=[1.0, 2.0])])
    err = _expect_error(path, 2, "teacher_scores")
    assert "2 scores for 3 candidates" in str(err)


def test_teacher_scores_length_mismatch_with_history(tmp_path):
    path = write_jsonl(
        tmp_path / "f.json", [{"query": "q", "task": "chat", "history": ["a", "b", "c"], "teacher_scores": [1.0]}]
    )
    err = _expect_error(path, 1, "teacher_scores")
    assert "history" in str(err)


@pytest.mark.parametrize(
    "scores",
    ['["1.0", "2.0", "3.0"]', "[1.0, null, 2.0]", "3.0", "[true, false, true]", "[1.0, NaN, 2.0]", "[1, Infinity, 2]"],
)
def test_non_numeric_teacher_scores(tmp_path, scores):
    line = '{"query": "q", "task": "tool", "pos": ["p"], "neg": ["n1", "n2"], "teacher_scores": ' + scores + "}"
    path = write_jsonl(tmp_path / "f.json", [_good(), line])
    _expect_error(path, 2, "teacher_scores")


@pytest.mark.parametrize(
    ("field", "value"),
    [("pos", "a positive"), ("pos", ["ok", 3]), ("neg", "a negative"), ("neg", [None])],
)
def test_pos_or_neg_not_a_list_of_strings(tmp_path, field, value):
    path = write_jsonl(tmp_path / "f.json", [_good(), _good(**{field: value})])
    _expect_error(path, 2, field)


def test_history_not_a_list_of_strings(tmp_path):
    path = write_jsonl(tmp_path / "f.json", [{"query": "q", "task": "chat", "history": "h", "teacher_scores": [1.0]}])
    _expect_error(path, 1, "history")


def test_record_without_candidates(tmp_path):
    path = write_jsonl(tmp_path / "f.json", [{"query": "q", "task": "tool"}])
    _expect_error(path, 1, "pos")


@pytest.mark.parametrize("task", ["qa", "icl", "chat", "lrlm"])
def test_distilling_task_without_teacher_scores(tmp_path, task):
    record = {"query": "q", "task": task, "pos": ["p"], "neg": ["n1", "n2"]}
    path = write_jsonl(tmp_path / "f.json", [record])
    err = _expect_error(path, 1, "teacher_scores")
    assert task in str(err)


def test_contrastive_task_needs_no_teacher_scores(tmp_path):
    path = write_jsonl(tmp_path / "f.json", [_good(), _good(task="tool", teacher_scores=[0.0, 1.0, 2.0])])
    data = load_train_file(path, DEFAULT_TASKS)
    assert [r.teacher_scores for r in data.records] == [None, (0.0, 1.0, 2.0)]


@pytest.mark.parametrize(("task", "selection"), [("tool", "first"), ("icl", "random")])
def test_empty_pos_when_a_labelled_positive_is_needed(tmp_path, task, selection):
    assert DEFAULT_TASKS[task].training.select_positive == selection
    records = [
        {"query": "q", "task": task, "pos": ["p"], "neg": ["n"], "teacher_scores": [1.0, 0.0]},
        {"query": "q", "task": task, "pos": [], "neg": ["n", "m"], "teacher_scores": [1.0, 0.0]},
    ]
    path = write_jsonl(tmp_path / "f.json", records)
    err = _expect_error(path, 2, "pos")
    assert selection in str(err)


def test_teacher_selection_without_pos_or_scores(tmp_path):
    # chat selects its positive by teacher score; without scores and without pos nothing can be chosen.
    settings = TrainingSettings(losses={"contrastive": 1.0}, select_positive="teacher")
    path = write_jsonl(tmp_path / "f.json", [{"query": "q", "task": "chat", "history": ["a", "b"]}])
    _expect_error(path, 1, "teacher_scores", settings=settings)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text("\n\n", encoding="utf-8")
    err = _expect_error(path, None, None)
    assert "no records" in str(err)


def test_missing_file(tmp_path):
    _expect_error(tmp_path / "nope.json", None, None)


# ============================================================================ filters and drop counts


def _lrlm(scores: list[float], n_pos: int = 0) -> dict:
    cands = [f"c{i}" for i in range(len(scores))]
    return {"query": "q", "task": "lrlm", "pos": cands[:n_pos], "neg": cands[n_pos:], "teacher_scores": scores}


def test_lrlm_margin_filter(tmp_path):
    assert DEFAULT_TASKS["lrlm"].training.teacher_scores_margin == 0.1
    # spreads (max - min): 0.0625 drop, 0.125 keep, 0.09375 drop, 1.0 keep, exactly 0.1 keep (not below)
    records = [
        _lrlm([-2.0, -1.9375, -2.0]),
        _lrlm([-2.0, -1.875, -1.9]),
        _lrlm([-1.0, -1.09375]),
        _lrlm([-3.0, -2.0, -2.5, -2.25]),
        _lrlm([0.0, 0.1]),
    ]
    path = write_jsonl(tmp_path / "lrlm.json", records)
    data = load_train_file(path, DEFAULT_TASKS)
    assert [r.line for r in data.records] == [2, 4, 5]
    assert data.dropped == {"teacher scores within margin": 2}


def test_toy_lrlm_passes_the_margin(toy_dir, toy_records):
    spreads = [max(r["teacher_scores"]) - min(r["teacher_scores"]) for r in toy_records("lrlm")]
    assert min(spreads) >= 0.1  # hence no record of the toy file is dropped
    assert len(load_train_file(toy_dir / "lrlm.json", DEFAULT_TASKS)) == 8


def test_min_filter(tmp_path):
    settings = TrainingSettings(losses={"kl_distill": 1.0}, select_positive="teacher", teacher_scores_min=-1.0)
    records = [_lrlm([-3.0, -1.5]), _lrlm([-3.0, -1.0]), _lrlm([-2.0, -0.5]), _lrlm([-1.25, -1.0625])]
    data = load_train_file(write_jsonl(tmp_path / "f.json", records), DEFAULT_TASKS, settings=settings)
    assert [r.line for r in data.records] == [2, 3]
    assert data.dropped == {"best teacher score below minimum": 2}


def test_no_negatives_dropped(tmp_path):
    records = [
        _good(),
        {"query": "q", "task": "tool", "pos": ["p1", "p2"], "neg": []},  # positives never become negatives
        {"query": "q", "task": "tool", "pos": ["p"]},
        _good(),
    ]
    data = load_train_file(write_jsonl(tmp_path / "f.json", records), DEFAULT_TASKS)
    assert [r.line for r in data.records] == [1, 4]
    assert data.dropped == {"no negatives": 2}


def test_no_negatives_after_the_teacher_takes_the_only_candidate(tmp_path):
    records = [
        {"query": "q", "task": "chat", "history": ["only"], "teacher_scores": [-1.0]},
        {"query": "q", "task": "chat", "history": ["a", "b"], "teacher_scores": [-1.0, -2.0]},
    ]
    data = load_train_file(write_jsonl(tmp_path / "chat.json", records), DEFAULT_TASKS)
    assert [r.line for r in data.records] == [2]
    assert data.dropped == {"no negatives": 1}


def _max_samples_file(tmp_path, n=20) -> Path:
    return write_jsonl(tmp_path / "tool.json", [_good(query=f"q{i}") for i in range(n)])


def test_max_samples_keeps_a_seeded_subset(tmp_path):
    path = _max_samples_file(tmp_path)
    settings = TrainingSettings(max_samples=5)
    kept = {}
    for seed in range(6):
        data = load_train_file(path, DEFAULT_TASKS, settings=settings, seed=seed)
        assert len(data) == 5
        assert data.dropped == {"beyond max_samples": 15}
        lines = [r.line for r in data.records]
        assert lines == sorted(lines) and len(set(lines)) == 5  # distinct rows, in file order
        assert all(r.query == f"q{r.line - 1}" for r in data.records)
        kept[seed] = lines
        again = load_train_file(path, DEFAULT_TASKS, settings=settings, seed=seed)
        assert [r.line for r in again.records] == lines  # same seed, same subset
    assert len({tuple(v) for v in kept.values()}) > 1  # seeds matter
    last_five = list(range(16, 21))
    assert any(v != last_five for v in kept.values())  # not the original "keep the tail"
    assert kept[0] != last_five


def test_max_samples_not_reached(tmp_path):
    path = _max_samples_file(tmp_path, n=4)
    data = load_train_file(path, DEFAULT_TASKS, settings=TrainingSettings(max_samples=4))
    assert [r.line for r in data.records] == [1, 2, 3, 4] and data.dropped == {}


def test_max_samples_counts_rows_after_the_filters(tmp_path):
    records = [_good(query=f"q{i}") for i in range(6)] + [{"query": "x", "task": "tool", "pos": ["p"], "neg": []}] * 3
    path = write_jsonl(tmp_path / "tool.json", records)
    data = load_train_file(path, DEFAULT_TASKS, settings=TrainingSettings(max_samples=4))
    assert len(data) == 4
    assert data.dropped == {"no negatives": 3, "beyond max_samples": 2}
    assert all(r.line <= 6 for r in data.records)


@pytest.mark.parametrize("task", ["chat", "lrlm"])
def test_require_labels_drops_records_without_a_labelled_positive(toy_dir, task):
    data = load_train_file(toy_dir / f"{task}.json", DEFAULT_TASKS, require_labels=True)
    assert len(data) == 0
    assert data.dropped == {"no labelled positive": 8}


def test_require_labels_keeps_labelled_records(tmp_path, toy_dir):
    assert len(load_train_file(toy_dir / "qa.json", DEFAULT_TASKS, require_labels=True)) == 8
    records = [_good(), {"query": "q", "task": "tool", "pos": [], "neg": ["a", "b"]}, _good()]
    data = load_train_file(write_jsonl(tmp_path / "f.json", records), DEFAULT_TASKS, require_labels=True)
    assert [r.line for r in data.records] == [1, 3]
    assert data.dropped == {"no labelled positive": 1}


def test_require_teacher_can_be_switched_off(tmp_path):
    path = write_jsonl(tmp_path / "qa.json", [{"query": "q", "task": "qa", "pos": ["p"], "neg": ["n"]}])
    data = load_train_file(path, DEFAULT_TASKS, require_teacher=False, settings=TrainingSettings())
    assert len(data) == 1 and data.records[0].teacher_scores is None


# ============================================================================ make_group

SEEDS = range(300)


def record(pos: list[str], neg: list[str], scores: list[float] | None = None) -> TrainRecord:
    return TrainRecord("the query", tuple(pos + neg), len(pos), None if scores is None else tuple(scores), 1)


def settings(**kwargs) -> TrainingSettings:
    kwargs.setdefault("losses", {"contrastive": 1.0})
    return TrainingSettings(**kwargs)


POS = ["p0", "p1", "p2"]
NEG = ["n0", "n1", "n2", "n3", "n4", "n5"]


def test_group_shape_and_query():
    g = make_group(record(POS, NEG), settings(group_size=4), rng(0))
    assert g.query == "the query"
    assert len(g.keys) == 4
    assert g.teacher_scores is None


def test_first_positive():
    for seed in SEEDS:
        g = make_group(record(POS, NEG), settings(group_size=5), rng(seed))
        assert g.keys[0] == "p0"
        assert set(g.keys[1:]) <= set(NEG)  # unchosen positives never become negatives


def test_first_positive_ignores_teacher_scores():
    r = record(POS, NEG, [0, 5, 0, 9, 0, 0, 0, 0, 0])
    g = make_group(r, settings(group_size=3), rng(0))
    assert g.keys[0] == "p0"


def test_random_positive_is_uniform_over_the_labelled_ones():
    counts = Counter()
    for seed in SEEDS:
        g = make_group(record(POS, NEG), settings(group_size=4, select_positive="random"), rng(seed))
        counts[g.keys[0]] += 1
        assert set(g.keys[1:]) <= set(NEG)
    assert set(counts) == set(POS)
    assert min(counts.values()) > len(SEEDS) / 3 * 0.6


def test_teacher_positive_inside_pos():
    scores = [0.1, 0.9, 0.5, 0.2, 0.3, 0.4, 0.0, -1.0, 0.8]  # argmax: p1
    for seed in range(30):
        g = make_group(record(POS, NEG, scores), settings(group_size=4, select_positive="teacher"), rng(seed))
        assert g.keys[0] == "p1"
        assert set(g.keys[1:]) <= set(NEG)


def test_teacher_positive_taken_from_the_negatives():
    # argmax over all candidates is n2 (index 3 + 2): it becomes the positive and leaves the negatives.
    scores = [0.1, 0.2, 0.3, 0.0, 0.4, 2.0, 0.5, 0.6, 0.7]
    s = settings(group_size=6, select_positive="teacher")  # need 5 = every remaining negative
    seen = set()
    for seed in range(30):
        g = make_group(record(POS, NEG, scores), s, rng(seed))
        assert g.keys[0] == "n2"
        assert sorted(g.keys[1:]) == ["n0", "n1", "n3", "n4", "n5"]
        seen.add(g.keys[1:])
    assert len(seen) > 1  # the order of random negatives varies


def test_teacher_positive_for_history_records():
    # chat: no labelled positives, every history entry is a candidate
    hist = ["h0", "h1", "h2", "h3"]
    r = record([], hist, [-3.0, -1.0, -2.0, -4.0])
    s = DEFAULT_TASKS["chat"].training
    g = make_group(r, s, rng(0))
    assert g.keys[0] == "h1"
    # 3 remaining entries for 7 slots: a group of 4, each entry once
    assert s.group_size == 8 and sorted(g.keys[1:]) == ["h0", "h2", "h3"]


def test_random_negatives_are_distinct_and_cover_the_pool():
    counts = Counter()
    for seed in SEEDS:
        g = make_group(record(POS, NEG), settings(group_size=4), rng(seed))
        negs = g.keys[1:]
        assert len(set(negs)) == 3 and set(negs) <= set(NEG)
        counts.update(negs)
    # each negative is chosen with probability 3/6
    assert set(counts) == set(NEG)
    for n in NEG:
        assert abs(counts[n] / len(SEEDS) - 0.5) < 0.12


def test_random_negatives_are_all_orderings_eventually():
    # with need == pool size every ordering is a permutation of the pool
    orders = {make_group(record(["p"], ["a", "b", "c"]), settings(group_size=4), rng(s)).keys[1:] for s in SEEDS}
    assert orders == {
        ("a", "b", "c"),
        ("a", "c", "b"),
        ("b", "a", "c"),
        ("b", "c", "a"),
        ("c", "a", "b"),
        ("c", "b", "a"),
    }


def test_teacher_negatives_are_the_top_scored():
    scores = [9.0, 9.0, 9.0, 0.5, 3.0, -1.0, 2.0, 2.5, 0.0]
    s = settings(group_size=4, select_negative="teacher")
    for seed in range(10):
        g = make_group(record(POS, NEG, scores), s, rng(seed))
        assert g.keys == ("p0", "n1", "n4", "n3")
        assert g.teacher_scores == (9.0, 3.0, 2.5, 2.0)


def test_teacher_negatives_without_scores_fall_back_to_random():
    s = settings(group_size=3, select_negative="teacher")
    groups = {make_group(record(POS, NEG), s, rng(seed)).keys for seed in range(50)}
    assert len(groups) > 1 and all(set(g[1:]) <= set(NEG) for g in groups)


def test_too_few_negatives_give_a_smaller_group_random():
    r = record(["p"], ["a", "b"])
    s = settings(group_size=6)
    orders = {make_group(r, s, rng(seed)).keys for seed in SEEDS}
    assert orders == {("p", "a", "b"), ("p", "b", "a")}


def test_too_few_negatives_give_a_smaller_group_teacher():
    r = record(["p"], ["a", "b", "c"], [0.0, 5.0, 1.0, 3.0])
    g = make_group(r, settings(group_size=8, select_negative="teacher"), rng(0))
    assert g.keys == ("p", "a", "c", "b")
    assert g.teacher_scores == (0.0, 5.0, 3.0, 1.0)


@pytest.mark.parametrize("select_negative", ["random", "teacher"])
def test_repeated_texts_count_once_and_never_repeat_the_positive(select_negative):
    # "a" twice and a negative equal to the positive's text: 3 distinct negatives (a, b, c).
    r = record(["p"], ["a", "p", "b", "a", "c"], [0.0, 4.0, 3.0, 2.0, 4.0, 1.0])
    for seed in range(50):
        g = make_group(r, settings(group_size=8, select_negative=select_negative), rng(seed))
        assert g.keys[0] == "p" and sorted(g.keys[1:]) == ["a", "b", "c"]
        assert dict(zip(g.keys, g.teacher_scores, strict=True))["a"] == 4.0  # the first "a"


def test_no_repeated_key_while_distinct_candidates_exist():
    # Brute force over many random records: a group repeats no key and is full whenever it can be.
    gen = np.random.default_rng(0)
    for _ in range(300):
        n_pos, n_neg, size = int(gen.integers(1, 4)), int(gen.integers(1, 9)), int(gen.integers(2, 9))
        texts = [f"t{int(x)}" for x in gen.integers(0, 8, n_pos + n_neg)]
        scores = gen.normal(size=n_pos + n_neg).tolist()
        r = TrainRecord("q", tuple(texts), n_pos, tuple(scores), 1)
        for pos_rule, neg_rule in itertools.product(["first", "random", "teacher"], ["random", "teacher"]):
            s = settings(group_size=size, select_positive=pos_rule, select_negative=neg_rule)
            g = make_group(r, s, rng(int(gen.integers(1000))))
            assert len(set(g.keys)) == len(g.keys)
            chosen = g.keys[0]
            pool = set(texts[n_pos:]) - {chosen}  # negatives' texts, less the positive's (unchosen pos never)
            assert len(g.keys) == min(size, 1 + len(pool))
            assert set(g.keys[1:]) <= pool


def test_stable_distill_orders_negatives_by_descending_teacher_score():
    scores = [-5.0, 1.0, -2.0, 0.5, 3.0, -1.0, 2.0]
    r = record(["p"], ["a", "b", "c", "d", "e", "f"], scores)
    s = settings(losses={"stable_distill": 1.0}, group_size=4)
    lookup = dict(zip(r.candidates, scores, strict=True))
    chosen = set()
    for seed in range(100):
        g = make_group(r, s, rng(seed))
        assert g.keys[0] == "p"  # the positive stays first although it has the lowest score
        assert g.teacher_scores[0] == -5.0
        negs = g.teacher_scores[1:]
        assert list(negs) == sorted(negs, reverse=True)
        assert g.teacher_scores == tuple(lookup[k] for k in g.keys)
        chosen.add(frozenset(g.keys[1:]))
    assert len(chosen) > 5  # negatives are still drawn at random, only their order is fixed


def test_without_stable_distill_random_negatives_keep_the_draw_order():
    scores = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    r = record(["p"], ["a", "b", "c", "d", "e", "f"], scores)
    s = settings(losses={"kl_distill": 1.0}, group_size=4)
    orders = [make_group(r, s, rng(seed)).teacher_scores[1:] for seed in range(50)]
    assert any(list(o) != sorted(o, reverse=True) for o in orders)


@pytest.mark.parametrize("task", TOY_TASKS)
def test_teacher_scores_aligned_with_keys_on_toy_records(toy_dir, task):
    data = load_train_file(toy_dir / f"{task}.json", DEFAULT_TASKS)
    for r in data.records:
        for seed in range(5):
            g = make_group(r, data.settings, rng(seed))
            assert len(set(g.keys)) == len(g.keys) <= data.settings.group_size
            assert set(g.keys) <= set(r.candidates)
            if r.teacher_scores is None:
                assert g.teacher_scores is None
                continue
            # every key's score is one of the scores its text carries (texts may repeat within a record)
            by_text: dict[str, set[float]] = {}
            for text, score in zip(r.candidates, r.teacher_scores, strict=True):
                by_text.setdefault(text, set()).add(score)
            assert len(g.teacher_scores) == len(g.keys)
            assert all(score in by_text[key] for key, score in zip(g.keys, g.teacher_scores, strict=True))
            if data.settings.select_positive == "teacher":
                assert g.teacher_scores[0] == max(r.teacher_scores)
            if "stable_distill" in data.settings.losses:
                assert list(g.teacher_scores[1:]) == sorted(g.teacher_scores[1:], reverse=True)


def test_toy_positive_and_negatives_come_from_the_right_pool(toy_dir, toy_records):
    for task in TOY_TASKS:
        data = load_train_file(toy_dir / f"{task}.json", DEFAULT_TASKS)
        for r, raw in zip(data.records, toy_records(task), strict=True):
            g = make_group(r, data.settings, rng(1))
            if task in ("qa", "tool", "convsearch"):  # first labelled positive
                assert g.keys[0] == raw["pos"][0]
            if task == "icl":  # a random labelled positive
                assert g.keys[0] in raw["pos"]
            if task in ("qa", "icl", "tool", "convsearch"):
                # negatives come from neg only (texts shared with pos would make this check weaker)
                assert all(k in raw["neg"] for k in g.keys[1:])


def test_same_seed_same_group_different_seeds_differ():
    r = record(POS, NEG, [float(i) for i in range(9)])
    stable = settings(losses={"stable_distill": 1.0}, group_size=4)
    for s in (settings(group_size=4, select_positive="random"), stable):
        a = [make_group(r, s, rng(seed)) for seed in range(20)]
        b = [make_group(r, s, rng(seed)) for seed in range(20)]
        assert a == b
        assert len(set(a)) > 1


def test_rng_seeded_by_a_tuple_is_deterministic():
    # the trainer seeds by (seed, step, row): equal tuples, equal groups
    r = record(POS, NEG)
    s = settings(group_size=4, select_positive="random")
    g1 = make_group(r, s, np.random.default_rng((42, 3, 17)))
    g2 = make_group(r, s, np.random.default_rng((42, 3, 17)))
    assert g1 == g2
    others = {make_group(r, s, np.random.default_rng((42, step, 17))) for step in range(20)}
    assert len(others) > 1
