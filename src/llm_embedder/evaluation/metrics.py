"""Metrics: retrieval (MRR, recall, nDCG with graded labels) and answer matching (EM, F1, containment)."""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence

Ranking = Sequence[int]
Labels = Mapping[int, float]
"""Relevance of each relevant document id (1 for binary labels; higher is better)."""


def mrr_at_k(ranking: Ranking, labels: Labels, k: int) -> float:
    """1 / rank of the first relevant document within the top k, else 0."""
    for rank, doc in enumerate(ranking[:k], start=1):
        if labels.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def recall_at_k(ranking: Ranking, labels: Labels, k: int) -> float:
    """Share of the relevant documents found in the top k (duplicates in the ranking count once)."""
    relevant = {d for d, g in labels.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant & set(ranking[:k])) / len(relevant)


def ndcg_at_k(ranking: Ranking, labels: Labels, k: int) -> float:
    """Normalised DCG with linear gains: sum gain_i / log2(i + 1) over the top k, divided by the
    same sum for the ideal ordering (the trec_eval definition)."""
    seen: set[int] = set()
    dcg = 0.0
    for rank, doc in enumerate(ranking[:k], start=1):
        if doc in seen:
            continue
        seen.add(doc)
        dcg += labels.get(doc, 0.0) / math.log2(rank + 1)
    ideal = sorted((g for g in labels.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(ideal, start=1))
    return dcg / idcg if idcg > 0 else 0.0


RETRIEVAL_METRICS = {"mrr": mrr_at_k, "recall": recall_at_k, "ndcg": ndcg_at_k}


def retrieval_metrics(
    rankings: Sequence[Ranking], labels: Sequence[Labels], cutoffs: Sequence[int] = (1, 3, 5, 10)
) -> dict[str, float]:
    """Mean of each metric at each cutoff over the queries, e.g. ``{"ndcg@5": 0.61, ...}``."""
    if len(rankings) != len(labels):
        raise ValueError(f"{len(rankings)} rankings but {len(labels)} label sets")
    out = {}
    for name, fn in RETRIEVAL_METRICS.items():
        for k in cutoffs:
            values = [fn(r, lab, k) for r, lab in zip(rankings, labels, strict=True)]
            out[f"{name}@{k}"] = sum(values) / len(values) if values else 0.0
    return out


# ----------------------------------------------------------------------------- answers
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(a) for a in answers))


def token_f1(prediction: str, answers: Sequence[str]) -> float:
    """Best bag-of-words F1 between the normalised prediction and any answer."""
    pred = normalize_answer(prediction).split()
    best = 0.0
    for answer in answers:
        gold = normalize_answer(answer).split()
        common = sum((Counter(pred) & Counter(gold)).values())
        if common:
            precision, recall = common / len(pred), common / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def contains_answer(prediction: str, answers: Sequence[str]) -> float:
    """1 if a normalised answer occurs (as whole words) in the normalised prediction."""
    pred = f" {normalize_answer(prediction)} "
    return float(any(f" {normalize_answer(a)} " in pred for a in answers if normalize_answer(a)))


def popqa_match(prediction: str, answers: Sequence[str]) -> float:
    """1 if an answer ``a``, ``a.lower()`` or ``a.capitalize()`` is a substring of the raw prediction:
    the rule of the original PopQA evaluation (case-sensitive otherwise; no word boundaries)."""
    return float(any(a in prediction or a.lower() in prediction or a.capitalize() in prediction for a in answers))
