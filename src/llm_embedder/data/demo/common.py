"""What every demo source module shares: sizes, the task order, seeded randomness and small text helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

MANIFEST_KIND = "llm-embedder-demo-data"
TASK_ORDER = ("qa", "icl", "chat", "lrlm", "tool", "convsearch")


# ============================================================================ sizes
@dataclass(frozen=True)
class DemoSize:
    """How much of each task to build."""

    train: int
    """Training queries per task."""
    test: int
    """Test queries per task (lrlm: see ``lrlm_test_docs``)."""
    lrlm_test_docs: int
    """Held-out Wikipedia articles for the lrlm evaluation.  Each gives 8 predicted chunks, and each
    of those is a forward pass of up to 4,096 LM tokens (16 retrieved + 16 local chunks of 128), about
    a minute per article and retriever for SmolLM2-135M on 2 CPU cores, hence so few."""
    qa_corpus: int
    tool_corpus: int
    convsearch_corpus: int
    icl_pool_per_task: int
    """Demonstrations per ICL task name in the ICL corpus."""
    candidates: int = 8
    """Candidates of the chat (history entries, at most) and lrlm (earlier chunks) records."""


SIZES: dict[str, DemoSize] = {
    # ~150 train queries per task: recipes/demo.yaml (4 scored candidates per query, the LLM in
    # bfloat16, 80 training steps, the evaluation grid) ran in 15-19 minutes on 2 CPU cores.
    "small": DemoSize(
        train=150, test=48, lrlm_test_docs=3, qa_corpus=2000, tool_corpus=1500, convsearch_corpus=2000,
        icl_pool_per_task=150,
    ),
    # about a third: the recipe's --quick run took 4.2 minutes
    "quick": DemoSize(
        train=50, test=16, lrlm_test_docs=1, qa_corpus=700, tool_corpus=500, convsearch_corpus=700,
        icl_pool_per_task=50,
    ),
}  # fmt: skip


# ============================================================================ small helpers
def norm_text(text: str) -> str:
    """Key for "the same query": case- and whitespace-insensitive."""
    return " ".join(text.lower().split())


def word_count(text: str) -> int:
    return len(text.split())


def cut_words(text: str, max_chars: int) -> str:
    """``text`` cut at a word boundary to at most ``max_chars`` characters."""
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    return text[:max_chars].rsplit(" ", 1)[0] + " …"


def task_rng(seed: int, task: str) -> np.random.Generator:
    return np.random.default_rng([seed, TASK_ORDER.index(task) if task in TASK_ORDER else 99])


def shuffled(items: list, rng: np.random.Generator) -> list:
    return [items[i] for i in rng.permutation(len(items))]


@dataclass
class TaskData:
    """What one task contributes to the output folder."""

    train: list[dict[str, Any]]
    eval_files: dict[str, list[dict[str, Any]]]
    """Path under ``eval/`` -> records."""
    corpus_file: str | None = None
    """Path under ``eval/`` of the task's corpus, also written as ``corpus/<task>.jsonl``."""
    linked: dict[str, str] = field(default_factory=dict)
    """Extra eval path -> eval path it is the same file as (the MMLU corpus)."""
    notes: dict[str, Any] = field(default_factory=dict)
