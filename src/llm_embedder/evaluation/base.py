"""What every evaluator shares: its interface, its result type, eval-file loading with precise errors, and
prompt budgets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from llm_embedder.errors import InputError
from llm_embedder.evaluation.retrievers import Retriever
from llm_embedder.fileio import iter_jsonl
from llm_embedder.models.lm import CausalLM
from llm_embedder.retrieval.corpus import Corpus


@dataclass
class EvalResult:
    metrics: dict[str, float]
    main_metric: str
    lower_is_better: bool = False
    details: list[dict[str, Any]] = field(default_factory=list)
    """One entry per evaluated example (what was retrieved, predicted, scored)."""

    @property
    def main(self) -> float:
        return self.metrics[self.main_metric]


class Evaluator(Protocol):
    """One column of the leaderboard: evaluates an LM with a retriever on one eval file group.

    Evaluators are dataclasses: the grid keys a cell by their init fields (data files by content), and the
    registry's ``options`` set fields by name.  ``name`` is the column (and the cell files' prefix),
    ``task`` the embedder task (instructions, token budgets) its retrieval runs under, ``limit`` the
    most test examples it reads.  An evaluator that never calls the LM sets the class attribute
    ``needs_lm = False`` (see :func:`needs_lm`): the grid then loads no LM for it and ``run`` gets None.
    """

    __dataclass_fields__: ClassVar[dict[str, Any]]
    name: str
    task: str
    limit: int | None

    def run(self, lm: CausalLM | None, retriever: Retriever, show_progress: bool = False) -> EvalResult: ...


def needs_lm(evaluator: Evaluator) -> bool:
    """Whether ``evaluator.run`` needs the LM (true unless its class says ``needs_lm = False``)."""
    return getattr(evaluator, "needs_lm", True)


def load_records(
    path: str | Path, fields: dict[str, type | tuple[type, ...]], limit: int | None = None
) -> list[tuple[int, dict[str, Any]]]:
    """``(line, record)`` pairs of an eval file, each checked for the given fields and types."""
    rows = []
    for line, record in iter_jsonl(path):
        for name, kind in fields.items():
            if name not in record:
                raise InputError(path, line, name, "missing")
            if not isinstance(record[name], kind):
                raise InputError(path, line, name, f"has type {type(record[name]).__name__}")
        rows.append((line, record))
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise InputError(path, None, None, "no records")
    return rows


def cluster_fields(record: dict[str, Any]) -> dict[str, Any]:
    """An eval record's ``cluster`` (the id of the group of examples it is not independent of: its
    article, conversation, tool) and ``cluster_unit`` (what kind of group), for its details: the
    leaderboard's intervals and tests resample whole clusters where every example has one."""
    return {k: record[k] for k in ("cluster", "cluster_unit") if record.get(k) is not None}


def check_labels(path: str | Path, rows: list[tuple[int, dict]], corpus: Corpus, field: str = "pos_index") -> None:
    """Every labelled id must exist in the corpus."""
    ids = set(corpus.ids)
    for line, record in rows:
        labels = record.get(field)
        if not isinstance(labels, list) or not labels:
            raise InputError(path, line, field, "missing or empty: the relevant corpus ids")
        outside = [i for i in labels if i not in ids]
        if outside:
            raise InputError(path, line, field, f"ids {outside[:3]} are not in the corpus ({len(corpus)} documents)")


def fit_passages(lm: CausalLM, passages: Sequence[str], budget: int, cut: bool = True) -> list[str]:
    """The leading (most relevant) passages whose tokens fit in ``budget``; a passage that does not
    fit whole is cut to the room left (``cut``) or left out, so the best material is kept and the
    least relevant goes."""
    kept, used = [], 0
    for text in passages:
        ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
        room = budget - used
        if room <= 0:
            break
        if len(ids) > room:
            if cut:
                kept.append(lm.tokenizer.decode(ids[:room]))
            break
        kept.append(text)
        used += len(ids) + 1  # the separator
    return kept


def require_lm(lm: CausalLM | None, evaluator: str) -> CausalLM:
    if lm is None:
        raise ValueError(f"the {evaluator} evaluation needs a causal LM (--lm)")
    return lm
