"""The evaluation grid: every (evaluator, retriever) cell, cached so a killed run resumes, then a leaderboard.

Data follow the released LLM-Embedder evaluation layout under one folder (only the files present
are evaluated):

    qa/mmlu/test.json + qa/msmarco/corpus.json        qa/popqa/test.json + qa/nq/corpus.json
    icl/icl/test.json + icl/icl/corpus.json           chat/msc/test.json
    lrlm/<name>/test.json (any number of names)       tool/toolbench/test.json + corpus.json
    convsearch/qrecc/test.concat.json + corpus.json

Outputs under ``out``: ``cells/<evaluator>__<retriever>.json`` (metrics, and the key of what they
were made from: data files' bytes, limit and evaluator options, the LM's weights, the retriever's
model fingerprint; a cell is run again unless its key matches), ``details/...jsonl`` (per example),
``cache/`` (corpus embeddings per model and task), and ``leaderboard.{md,json,png}``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from llm_embedder.evaluation.base import EvalResult
from llm_embedder.evaluation.icl import InContextLearning
from llm_embedder.evaluation.memory import Conversation, LongText
from llm_embedder.evaluation.qa import MultipleChoiceQA, OpenQA
from llm_embedder.evaluation.retrieval_only import RetrievalOnly
from llm_embedder.evaluation.retrievers import NotApplicable, check_spec, make_retriever, split_label
from llm_embedder.fileio import write_json, write_jsonl
from llm_embedder.fingerprint import file_digest, files_digest, settings_digest, weights_digest

# evaluator name -> (task, builder from the data folder; None when its files are absent)
Builder = Callable[[Path, int | None], Any]


def _if_present(*paths: Path) -> bool:
    return all(p.is_file() for p in paths)


def _mmlu(d: Path, limit: int | None):
    test, corpus = d / "qa/mmlu/test.json", d / "qa/msmarco/corpus.json"
    return MultipleChoiceQA(test, corpus, limit=limit) if _if_present(test, corpus) else None


def _popqa(d: Path, limit: int | None):
    test, corpus = d / "qa/popqa/test.json", d / "qa/nq/corpus.json"
    return OpenQA(test, corpus, limit=limit) if _if_present(test, corpus) else None


def _icl(d: Path, limit: int | None):
    test, corpus = d / "icl/icl/test.json", d / "icl/icl/corpus.json"
    return InContextLearning(test, corpus, limit=limit) if _if_present(test, corpus) else None


def _msc(d: Path, limit: int | None):
    test = d / "chat/msc/test.json"
    return Conversation(test, limit=limit) if test.is_file() else None


def _lrlm(d: Path, limit: int | None):
    files = sorted((d / "lrlm").glob("*/test.json"))
    return LongText(files, limit=limit) if files else None


def _tool(d: Path, limit: int | None):
    test, corpus = d / "tool/toolbench/test.json", d / "tool/toolbench/corpus.json"
    return RetrievalOnly(test, corpus, "tool", "tool", "ndcg@5", limit=limit) if _if_present(test, corpus) else None


def _convsearch(d: Path, limit: int | None):
    test, corpus = d / "convsearch/qrecc/test.concat.json", d / "convsearch/qrecc/corpus.json"
    if not _if_present(test, corpus):
        return None
    return RetrievalOnly(test, corpus, "convsearch", "convsearch", "ndcg@3", limit=limit)


EVALUATORS: dict[str, tuple[str, Builder]] = {
    "mmlu": ("qa", _mmlu),
    "popqa": ("qa", _popqa),
    "icl": ("icl", _icl),
    "msc": ("chat", _msc),
    "lrlm": ("lrlm", _lrlm),
    "tool": ("tool", _tool),
    "convsearch": ("convsearch", _convsearch),
}


def build_evaluators(
    data_dir: str | Path,
    tasks: list[str],
    limit: int | None = None,
    options: dict[str, dict[str, Any]] | None = None,
) -> list[Any]:
    """The evaluators of the requested tasks whose files exist; an error if a task has none.

    ``options`` sets evaluator fields by evaluator name, e.g. ``{"lrlm": {"window_chunks": 8}}``.
    """
    options = options or {}
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive number of examples, got {limit!r}")
    unknown = sorted(set(options) - set(EVALUATORS))
    if unknown:
        raise ValueError(f"options for unknown evaluator {unknown[0]!r}; known: {', '.join(EVALUATORS)}")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: no such data folder")
    known = sorted({t for t, _ in EVALUATORS.values()})
    out = []
    for task in tasks:
        if task not in known:
            raise ValueError(f"unknown task {task!r}; known: {', '.join(known)}")
        found = [b(data_dir, limit) for t, b in EVALUATORS.values() if t == task]
        found = [dataclasses.replace(e, **options.get(e.name, {})) for e in found if e is not None]
        if not found:
            raise FileNotFoundError(f"{data_dir}: no evaluation files for task {task!r} (see the layout in --help)")
        out += found
    return out


VERSIONS_FILE = "versions.json"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def run_grid(
    evaluators: list[Any],
    retriever_specs: list[str],
    out_dir: str | Path,
    *,
    lm_name: str | None = None,
    lm_dtype: str | None = None,
    device: str = "auto",
    show_progress: bool = True,
    versions: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run every cell not already done, then write and return the leaderboard.

    ``versions`` maps a retriever spec to what its results depend on beyond the spec itself (the
    settings a model folder was trained from): a spec's cells made under another version are run again.
    """
    for spec in retriever_specs:  # a typo must fail now, not after hours of earlier cells
        check_spec(spec)
    out = Path(out_dir)
    cells_dir = out / "cells"
    if versions:
        known = json.loads((out / VERSIONS_FILE).read_text(encoding="utf-8")) if (out / VERSIONS_FILE).is_file() else {}
        for spec, version in versions.items():
            if known.get(spec) != version:
                for evaluator in evaluators:
                    (cells_dir / _cell_name(evaluator, spec)).unlink(missing_ok=True)
        write_json(out / VERSIONS_FILE, {**known, **versions})
    lm, lm_key = None, None
    if any(_needs_lm(e) for e in evaluators):
        from llm_embedder.models.lm import CausalLM

        lm = CausalLM.from_pretrained(lm_name, device=device, dtype=lm_dtype)
        lm_key = {"weights": weights_digest(lm.model), "dtype": str(next(lm.model.parameters()).dtype)}
    data_keys = {id(e): _evaluator_key(e) for e in evaluators}
    bar = tqdm(total=len(evaluators) * len(retriever_specs), desc="eval", unit="cell", disable=not show_progress)
    for spec in retriever_specs:
        retriever = make_retriever(spec, cache_dir=out / "cache", device=device)  # one model in memory
        for evaluator in evaluators:
            bar.set_postfix_str(f"{evaluator.name} / {spec}")
            key = settings_digest(
                {
                    "data": data_keys[id(evaluator)],
                    "retriever": getattr(retriever, "fingerprint", spec),
                    "lm": lm_key if _needs_lm(evaluator) else None,
                }
            )
            file = cells_dir / _cell_name(evaluator, spec)
            if _cell_key(file) != key:
                _run_cell(evaluator, spec, retriever, lm if _needs_lm(evaluator) else None, key, out)
            bar.update(1)
    bar.close()
    return write_leaderboard(out, [e.name for e in evaluators], retriever_specs, lm_name)


def _needs_lm(evaluator: Any) -> bool:
    return getattr(evaluator, "task", None) not in ("tool", "convsearch")


def _evaluator_key(evaluator: Any) -> dict[str, Any]:
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


def _cell_key(file: Path) -> str | None:
    try:
        return json.loads(file.read_text(encoding="utf-8")).get("key")
    except (OSError, ValueError, AttributeError):
        return None


def _run_cell(evaluator: Any, spec: str, retriever: Any, lm: Any, key: str, out: Path) -> None:
    started = time.perf_counter()
    try:
        result: EvalResult | None = evaluator.run(lm, retriever, show_progress=False)
    except NotApplicable as exc:
        result, note = None, str(exc)
    cell: dict[str, Any] = {"evaluator": evaluator.name, "task": evaluator.task, "retriever": spec, "key": key}
    if result is None:
        cell["not_applicable"] = note
    else:
        cell.update(
            metrics=result.metrics,
            main_metric=result.main_metric,
            lower_is_better=result.lower_is_better,
            seconds=round(time.perf_counter() - started, 1),
        )
        write_jsonl(out / "details" / _cell_name(evaluator, spec).replace(".json", ".jsonl"), result.details)
    write_json(out / "cells" / _cell_name(evaluator, spec), cell)


def _cell_name(evaluator: Any, spec: str) -> str:
    return f"{evaluator.name}__{_slug(spec)}.json"


def write_leaderboard(out: Path, evaluator_names: list[str], specs: list[str], lm_name: str | None) -> dict[str, Any]:
    """Markdown, JSON and a PNG chart (one panel per evaluator) from the cell files."""
    cells = {}
    for spec in specs:
        for name in evaluator_names:
            file = out / "cells" / f"{name}__{_slug(spec)}.json"
            if file.exists():
                cells[(name, spec)] = json.loads(file.read_text(encoding="utf-8"))
    columns = []
    for name in evaluator_names:
        done = [c for (n, _), c in cells.items() if n == name and "metrics" in c]
        if done:
            columns.append((name, done[0]["main_metric"], done[0]["lower_is_better"]))
    table = {
        spec: {
            name: cells[(name, spec)]["metrics"][metric] if "metrics" in cells.get((name, spec), {}) else None
            for name, metric, _ in columns
        }
        for spec in specs
    }
    board = {
        "lm": lm_name,
        "columns": [{"evaluator": n, "metric": m, "lower_is_better": low} for n, m, low in columns],
        "rows": table,
    }
    write_json(out / "leaderboard.json", board)
    header = " | ".join(f"{n} {m} {'↓' if low else '↑'}" for n, m, low in columns)
    lines = [f"| retriever | {header} |", "|---" * (len(columns) + 1) + "|"]
    for spec in specs:
        values = " | ".join("–" if table[spec][n] is None else f"{table[spec][n]:.4f}" for n, _, _ in columns)
        lines.append(f"| {split_label(spec)[0]} | {values} |")
    (out / "leaderboard.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _chart(out / "leaderboard.png", columns, table, specs)
    return board


def _chart(path: Path, columns: list[tuple[str, str, bool]], table: dict, specs: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not columns:
        return
    fig, axes = plt.subplots(1, len(columns), figsize=(3.2 * len(columns), 3.4), squeeze=False)
    for ax, (name, metric, low) in zip(axes[0], columns, strict=True):
        values = [table[s][name] for s in specs]
        ax.bar(range(len(specs)), [0 if v is None else v for v in values], color="#4c72b0")
        ax.set_xticks(range(len(specs)), [split_label(s)[0] for s in specs], rotation=45, ha="right", fontsize=7)
        ax.set_title(f"{name}\n{metric} ({'lower' if low else 'higher'} is better)", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
