"""Dev-split selection: relative scores by hand, and the pick rule."""

from __future__ import annotations

import pytest

from llm_embedder.selection import choose, mean_score, relative_scores, worst_check

BOARD = {
    "columns": [
        {"evaluator": "tool", "metric": "ndcg@5", "lower_is_better": False},
        {"evaluator": "msc", "metric": "perplexity", "lower_is_better": True},
    ],
    "rows": {
        "base=dense:minilm": {"tool": 0.40, "msc": 50.0},
        "a=dense:x": {"tool": 0.50, "msc": 40.0},
        "b=dense:y": {"tool": {"value": 0.20}, "msc": None},
    },
}


def test_relative_scores_by_hand():
    scores = relative_scores(BOARD, "base")
    assert scores["a=dense:x"] == pytest.approx({"tool": 1.25, "msc": 1.25})
    assert scores["b=dense:y"] == pytest.approx({"tool": 0.5})  # missing cell left out
    assert scores["base=dense:minilm"] == pytest.approx({"tool": 1.0, "msc": 1.0})
    assert mean_score(scores["a=dense:x"]) == pytest.approx(1.25)
    with pytest.raises(ValueError, match="no row 'nope'"):
        relative_scores(BOARD, "nope")


def test_choose_respects_the_out_of_domain_floor():
    picked = choose(
        {"hot": {"dev": 1.3, "ood": 0.9}, "mild": {"dev": 1.1, "ood": 1.01}, "cold": {"dev": 1.0, "ood": 1.2}}
    )
    assert picked["chosen"] == "mild"
    picked = choose({"hot": {"dev": 1.3, "ood": 0.9}, "warm": {"dev": 1.2, "ood": 0.95}})
    assert picked["chosen"] == "warm" and "no model reached" in picked["rule"]
    assert choose({"only": {"dev": 1.0, "ood": None}})["chosen"] == "only"


def test_a_tie_on_dev_goes_to_the_safer_model_out_of_domain():
    # Round 3's case: instructions ahead on dev by 0.021, within the noise; without them safer out of domain.
    candidates = {"instr": {"dev": 1.118, "ood": 1.079}, "plain": {"dev": 1.097, "ood": 1.12}}
    picked = choose(candidates)
    assert picked["chosen"] == "plain" and picked["tied"] == ["instr", "plain"]
    assert "within 0.03 of it on dev: the best out-of-domain score among them" in picked["rule"]
    # dev alone (no tie window) picks the higher dev score; a clear dev lead is not a tie
    assert choose(candidates, dev_tie=0.0)["chosen"] == "instr"
    clear = {"instr": {"dev": 1.20, "ood": 1.01}, "plain": {"dev": 1.10, "ood": 1.3}}
    assert choose(clear)["chosen"] == "instr" and choose(clear)["tied"] == []
    # the tie is measured from the best eligible model: one below the out-of-domain floor neither
    # counts as the best nor ties
    floor = {"hot": {"dev": 1.30, "ood": 0.9}, "a": {"dev": 1.10, "ood": 1.05}, "b": {"dev": 1.08, "ood": 1.2}}
    assert choose(floor)["chosen"] == "b" and choose(floor)["tied"] == ["a", "b"]
    # tied on dev and equal out of domain: the better dev score; an unknown ood score is the least safe
    even = {"x": {"dev": 1.10, "ood": 1.1}, "y": {"dev": 1.09, "ood": 1.1}, "z": {"dev": 1.095, "ood": None}}
    assert choose(even)["chosen"] == "x"
    assert choose({"z": {"dev": 1.2, "ood": None}, "w": {"dev": 1.19, "ood": 1.0}})["chosen"] == "w"
    with pytest.raises(ValueError, match="dev_tie must be >= 0"):
        choose(candidates, dev_tie=-0.1)


def test_the_out_of_domain_score_is_the_worst_checks():
    assert worst_check({"dev": 0.5, "ood": 1.02, "check-1": 0.97}) == 0.97  # dev is never a check
    assert worst_check({"dev": 1.2, "ood": None, "check-1": 1.01}) == 1.01  # a check without a score is skipped
    assert worst_check({"dev": 1.2}) is None
    # level on the same-source check but below the base on natural questions: not eligible
    scores = {
        "instr": {"dev": 1.12, "ood": 1.08, "check-1": 0.93},
        "plain": {"dev": 1.10, "ood": 1.02, "check-1": 1.01},
    }
    picked = choose({n: {"dev": s["dev"], "ood": worst_check(s)} for n, s in scores.items()})
    assert picked["chosen"] == "plain"
