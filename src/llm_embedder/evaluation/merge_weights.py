"""Choosing the merge weight of the fine-tuned model on dev data, by retrieval alone (no LLM).

The models are ``[fine-tuned, reference (base), others...]``.  Each grid value ``w`` gives the
fine-tuned model weight ``w`` and every other model ``(1 - w) / (n - 1)``.  Each merge is scored
with the retrieval-only evaluators of a dev folder in the released eval layout (tool nDCG@5,
convsearch nDCG@3, qa-retrieval nDCG@10, whichever are present), and so is the reference model
alone, with its own task table.

Criterion: the mean, over those evaluators, of the merge's main metric divided by the reference
model's; an evaluator on which the reference scores 0 is left out of the mean.  The highest mean
wins; a tie goes to the smaller fine-tuned weight (the model nearer the base, which keeps more
of its generality).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from llm_embedder.evaluation.registry import EVALUATORS
from llm_embedder.evaluation.retrieval_only import RetrievalOnly
from llm_embedder.evaluation.retrievers import DenseRetriever
from llm_embedder.fingerprint import files_digest
from llm_embedder.models.embedder import Embedder
from llm_embedder.models.merge import (
    MergeError,
    check_output,
    load_models,
    merge_embedders,
    merge_record,
    save_merged,
)

DEFAULT_GRID = tuple(i / 10 for i in range(11))
CRITERION = (
    "mean over the dev retrieval evaluators of the merge's main metric divided by the reference model's "
    "(evaluators where the reference scores 0 left out); ties to the smaller fine-tuned weight"
)


def parse_grid(text: str) -> list[float]:
    """``"0,0.25,0.5"`` -> sorted distinct weights in [0, 1]."""
    try:
        values = sorted({float(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise MergeError(f"--grid {text!r}: expected comma-separated numbers in [0, 1]") from None
    if not values or not all(0 <= v <= 1 for v in values):
        raise MergeError(f"--grid {text!r}: expected comma-separated numbers in [0, 1]")
    return values


def retrieval_evaluators(dev_dir: str | Path, limit: int | None = None) -> list[RetrievalOnly]:
    """The retrieval-only evaluators whose files ``dev_dir`` holds (released eval layout)."""
    dev_dir = Path(dev_dir)
    if not dev_dir.is_dir():
        raise FileNotFoundError(f"{dev_dir}: no such dev data folder")
    found = [builder(dev_dir, limit) for _, builder in EVALUATORS.values()]
    found = [e for e in found if isinstance(e, RetrievalOnly)]
    if not found:
        raise FileNotFoundError(
            f"{dev_dir}: no retrieval evaluation files "
            "(tool/toolbench, convsearch/qrecc, qa/retrieval, or qa/popqa with pos_index)"
        )
    return found


def grid_weights(fine_tuned_weight: float, n_models: int) -> list[float]:
    """The fine-tuned model (first) gets ``fine_tuned_weight``; the others share the rest equally."""
    rest = (1.0 - fine_tuned_weight) / (n_models - 1)
    return [fine_tuned_weight] + [rest] * (n_models - 1)


def retrieval_scores(
    embedder: Embedder, evaluators: Sequence[RetrievalOnly], label: str, show_progress: bool | None = None
) -> dict[str, float]:
    """Each evaluator's main metric for ``embedder`` as a dense retriever."""
    retriever = DenseRetriever(embedder, label, show_progress=show_progress)
    return {e.name: e.run(None, retriever).main for e in evaluators}


def relative_score(scores: dict[str, float], reference: dict[str, float]) -> float | None:
    """The criterion: mean of score / reference over the evaluators where the reference is above 0."""
    ratios = [scores[name] / reference[name] for name in scores if reference.get(name, 0.0) > 0]
    return sum(ratios) / len(ratios) if ratios else None


@dataclass
class WeightChoice:
    """The chosen weights and every grid point's scores."""

    weights: list[float]
    fine_tuned_weight: float
    reference: str
    reference_scores: dict[str, float]
    grid: list[dict[str, Any]] = field(default_factory=list)
    dev_data: str = ""
    dev_fingerprint: str = ""

    def record(self) -> dict[str, Any]:
        """What ``merge.json`` keeps under ``auto_weights``."""
        return {
            "criterion": CRITERION,
            "dev_data": self.dev_data,
            "dev_fingerprint": self.dev_fingerprint,
            "reference": self.reference,
            "reference_scores": self.reference_scores,
            "grid": self.grid,
            "chosen_fine_tuned_weight": self.fine_tuned_weight,
        }

    def table(self) -> str:
        """The grid as a Markdown table, the reference first and the chosen row marked."""
        names = list(self.reference_scores)
        lines = [
            "| fine-tuned weight | " + " | ".join(names) + " | criterion |",
            "|---" * (len(names) + 2) + "|",
            f"| reference ({self.reference}) | "
            + " | ".join(f"{self.reference_scores[n]:.4f}" for n in names)
            + " | 1.0000 |",
        ]
        for row in self.grid:
            mark = " ←" if row["fine_tuned_weight"] == self.fine_tuned_weight else ""
            criterion = "–" if row["criterion"] is None else f"{row['criterion']:.4f}"
            values = " | ".join(f"{row['scores'][n]:.4f}" for n in names)
            lines.append(f"| {row['fine_tuned_weight']:g} | {values} | {criterion}{mark} |")
        return "\n".join(lines)


def choose_weights(
    embedders: Sequence[Embedder],
    names: Sequence[str],
    dev_dir: str | Path,
    grid: Sequence[float] = DEFAULT_GRID,
    *,
    tasks_from: int = 0,
    limit: int | None = None,
    show_progress: bool = False,
) -> WeightChoice:
    """Score every grid weight of the fine-tuned model (``embedders[0]``) on ``dev_dir`` against the
    reference (``embedders[1]``) and return the best (see the module's criterion)."""
    if len(embedders) < 2:
        raise MergeError("choosing weights needs at least two models: the fine-tuned one, then the base")
    evaluators = retrieval_evaluators(dev_dir, limit)
    files = [f for e in evaluators for f in (e.eval_file, e.corpus_file)]
    quiet = None if show_progress else False
    reference = retrieval_scores(embedders[1], evaluators, str(names[1]), quiet)
    if not any(v > 0 for v in reference.values()):
        raise MergeError(f"the reference model {names[1]!r} scores 0 on every dev evaluator: nothing to normalise by")
    rows = []
    for w in tqdm(list(grid), desc="merge grid", unit="weight", disable=not show_progress):
        weights = grid_weights(w, len(embedders))
        merged = merge_embedders(embedders, weights, names=names, tasks_from=tasks_from)
        scores = retrieval_scores(merged, evaluators, f"merge-{w:g}", quiet)
        rows.append({"fine_tuned_weight": w, "weights": weights, "scores": scores})
        rows[-1]["criterion"] = relative_score(scores, reference)
    best = max(rows, key=lambda r: (r["criterion"], -r["fine_tuned_weight"]))
    return WeightChoice(
        weights=best["weights"],
        fine_tuned_weight=best["fine_tuned_weight"],
        reference=str(names[1]),
        reference_scores=reference,
        grid=rows,
        dev_data=str(dev_dir),
        dev_fingerprint=files_digest(files),
    )


def auto_merge(
    models: Sequence[str],
    dev_dir: str | Path,
    out: str | Path,
    grid: Sequence[float] = DEFAULT_GRID,
    *,
    tasks_from: int = 0,
    limit: int | None = None,
    overwrite: bool = False,
    device: str = "cpu",
    show_progress: bool = False,
) -> tuple[dict[str, Any], WeightChoice]:
    """Choose the fine-tuned model's weight on ``dev_dir`` (``models[0]`` fine-tuned, ``models[1]``
    the base), save that merge to ``out``; returns the ``merge.json`` record and the choice."""
    check_output(out, overwrite)  # before minutes of scoring
    embedders = load_models(models, device)
    choice = choose_weights(
        embedders, models, dev_dir, grid, tasks_from=tasks_from, limit=limit, show_progress=show_progress
    )
    merged = merge_embedders(embedders, choice.weights, names=models, tasks_from=tasks_from)
    record = {**merge_record(models, embedders, choice.weights, tasks_from), "auto_weights": choice.record()}
    return save_merged(merged, out, record, overwrite), choice
