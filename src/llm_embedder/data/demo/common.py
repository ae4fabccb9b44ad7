"""What every demo source module shares: sizes, the task order, seeded randomness and small text helpers."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from llm_embedder.data.layout import TRAIN_CORPUS_DIR, train_corpus_path  # noqa: F401  (re-exported)

MANIFEST_KIND = "llm-embedder-demo-data"
LAYOUT_VERSION = 5
"""Bumped when the output changes shape (2: dev/ and ood/ splits, convsearch over Wikipedia passages;
3: qa/retrieval/ files for the qa-retrieval column; 4: ``corpus-train/`` replaces ``corpus/``, the test
corpora, eval records carry ``cluster``, popqa reads the qa-retrieval corpus and ``qa/popqa/demos.json``;
5: ``ood/`` split by whole cluster into ``ood-dev/`` (selection) and ``ood-test/`` (the report));
a cached build of another version is stale."""
TASK_ORDER = ("qa", "icl", "chat", "lrlm", "tool", "convsearch")


EVAL_SPLITS = {"test": "eval", "dev": "dev", "ood-dev": "ood-dev", "ood-test": "ood-test"}
"""Evaluation split -> its folder in the output.  Each folder has the same layout (the one
`llm-embedder eval --data` reads), so any of them can be evaluated without a change to the harness.
``ood-dev`` is what model selection checks generality on, ``ood-test`` what the report shows once:
the halves of ``ood`` (see `HELD_OUT`), split by whole cluster (see `deal_halves`)."""

HELD_OUT = ("test", "dev", "ood")
"""The held-out sets a task builder draws before ``ood`` is halved by cluster into ``ood-dev`` and
``ood-test``.  ``ood`` is a held-out topic, tool family, prompt set or task set of the same sources
(Wikipedia biographies of the same sample, BFCL's live functions, held-back prompts of the same chat
set, other ICL task sets), not another source."""

OOD_HALVES = ("ood-test", "ood-dev")
"""The halves ``ood`` is dealt into, in dealing order (an odd cluster out goes to ``ood-test``, the
one reported)."""


# ============================================================================ sizes
@dataclass(frozen=True)
class DemoSize:
    """How much of each task to build.  ``dev`` and ``ood`` have the size of ``test`` where the
    sources allow it; ``ood`` is then halved by cluster into ``ood-dev`` and ``ood-test`` (lrlm: each
    half takes up to ``lrlm_test_docs`` articles of its own)."""

    train: int
    """Training queries per task."""
    test: int
    """Test queries of the retrieval-measured tasks (qa, tool, convsearch)."""
    llm_test: int
    """Test queries of the tasks only the LLM measures (icl, chat)."""
    lrlm_test_docs: int
    """Held-out Wikipedia articles for the lrlm evaluation.  Each gives 8 predicted chunks, and each
    of those is a forward pass of up to 4,096 LM tokens (16 retrieved + 16 local chunks of 128), about
    a minute per article and retriever for SmolLM2-135M on 2 CPU cores."""
    qa_corpus: int
    tool_corpus: int
    convsearch_corpus: int
    icl_pool_per_task: int
    """Demonstrations per ICL task name in the ICL corpus."""
    candidates: int = 8
    """Candidates of the chat (history entries, at most) and lrlm (earlier chunks) records."""
    fewer: dict[str, int] = field(default_factory=dict)
    """Test (and dev and ood) queries of a task whose sources hold too few for ``test`` or
    ``llm_test`` alongside its training queries."""

    def test_of(self, task: str) -> int:
        """The test queries of ``task``: ``fewer`` where it names the task."""
        return self.fewer.get(task, self.llm_test if task in ("icl", "chat") else self.test)


SIZES: dict[str, DemoSize] = {
    # ~150 train queries per task; at least 200 test queries per retrieval column and 100 per
    # LLM-scored one (13 lrlm articles = 104 predicted chunks), so that a real difference shows.
    "small": DemoSize(
        train=150, test=200, llm_test=100, lrlm_test_docs=13, qa_corpus=2000, tool_corpus=1500,
        convsearch_corpus=2000, icl_pool_per_task=150,
    ),
    # `recipes/demo-full.yaml`: test sets large enough that the LLM columns' intervals are about
    # +-0.03: 500 questions and chat samples, 16 lrlm articles (as many long ones as the dev split
    # holds).  Fewer where the sources end: ICL 280 (its topic task has 188 examples), tool 200 (about
    # 550 single-call BFCL requests), convsearch 200 (its dev split ends at 210 turns).
    "full": DemoSize(
        train=150, test=500, llm_test=500, lrlm_test_docs=16, qa_corpus=3000, tool_corpus=1500,
        convsearch_corpus=2500, icl_pool_per_task=150,
        fewer={"icl": 280, "tool": 200, "convsearch": 200},
    ),
    # CI-sized: a build takes seconds
    "quick": DemoSize(
        train=50, test=16, llm_test=16, lrlm_test_docs=1, qa_corpus=700, tool_corpus=500, convsearch_corpus=700,
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
    query_file: str
    """Path of the task's query file inside an evaluation folder (``qa/popqa/test.json``)."""
    files: dict[str, list[dict[str, Any]]]
    """Path under the output folder (``eval/...``, ``dev/...``, ``ood-dev/...``, ``ood-test/...``) -> records."""
    train_corpus: str | None = None
    """Path under the output folder of the task's training corpus (``corpus-train/<task>.jsonl``, in
    ``files`` or ``linked``); None when the training records carry their candidates."""
    linked: dict[str, str] = field(default_factory=dict)
    """Extra path -> path it is the same file as (the dev split's corpus is the test split's, the
    ood-dev split's the ood-test split's)."""
    notes: dict[str, Any] = field(default_factory=dict)


def split_counts(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as possible, the first ones larger."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def round_robin(groups: list[list[Any]], need: int) -> list[Any]:
    """Up to ``need`` items taken one per group in turn (the first of each group, then the second,
    ...): many groups are represented, none dominates."""
    out: list[Any] = []
    depth = 0
    while len(out) < need and any(depth < len(g) for g in groups):
        out += [g[depth] for g in groups if depth < len(g)][: need - len(out)]
        depth += 1
    return out


T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


def deal_halves(order: Sequence[K]) -> dict[K, str]:
    """Each cluster of ``order`` (the held-out source's clusters in a seeded order: articles, tool
    names, conversation starters) -> ``ood-dev`` or ``ood-test``, dealt in turn: about half each, and a
    cluster's queries all on one side, never split by query."""
    return {cluster: OOD_HALVES[i % len(OOD_HALVES)] for i, cluster in enumerate(order)}


def seeded_halves(clusters: Sequence[K], rng: np.random.Generator) -> dict[K, str]:
    """`deal_halves` of the distinct ``clusters`` (sorted, then in a seeded order)."""
    return deal_halves(shuffled(sorted(set(clusters)), rng))


def halve_ood(records: dict[str, list[T]], side: Callable[[T], str]) -> dict[str, list[T]]:
    """Per evaluation split (`EVAL_SPLITS`), its items: test's and dev's as drawn, ``ood``'s dealt to
    ``ood-dev`` and ``ood-test`` by ``side`` (the half of an item's cluster), in their order.  Together
    the halves hold exactly what ``ood`` held."""
    out = {split: records[split] for split in ("test", "dev")}
    return out | {half: [r for r in records["ood"] if side(r) == half] for half in EVAL_SPLITS if half not in out}


def ood_linked(rels: Sequence[str]) -> dict[str, str]:
    """The ood-dev copies of ood-test files (corpora, which both halves share): ``ood-dev/<rel>`` ->
    ``ood-test/<rel>``."""
    return {f"{EVAL_SPLITS['ood-dev']}/{rel}": f"{EVAL_SPLITS['ood-test']}/{rel}" for rel in rels}
