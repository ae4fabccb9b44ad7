"""The evaluation grid: every (evaluator, retriever) cell, cached so a killed run resumes, then the leaderboard.

Outputs under ``out`` (:data:`GRID_MEMBERS`): ``cells/`` and ``details/`` (see ``cells.py``; a cell is
run again unless its key matches (:meth:`llm_embedder.freshness.Stage.record`): data files' bytes, limit
and evaluator options, the LM's weights, the retriever's model fingerprint and version, the evaluation
code and library versions), ``cache/`` (corpus embeddings per model and task) and
``leaderboard.{md,json,png}``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from llm_embedder.evaluation.base import EvalResult, Evaluator, needs_lm
from llm_embedder.evaluation.cells import cell_file, details_file, reference_row
from llm_embedder.evaluation.leaderboard import write_leaderboard
from llm_embedder.evaluation.retrievers import NotApplicable, Retriever, check_spec, make_retriever
from llm_embedder.fileio import write_jsonl
from llm_embedder.fingerprint import code_digest, file_digest, files_digest, settings_digest, weights_digest
from llm_embedder.freshness import Stage

GRID_MEMBERS = ("cells", "details", "cache", "leaderboard.md", "leaderboard.json", "leaderboard.png")
"""What :func:`run_grid` writes in its folder (a command or stage that evaluates declares these)."""
# The code a cell's numbers come from: a fixed evaluator, LM wrapper or retriever runs its cells again.
EVALUATION_CODE = ("llm_embedder.evaluation", "llm_embedder.models", "llm_embedder.retrieval", "llm_embedder.tasks")


def run_grid(
    evaluators: list[Evaluator],
    retriever_specs: list[str],
    out_dir: str | Path,
    *,
    lm_name: str | None = None,
    lm_dtype: str | None = None,
    device: str = "auto",
    show_progress: bool = True,
    versions: dict[str, str] | None = None,
    reference: str | None = None,
    encoder_dtype: str | None = None,
) -> dict[str, Any]:
    """Run every cell not already done, then write and return the leaderboard.

    ``encoder_dtype`` is the dense retrievers' (default float32 on CPU); cells are cached per spec, so
    one results folder should keep one dtype.
    ``reference`` names the row the others are tested against (default: ``base`` if present).
    ``versions`` maps a retriever spec to what its results depend on beyond the spec itself (the
    settings a model folder was trained from): part of its cells' keys, so another version runs them again.
    """
    for spec in retriever_specs:  # a typo must fail now, not after hours of earlier cells
        check_spec(spec)
    reference_row(retriever_specs, reference)
    out = Path(out_dir)
    lm, lm_key = None, None
    if any(needs_lm(e) for e in evaluators):
        from llm_embedder.models.lm import CausalLM

        lm = CausalLM.from_pretrained(lm_name, device=device, dtype=lm_dtype)
        lm_key = {"weights": weights_digest(lm.model), "dtype": str(next(lm.model.parameters()).dtype)}
    data_keys = {id(e): _evaluator_key(e) for e in evaluators}
    code = code_digest(*EVALUATION_CODE)
    bar = tqdm(total=len(evaluators) * len(retriever_specs), desc="eval", unit="cell", disable=not show_progress)
    for spec in retriever_specs:
        # one model in memory at a time
        retriever = make_retriever(spec, cache_dir=out / "cache", device=device, dtype=encoder_dtype)
        for evaluator in evaluators:
            bar.set_postfix_str(f"{evaluator.name} / {spec}")
            made_from = {
                "data": data_keys[id(evaluator)],
                "retriever": getattr(retriever, "fingerprint", spec),
                "lm": lm_key if needs_lm(evaluator) else None,
                "code": code,
            }
            if (versions or {}).get(spec) is not None:  # absent, the key is what it was before versions joined it
                made_from["version"] = versions[spec]
            cell = Stage.record(cell_file(out, evaluator.name, spec), settings_digest(made_from))
            if not cell.fresh():
                _run_cell(evaluator, spec, retriever, lm if needs_lm(evaluator) else None, cell)
            bar.update(1)
    bar.close()
    return write_leaderboard(out, [e.name for e in evaluators], retriever_specs, lm_name, reference)


def _evaluator_key(evaluator: Evaluator) -> dict[str, Any]:
    """An evaluator's settings (limit and options) with its data files replaced by their digests."""
    key: dict[str, Any] = {"class": type(evaluator).__name__}
    for f in dataclasses.fields(evaluator):
        if not f.init:
            continue
        value = getattr(evaluator, f.name)
        if isinstance(value, Path) or (isinstance(value, str) and f.name.endswith("_file")):
            value = file_digest(value) if Path(value).exists() else None
        elif isinstance(value, list | tuple) and f.name.endswith("files"):
            value = files_digest(value)
        key[f.name] = value
    return json.loads(json.dumps(key, default=str))


def _run_cell(evaluator: Evaluator, spec: str, retriever: Retriever, lm: Any, stage: Stage) -> None:
    """Run one cell and write it (its details first: a cell file means a finished cell)."""
    started = time.perf_counter()
    try:
        result: EvalResult | None = evaluator.run(lm, retriever, show_progress=False)
    except NotApplicable as exc:
        result, note = None, str(exc)
    cell: dict[str, Any] = {"evaluator": evaluator.name, "task": evaluator.task, "retriever": spec}
    if result is None:
        cell["not_applicable"] = note
    else:
        cell.update(
            metrics=result.metrics,
            main_metric=result.main_metric,
            lower_is_better=result.lower_is_better,
            seconds=round(time.perf_counter() - started, 1),
        )
        write_jsonl(details_file(stage.stamp), result.details)
    stage.seal(cell)
