"""The evaluation grid: every (evaluator, retriever) cell, cached so a killed run resumes, then a leaderboard.

Data follow the released LLM-Embedder evaluation layout under one folder (only the files present
are evaluated):

    qa/mmlu/test.json + qa/msmarco/corpus.json        qa/popqa/test.json + qa/nq/corpus.json
                                                      (+ qa/popqa/demos.json: few-shot demonstrations)
    (qa-retrieval: qa/retrieval/test.json + corpus.json, else the popqa questions whose records carry
    ``pos_index``, ranked over qa/nq/corpus.json)
    icl/icl/test.json + icl/icl/corpus.json           chat/msc/test.json
    lrlm/<name>/test.json (any number of names)       tool/toolbench/test.json + corpus.json
    convsearch/qrecc/test.concat.json + corpus.json

Outputs under ``out``: ``cells/<evaluator>__<retriever>.json`` (metrics, and the key of what they
were made from: data files' bytes, limit and evaluator options, the LM's weights, the retriever's
model fingerprint, the evaluation code and library versions; a cell is run again unless its key
matches), ``details/...jsonl`` (per example),
``cache/`` (corpus embeddings per model and task), and ``leaderboard.{md,json,png}``.

Each number comes with a 95% bootstrap interval over the test examples (over whole clusters, e.g.
articles, where the eval records carry a ``cluster``), and each row is compared with a reference row
(``--reference``, default ``base``) by a paired test on the same examples: ▲ / ▼ mark a row
significantly better / worse (lower perplexity is better) after Holm's correction over all the
table's comparisons, = not significantly different (see ``stats.py``); the markdown also gives each
paired difference with its interval.  ``llm-embedder eval compare RESULTS_DIR --rows A,B`` prints
the paired comparison of any two rows.
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

from llm_embedder.errors import InputError
from llm_embedder.evaluation import stats
from llm_embedder.evaluation.base import EvalResult
from llm_embedder.evaluation.icl import InContextLearning
from llm_embedder.evaluation.memory import Conversation, LongText
from llm_embedder.evaluation.qa import MultipleChoiceQA, OpenQA
from llm_embedder.evaluation.retrieval_only import RetrievalOnly
from llm_embedder.evaluation.retrievers import NotApplicable, check_spec, make_retriever, split_label
from llm_embedder.fileio import atomic_path, iter_jsonl, read_json, read_jsonl, write_json, write_jsonl
from llm_embedder.fingerprint import code_digest, file_digest, files_digest, settings_digest, weights_digest

# evaluator name -> (task, builder from the data folder; None when its files are absent)
Builder = Callable[[Path, int | None], Any]


def _if_present(*paths: Path) -> bool:
    return all(p.is_file() for p in paths)


def _mmlu(d: Path, limit: int | None):
    test, corpus = d / "qa/mmlu/test.json", d / "qa/msmarco/corpus.json"
    return MultipleChoiceQA(test, corpus, limit=limit) if _if_present(test, corpus) else None


def _popqa(d: Path, limit: int | None):
    """Few-shot demonstrations from ``qa/popqa/demos.json`` where present (the demo data: training
    questions), else from the other test questions (the released PopQA file)."""
    test, corpus, demos = d / "qa/popqa/test.json", d / "qa/nq/corpus.json", d / "qa/popqa/demos.json"
    if not _if_present(test, corpus):
        return None
    return OpenQA(test, corpus, limit=limit, demos_file=demos if demos.is_file() else None)


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


def _first_record_has(path: Path, field: str) -> bool:
    records = iter_jsonl(path)
    try:
        return field in next(records, (0, {}))[1]
    finally:
        records.close()


def _qa_retrieval(d: Path, limit: int | None):
    """Retrieval for the qa questions: ``qa/retrieval/test.json`` + ``corpus.json`` where present (the
    demo data: the positives are passages with the answer other than the one a question was cut
    from, which is in no corpus row); else PopQA's questions against their source passages
    (``pos_index`` into the qa corpus) where the eval file labels them (the released PopQA file does not)."""
    test, corpus = d / "qa/retrieval/test.json", d / "qa/retrieval/corpus.json"
    if not _if_present(test, corpus):
        test, corpus = d / "qa/popqa/test.json", d / "qa/nq/corpus.json"
    if not (_if_present(test, corpus) and _first_record_has(test, "pos_index")):
        return None
    return RetrievalOnly(test, corpus, "qa-retrieval", "qa", "ndcg@10", key_template="{title} {text}", limit=limit)


def _convsearch(d: Path, limit: int | None):
    test, corpus = d / "convsearch/qrecc/test.concat.json", d / "convsearch/qrecc/corpus.json"
    if not _if_present(test, corpus):
        return None
    return RetrievalOnly(test, corpus, "convsearch", "convsearch", "ndcg@3", limit=limit)


EVALUATORS: dict[str, tuple[str, Builder]] = {
    "mmlu": ("qa", _mmlu),
    "popqa": ("qa", _popqa),
    "qa-retrieval": ("qa", _qa_retrieval),
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
# The code a cell's numbers come from: a fixed evaluator, LM wrapper or retriever runs its cells again.
EVALUATION_CODE = ("llm_embedder.evaluation", "llm_embedder.models", "llm_embedder.retrieval", "llm_embedder.tasks")


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
    reference: str | None = None,
    encoder_dtype: str | None = None,
) -> dict[str, Any]:
    """Run every cell not already done, then write and return the leaderboard.

    ``encoder_dtype`` is the dense retrievers' (default float32 on CPU); cells are cached per spec, so
    one results folder should keep one dtype.
    ``reference`` names the row the others are tested against (default: ``base`` if present).
    ``versions`` maps a retriever spec to what its results depend on beyond the spec itself (the
    settings a model folder was trained from): a spec's cells made under another version are run again.
    """
    for spec in retriever_specs:  # a typo must fail now, not after hours of earlier cells
        check_spec(spec)
    reference_row(retriever_specs, reference)
    out = Path(out_dir)
    cells_dir = out / "cells"
    if versions:
        known = read_json(out / VERSIONS_FILE) if (out / VERSIONS_FILE).is_file() else {}
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
    code = code_digest(*EVALUATION_CODE)
    bar = tqdm(total=len(evaluators) * len(retriever_specs), desc="eval", unit="cell", disable=not show_progress)
    for spec in retriever_specs:
        # one model in memory at a time
        retriever = make_retriever(spec, cache_dir=out / "cache", device=device, dtype=encoder_dtype)
        for evaluator in evaluators:
            bar.set_postfix_str(f"{evaluator.name} / {spec}")
            key = settings_digest(
                {
                    "data": data_keys[id(evaluator)],
                    "retriever": getattr(retriever, "fingerprint", spec),
                    "lm": lm_key if _needs_lm(evaluator) else None,
                    "code": code,
                }
            )
            file = cells_dir / _cell_name(evaluator, spec)
            if _cell_key(file) != key:
                _run_cell(evaluator, spec, retriever, lm if _needs_lm(evaluator) else None, key, out)
            bar.update(1)
    bar.close()
    return write_leaderboard(out, [e.name for e in evaluators], retriever_specs, lm_name, reference)


def _needs_lm(evaluator: Any) -> bool:
    return getattr(evaluator, "needs_lm", True)


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


def cell_stem(evaluator_name: str, spec: str) -> str:
    """A cell's file name (less ``.json``): the spec as it is when it is already a safe name, else its
    slug plus a digest of the spec itself (``dense:r/mx/a`` and ``dense:r/mx-a`` flatten alike)."""
    slug = _slug(spec)
    return f"{evaluator_name}__{slug}" if slug == spec else f"{evaluator_name}__{slug[:60]}~{settings_digest(spec, 8)}"


def _cell_name(evaluator: Any, spec: str) -> str:
    return f"{cell_stem(evaluator.name, spec)}.json"


def write_leaderboard(
    out: Path, evaluator_names: list[str], specs: list[str], lm_name: str | None, reference: str | None = None
) -> dict[str, Any]:
    """Markdown, JSON and a PNG chart (one panel per evaluator) from the cell files, each number with
    its bootstrap interval and its paired test against the ``reference`` row (see :func:`reference_row`)."""
    cells, files = {}, {}
    for spec in specs:
        for name in evaluator_names:
            file = out / "cells" / f"{cell_stem(name, spec)}.json"
            if file.exists():
                cells[(name, spec)] = read_json(file, "cell file")
                files[(name, spec)] = file
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
    samples = {key: _cell_sample(files[key], cell) for key, cell in cells.items() if "metrics" in cell}
    ref = reference_row(specs, reference)
    confidence = {
        spec: {
            name: _confidence(samples.get((name, spec)), None if spec == ref else samples.get((name, ref)), low)
            for name, _, low in columns
        }
        for spec in specs
    }
    tests = [
        (versus, low)
        for spec in specs
        for name, _, low in columns
        if (versus := (confidence[spec][name] or {}).get("vs_reference"))
    ]
    _correct(tests)
    board = {
        "lm": lm_name,
        "columns": [{"evaluator": n, "metric": m, "lower_is_better": low} for n, m, low in columns],
        "rows": table,
        "reference": ref,
        "statistics": {**_STATISTICS, "comparisons": len(tests)},
        "confidence": confidence,
    }
    write_json(out / "leaderboard.json", board)
    header = " | ".join(f"{n} {m} {'↓' if low else '↑'}" for n, m, low in columns)
    lines = [f"| retriever | {header} |", "|---" * (len(columns) + 1) + "|"]
    for spec in specs:
        values = " | ".join(_markdown_cell(table[spec][n], confidence[spec][n]) for n, _, _ in columns)
        lines.append(f"| {split_label(spec)[0]} | {values} |")
    if tests:
        lines += ["", *_difference_table(columns, specs, ref, confidence)]
    lines += ["", _legend(ref, len(tests), _units(columns, specs, confidence))]
    with atomic_path(out / "leaderboard.md") as tmp:  # a reader never sees half a table
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _chart(out / "leaderboard.png", columns, table, confidence, specs)
    return board


# ----------------------------------------------------------------------------- confidence
_STATISTICS = {
    "level": stats.LEVEL,
    "alpha": stats.ALPHA,
    "resamples": stats.RESAMPLES,
    "seed": stats.SEED,
    "interval": "percentile bootstrap over the cell's units (its `unit`: examples, or whole clusters such as "
    "articles), a macro average over the groups each resample holds",
    "test": "paired permutation test (swaps of each unit's two results), two-sided",
    "correction": "Holm over the table's comparisons with the reference (`comparisons`): `p_value` is raw, "
    "`p_holm` corrected, and the verdicts (marks) come from `p_holm`",
}


def find_row(specs: list[str], name: str, what: str = "row") -> str:
    """The spec of the row labelled ``name`` (or given as that very spec)."""
    for spec in specs:
        if name in (spec, split_label(spec)[0]):
            return spec
    raise ValueError(f"{what} {name!r} is not on the leaderboard; rows: {', '.join(split_label(s)[0] for s in specs)}")


def reference_row(specs: list[str], reference: str | None) -> str | None:
    """The spec of the row every other row is compared with: the one named ``reference``; by
    default the row labelled ``base`` if there is one."""
    if reference is not None:
        return find_row(specs, reference, "reference row")
    return next((s for s in specs if "base" in (s, split_label(s)[0])), None)


def _cell_sample(cell_file: Path, cell: dict[str, Any]) -> stats.Sample | None:
    """The per-example results of a finished cell, read from ``details/``; None when absent or when
    they do not reproduce the cell's number (details of an older version)."""
    details = cell_file.parent.parent / "details" / f"{cell_file.stem}.jsonl"
    if not details.is_file():
        return None
    metric = cell["main_metric"]
    return stats.sample_from_details(metric, read_jsonl(details), expected=cell["metrics"][metric])


def _compare(a: stats.Sample, b: stats.Sample, lower_is_better: bool) -> dict[str, Any] | None:
    try:
        result = stats.paired_test(a, b)
    except ValueError:  # not the same examples: no paired test
        return None
    return {
        "difference": result.difference,
        "interval": list(result.interval),
        "p_value": result.p_value,
        "exact": result.exact,
        "verdict": result.verdict(lower_is_better),
    }


def _confidence(
    sample: stats.Sample | None, reference: stats.Sample | None, lower_is_better: bool
) -> dict[str, Any] | None:
    if sample is None:
        return None
    out: dict[str, Any] = {"n": sample.n, "unit": sample.unit, "units": sample.units}
    out["interval"] = list(stats.bootstrap_interval(sample))
    if reference is not None:
        out["vs_reference"] = _compare(sample, reference, lower_is_better)
    return out


def _correct(tests: list[tuple[dict[str, Any], bool]]) -> None:
    """Holm's correction over one table's comparisons ``(comparison, lower_is_better)``: each gets
    ``p_holm`` and its verdict from it (the raw ``p_value`` stays)."""
    for (versus, low), p in zip(tests, stats.holm([v["p_value"] for v, _ in tests]), strict=True):
        versus["p_holm"] = p
        versus["verdict"] = stats.verdict_of(versus["difference"], p, low)


def _difference_table(
    columns: list[tuple[str, str, bool]], specs: list[str], ref: str | None, confidence: dict
) -> list[str]:
    """Markdown lines: each row's paired difference from the reference per column, with its interval
    and Holm-corrected p."""
    lines = [
        f"Difference from `{split_label(ref)[0]}` [{stats.LEVEL:.0%} paired bootstrap interval], Holm-corrected p:",
        "",
        "| retriever | " + " | ".join(name for name, _, _ in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for spec in specs:
        if spec == ref:
            continue
        cells = []
        for name, _, _ in columns:
            versus = (confidence[spec][name] or {}).get("vs_reference")
            if not versus:
                cells.append("–")
                continue
            d = _decimals(max(abs(versus["difference"]), *map(abs, versus["interval"])))
            low, high = versus["interval"]
            cells.append(f"{versus['difference']:+.{d}f} [{low:+.{d}f}, {high:+.{d}f}] p={versus['p_holm']:.3f}")
        lines.append(f"| {split_label(spec)[0]} | " + " | ".join(cells) + " |")
    return lines


def _units(columns: list[tuple[str, str, bool]], specs: list[str], confidence: dict) -> dict[str, str]:
    """Column -> its resampled unit, where that is not the example (``article (22)``)."""
    out = {}
    for name, _, _ in columns:
        cell = next((confidence[s][name] for s in specs if confidence[s][name]), None)
        if cell and cell.get("unit", "example") != "example":
            out[name] = f"{cell['unit']} ({cell['units']})"
    return out


def _decimals(value: float) -> int:
    return 3 if abs(value) < 10 else 2 if abs(value) < 1000 else 1


def _markdown_cell(value: float | None, confidence: dict[str, Any] | None) -> str:
    """``0.524 [0.471, 0.580] ▲``; the bare number when there are no per-example results."""
    if value is None:
        return "–"
    d = _decimals(value)
    if confidence is None:
        return f"{value:.{d}f}"
    low, high = confidence["interval"]
    text = f"{value:.{d}f} [{low:.{d}f}, {high:.{d}f}]"
    versus = confidence.get("vs_reference")
    return f"{text} {stats.MARKS[versus['verdict']]}" if versus else text


def _legend(reference: str | None, comparisons: int = 0, units: dict[str, str] | None = None) -> str:
    text = (
        f"[low, high]: {stats.LEVEL:.0%} bootstrap interval over the test examples "
        f"({stats.RESAMPLES:,} resamples, seed {stats.SEED})"
    )
    if units:
        text += "; resampling whole clusters in " + ", ".join(f"{n}: {u}" for n, u in units.items())
    text += "."
    if reference is not None:
        text += (
            f" ▲ / ▼: significantly better / worse than `{split_label(reference)[0]}` (paired permutation test "
            f"over the same units, p < {stats.ALPHA} after Holm's correction over the table's {comparisons} "
            "comparisons; raw p in leaderboard.json); =: not significantly different."
        )
    return text


# ----------------------------------------------------------------------------- compare two rows
def compare_rows(out_dir: str | Path, row_a: str, row_b: str) -> list[dict[str, Any]]:
    """Row A against row B of a results folder, for every column both have: their numbers, the
    difference A - B with its paired bootstrap interval, the p-value and the verdict for A."""
    out = Path(out_dir)
    files = sorted((out / "cells").glob("*.json")) if (out / "cells").is_dir() else []
    if not files:
        raise FileNotFoundError(f"{out}: not an evaluation results folder (no cells/*.json)")
    cells = {}
    for file in files:
        try:
            cell = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputError(file, None, None, "not a JSON cell file") from None
        for field in ("evaluator", "retriever"):
            if not isinstance(cell.get(field), str):
                raise InputError(file, None, field, "missing: not a cell file of `llm-embedder eval`")
        cells[(cell["evaluator"], cell["retriever"])] = (file, cell)
    specs = list(dict.fromkeys(spec for _, spec in cells))
    a, b = (find_row(specs, row) for row in (row_a, row_b))
    if a == b:
        raise ValueError(f"--rows names the same row twice ({row_a!r})")
    order = {name: i for i, name in enumerate(EVALUATORS)}
    names = sorted({name for name, _ in cells}, key=lambda n: (order.get(n, len(order)), n))
    rows = []
    for name in names:
        (file_a, cell_a), (file_b, cell_b) = cells.get((name, a), (None, {})), cells.get((name, b), (None, {}))
        if "metrics" not in cell_a or "metrics" not in cell_b:
            continue
        metric, low = cell_a["main_metric"], cell_a["lower_is_better"]
        row = {"evaluator": name, "metric": metric, "lower_is_better": low}
        row.update(a=cell_a["metrics"][metric], b=cell_b["metrics"][metric])
        sample_a, sample_b = _cell_sample(file_a, cell_a), _cell_sample(file_b, cell_b)
        row["comparison"] = _compare(sample_a, sample_b, low) if sample_a and sample_b else None
        if sample_a:
            row["unit"] = sample_a.unit
        rows.append(row)
    if not rows:
        raise ValueError(f"rows {row_a!r} and {row_b!r} share no finished column in {out}")
    _correct([(r["comparison"], r["lower_is_better"]) for r in rows if r["comparison"]])
    return rows


def format_comparison(rows: list[dict[str, Any]], row_a: str, row_b: str) -> str:
    """The table ``llm-embedder eval compare`` prints."""
    head = ["column", row_a, row_b, "difference", f"{stats.LEVEL:.0%} interval", "p", "Holm p", "verdict"]
    body = []
    for r in rows:
        d = _decimals(max(abs(r["a"]), abs(r["b"])))
        line = [f"{r['evaluator']} {r['metric']} {'↓' if r['lower_is_better'] else '↑'}", f"{r['a']:.{d}f}"]
        line.append(f"{r['b']:.{d}f}")
        c = r["comparison"]
        if c is None:
            line += ["", "", "", "", "no paired per-example results"]
        else:
            low, high = c["interval"]
            mark = stats.MARKS[c["verdict"]]
            line += [f"{c['difference']:+.{d}f}", f"[{low:+.{d}f}, {high:+.{d}f}]", f"{c['p_value']:.4f}"]
            line.append(f"{c['p_holm']:.4f}")
            line.append(f"{mark} {c['verdict']}" if c["verdict"] != "same" else f"{mark} not significant")
        body.append(line)
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    text = ["  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip() for line in [head, *body]]
    text.append(
        f"{row_a} - {row_b}: paired bootstrap interval ({stats.RESAMPLES:,} resamples, seed {stats.SEED}); "
        f"p: paired permutation test; Holm p: corrected over the {sum(bool(r['comparison']) for r in rows)} "
        f"columns compared; verdict for {row_a} from Holm p at alpha {stats.ALPHA}"
    )
    return "\n".join(text)


_COLORS = {"better": "#55a868", "worse": "#c44e52", "same": "#4c72b0"}


def _chart(
    path: Path, columns: list[tuple[str, str, bool]], table: dict, confidence: dict, specs: list[str]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not columns:
        return
    fig, axes = plt.subplots(1, len(columns), figsize=(3.2 * len(columns), 3.6), squeeze=False)
    for ax, (name, metric, low) in zip(axes[0], columns, strict=True):
        values = [0.0 if table[s][name] is None else table[s][name] for s in specs]
        cis = [confidence[s][name] for s in specs]
        # A percentile interval need not hold the number itself (small or skewed samples): clip the bars.
        below = [max(0.0, v - c["interval"][0]) if c else 0.0 for v, c in zip(values, cis, strict=True)]
        above = [max(0.0, c["interval"][1] - v) if c else 0.0 for v, c in zip(values, cis, strict=True)]
        verdicts = [((c or {}).get("vs_reference") or {}).get("verdict") for c in cis]  # None: reference, no test
        colors = [_COLORS[v or "same"] for v in verdicts]
        ax.bar(range(len(specs)), values, color=colors, yerr=[below, above], capsize=2, ecolor="#333333")
        for x, (v, up, verdict) in enumerate(zip(values, above, verdicts, strict=True)):
            if verdict:
                ax.annotate(stats.MARKS[verdict], (x, v + up), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(specs)), [split_label(s)[0] for s in specs], rotation=45, ha="right", fontsize=7)
        ax.set_title(f"{name}\n{metric} ({'lower' if low else 'higher'} is better)", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.margins(y=0.12)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
