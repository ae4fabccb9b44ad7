"""Per-task dev diagnostics: top-1 agreement with the teacher and positive-first rate, on hand-made cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llm_embedder.errors import InputError
from llm_embedder.training.diagnostics import training_diagnostics


class FakeEncoder:
    """Query "q" is (1, 0); a key's similarity to it is the number in its text ("a 0.9" -> 0.9)."""

    def encode_queries(self, texts, task):
        return np.array([[1.0, 0.0] for _ in texts], dtype=np.float32)

    def encode_keys(self, texts, task):
        return np.array([[float(t.split()[-1]), 0.0] for t in texts], dtype=np.float32)


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_teacher_and_positive_agreement_by_hand(tmp_path):
    qa = write(
        tmp_path / "qa.json",
        [
            # student top "b 0.9"; teacher top b; pos a: teacher hit, positive miss
            {"query": "q", "task": "qa", "pos": ["a 0.5"], "neg": ["b 0.9", "c 0.1"], "teacher_scores": [1, 2, 0]},
            # student top the positive, teacher top c: teacher miss, positive hit
            {"query": "q", "task": "qa", "pos": ["a 0.8"], "neg": ["b 0.2", "c 0.3"], "teacher_scores": [1, 0, 3]},
            # teacher ties a and c (both best): student top a is a hit; positive hit
            {"query": "q", "task": "qa", "pos": ["a 0.7"], "neg": ["c 0.6"], "teacher_scores": [2, 2]},
            # a single candidate: skipped
            {"query": "q", "task": "qa", "pos": ["a 0.7"], "neg": [], "teacher_scores": [2]},
        ],
    )
    chat = write(
        tmp_path / "chat.json",
        [{"query": "q", "task": "chat", "history": ["h 0.1", "g 0.4", "f 0.2"], "teacher_scores": [0, -1, -2]}],
    )
    lines: list[str] = []
    got = training_diagnostics(FakeEncoder(), [qa, chat], print_fn=lines.append)
    assert got["qa"]["queries"] == 3
    assert got["qa"]["teacher_top1"] == pytest.approx(2 / 3)
    assert got["qa"]["teacher_chance"] == pytest.approx((1 / 3 + 1 / 3 + 2 / 2) / 3)
    assert got["qa"]["positive_top1"] == pytest.approx(2 / 3)
    assert got["qa"]["positive_chance"] == pytest.approx((1 / 3 + 1 / 3 + 1 / 2) / 3)
    assert got["chat"]["teacher_top1"] == 0.0 and got["chat"]["positive_top1"] is None
    assert got["chat"]["positive_queries"] == 0
    assert lines[0] == (
        "dev qa (qa): student top = teacher top 66.7% of 3 (chance 55.6%); positive first 66.7% of 3 (chance 38.9%)"
    )
    assert lines[1] == "dev chat (chat): student top = teacher top 0.0% of 1 (chance 33.3%)"


def test_limit_and_unscored_files(tmp_path):
    tool = write(
        tmp_path / "tool.json",
        [{"query": "q", "task": "tool", "pos": ["a 0.9"], "neg": [f"n 0.{i}"]} for i in range(5)],
    )
    got = training_diagnostics(FakeEncoder(), [tool], limit=2, print_fn=None)["tool"]
    assert got["queries"] == 2 and got["positive_top1"] == 1.0 and got["teacher_top1"] is None


def test_bad_teacher_scores_name_the_file_and_line(tmp_path):
    bad = write(
        tmp_path / "qa.json", [{"query": "q", "task": "qa", "pos": ["a 1"], "neg": ["b 0"], "teacher_scores": [1]}]
    )
    with pytest.raises(InputError, match=r"qa.json:1: field .teacher_scores."):
        training_diagnostics(FakeEncoder(), [bad], print_fn=None)


def test_runs_on_a_real_encoder_and_the_toy_files(tiny_embedder, toy_dir):
    got = training_diagnostics(tiny_embedder, [toy_dir / "qa.json", toy_dir / "chat.json"], limit=5, print_fn=None)
    assert got["qa"]["teacher_queries"] == got["qa"]["positive_queries"] == 5
    assert 0.0 <= got["qa"]["teacher_top1"] <= 1.0 and got["chat"]["positive_top1"] is None
