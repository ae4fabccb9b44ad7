"""Retrieval metrics against ranx (a trusted implementation) on random graded runs, plus hand cases
for the retrieval and answer-matching metrics."""

from __future__ import annotations

import math
import random
import warnings

import pytest

from llm_embedder.evaluation.metrics import (
    contains_answer,
    exact_match,
    mrr_at_k,
    ndcg_at_k,
    normalize_answer,
    popqa_match,
    recall_at_k,
    retrieval_metrics,
    token_f1,
)

CUTOFFS = (1, 3, 5, 10)


def random_run(seed: int, n_queries: int = 25, n_docs: int = 40):
    """Graded labels (1-3) and a ranking per query; some queries find nothing relevant."""
    rng = random.Random(seed)
    rankings, labels = [], []
    for _ in range(n_queries):
        relevant = rng.sample(range(n_docs), rng.randint(1, 6))
        labels.append({d: rng.randint(1, 3) for d in relevant})
        rankings.append(rng.sample(range(n_docs), rng.randint(1, 15)))
    return rankings, labels


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_metrics_match_ranx_per_query(seed):
    ranx = pytest.importorskip("ranx")
    rankings, labels = random_run(seed)
    qrels = ranx.Qrels({f"q{i}": {f"d{d}": g for d, g in lab.items()} for i, lab in enumerate(labels)})
    # Distinct decreasing scores fix ranx's order to ours.
    run = ranx.Run({f"q{i}": {f"d{d}": float(len(r) - j) for j, d in enumerate(r)} for i, r in enumerate(rankings)})
    names = [f"{m}@{k}" for m in ("mrr", "recall", "ndcg") for k in CUTOFFS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's type-safety warnings
        means = ranx.evaluate(qrels, run, names, threads=1)
    functions = {"mrr": mrr_at_k, "recall": recall_at_k, "ndcg": ndcg_at_k}
    for name in names:
        metric, k = name.split("@")
        for i, (ranking, label) in enumerate(zip(rankings, labels, strict=True)):
            expected = float(run.scores[name][f"q{i}"])
            assert functions[metric](ranking, label, int(k)) == pytest.approx(expected, abs=1e-12), (name, i)
    ours = retrieval_metrics(rankings, labels, CUTOFFS)
    assert set(ours) == set(names)
    for name in names:
        assert ours[name] == pytest.approx(float(means[name]), abs=1e-12), name


def test_retrieval_metrics_hand_case():
    ranking = [5, 3, 7, 9]
    labels = {3: 2, 7: 1, 8: 3}  # graded; 8 is never retrieved
    assert mrr_at_k(ranking, labels, 1) == 0.0
    assert mrr_at_k(ranking, labels, 2) == 0.5
    assert recall_at_k(ranking, labels, 1) == 0.0
    assert recall_at_k(ranking, labels, 3) == pytest.approx(2 / 3)
    dcg = 2 / math.log2(3) + 1 / math.log2(4)
    idcg = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranking, labels, 3) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(ranking, labels, 1) == 0.0
    # A perfect ranking scores 1 at every cutoff.
    for k in (1, 2, 3, 5):
        assert ndcg_at_k([8, 3, 7], labels, k) == pytest.approx(1.0)
    # Duplicates count once; zero grades are not relevant; no relevant documents scores 0.
    assert recall_at_k([3, 3, 3], {3: 1, 4: 1}, 3) == 0.5
    assert ndcg_at_k([3, 3], {3: 1}, 2) == pytest.approx(1.0)
    assert mrr_at_k([4, 3], {4: 0, 3: 1}, 2) == 0.5
    assert recall_at_k([1], {}, 1) == 0.0 and ndcg_at_k([1], {}, 1) == 0.0


def test_retrieval_metrics_means_and_errors():
    out = retrieval_metrics([[1, 2], [2, 1]], [{1: 1}, {1: 1}], cutoffs=(1, 2))
    assert out["mrr@1"] == 0.5 and out["mrr@2"] == 0.75 and out["recall@2"] == 1.0
    assert out["ndcg@2"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    with pytest.raises(ValueError, match="2 rankings but 1 label"):
        retrieval_metrics([[1], [2]], [{1: 1}])


def test_answer_metrics_hand_cases():
    assert normalize_answer("  The  Eiffel-Tower, in Paris! ") == "eiffeltower in paris"
    assert exact_match("The Paris!", ["London", "paris"]) == 1.0
    assert exact_match("Paris France", ["Paris"]) == 0.0
    # bag-of-words F1: prediction {cat, sat} vs gold {cat, sat, on, mat}: P = 1, R = 1/2.
    assert token_f1("The cat sat.", ["a cat sat on a mat"]) == pytest.approx(2 / 3)
    assert token_f1("dog", ["cat", "the dog"]) == 1.0  # best over answers
    assert token_f1("", ["cat"]) == 0.0 and token_f1("dog", ["cat"]) == 0.0
    assert token_f1("cat cat", ["cat"]) == pytest.approx(2 * 0.5 * 1 / 1.5)  # shared counts are clipped
    assert contains_answer("I think it is Paris, France.", ["paris"]) == 1.0
    assert contains_answer("The answer: New York City", ["new york"]) == 1.0
    assert contains_answer("Parisian food", ["Paris"]) == 0.0  # whole words only
    assert contains_answer("anything", ["", "the"]) == 0.0  # empty after normalisation never matches


@pytest.mark.parametrize(
    "generation,answers,original,normalized",
    [
        ("It was in paris.", ["Paris"], 1.0, 1.0),  # a.lower()
        ("PARIS", ["Paris"], 0.0, 1.0),  # no case folding beyond lower/capitalize
        ("New York City", ["new york"], 0.0, 1.0),  # "new york".capitalize() is "New york"
        ("new york city", ["New York"], 1.0, 1.0),
        ("Newark", ["New"], 1.0, 0.0),  # a substring, not a word
        ("it is the fox", ["The Fox", "Vixen"], 1.0, 1.0),
        ("nothing", ["Paris", "Rome"], 0.0, 0.0),
    ],
)
def test_popqa_original_rule_and_normalised_match(generation, answers, original, normalized):
    assert popqa_match(generation, answers) == original
    assert contains_answer(generation, answers) == normalized
