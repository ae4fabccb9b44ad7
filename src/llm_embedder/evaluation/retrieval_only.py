"""Tasks measured on the ranking itself (tool retrieval, conversational search, finding a question's
source passage): no LLM involved."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from llm_embedder.errors import InputError
from llm_embedder.evaluation.base import EvalResult, check_labels, cluster_fields, load_records
from llm_embedder.evaluation.metrics import retrieval_metrics
from llm_embedder.evaluation.retrievers import NotApplicable, Retriever
from llm_embedder.models.lm import CausalLM
from llm_embedder.retrieval.corpus import Corpus


@dataclass
class RetrievalOnly:
    """Eval records: ``query`` and ``pos_index`` (relevant corpus ids; optional ``pos_relevance``
    aligned with it gives graded labels).  Reports MRR, recall and nDCG at each cutoff."""

    eval_file: Path
    corpus_file: Path
    name: str
    task: str
    main_metric: str
    key_template: str = "{text}"
    cutoffs: tuple[int, ...] = (1, 3, 5, 10)
    limit: int | None = None
    needs_lm: ClassVar[bool] = False

    def run(self, lm: CausalLM | None, retriever: Retriever, show_progress: bool = False) -> EvalResult:
        if retriever.name == "none":
            raise NotApplicable(f"{self.name} measures the ranking itself; there is none without a retriever")
        rows = load_records(self.eval_file, {"query": str, "pos_index": list}, self.limit)
        corpus = Corpus.from_jsonl(self.corpus_file, self.key_template)
        check_labels(self.eval_file, rows, corpus)
        for line, r in rows:
            grades = r.get("pos_relevance")
            if grades is not None and (
                not isinstance(grades, list)
                or len(grades) != len(r["pos_index"])
                or not all(isinstance(g, int | float) and not isinstance(g, bool) for g in grades)
            ):
                raise InputError(
                    self.eval_file, line, "pos_relevance", f"expected {len(r['pos_index'])} numbers, one per pos_index"
                )
        labels = [
            dict(zip(r["pos_index"], r.get("pos_relevance") or [1.0] * len(r["pos_index"]), strict=True))
            for _, r in rows
        ]
        rankings = retriever.search(self.task, [r["query"] for _, r in rows], corpus, max(self.cutoffs))
        metrics = retrieval_metrics(rankings, labels, self.cutoffs)
        details = [  # graded labels too, so that per-query metrics (confidence intervals) can be recomputed
            {"query": r["query"], "retrieved": ranking, "relevant": r["pos_index"]}
            | ({"relevance": r["pos_relevance"]} if r.get("pos_relevance") else {})
            | cluster_fields(r)
            for (_, r), ranking in zip(rows, rankings, strict=True)
        ]
        return EvalResult(metrics, self.main_metric, details=details)
