"""Dev-split selection: relative scores by hand, and the pick rule."""

from __future__ import annotations

import pytest

from llm_embedder.selection import choose, mean_score, relative_scores

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
