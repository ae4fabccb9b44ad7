"""The evaluation grid on a tiny data folder in the released layout: leaderboard files, resume after
a deleted cell or a killed run, and the ``llm-embedder eval`` command end to end."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from llm_embedder.cli import main as cli_main
from llm_embedder.evaluation import grid as grid_module
from llm_embedder.evaluation import registry, stats
from llm_embedder.evaluation.base import EvalResult
from llm_embedder.evaluation.cells import cell_stem
from llm_embedder.evaluation.grid import run_grid
from llm_embedder.evaluation.icl import InContextLearning
from llm_embedder.evaluation.leaderboard import write_leaderboard
from llm_embedder.evaluation.memory import LongText
from llm_embedder.evaluation.registry import build_evaluators
from llm_embedder.evaluation.retrievers import split_label
from llm_embedder.fileio import read_jsonl

TASKS = ["qa", "icl", "chat", "lrlm", "tool", "convsearch"]
COLUMNS = [
    ("mmlu", "accuracy", False),
    ("icl", "score", False),
    ("msc", "perplexity", True),
    ("lrlm", "perplexity", True),
    ("tool", "ndcg@5", False),
    ("convsearch", "ndcg@3", False),
]
NOT_APPLICABLE = {
    ("tool", "none"),
    ("convsearch", "none"),
    ("mmlu", "recency"),
    ("icl", "recency"),
    ("tool", "recency"),
    ("convsearch", "recency"),
}
EXAMPLES = {"mmlu": 2, "icl": 4, "msc": 2, "lrlm": 1, "tool": 3, "convsearch": 3}


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def with_corpus(records: list[dict], negatives: int = 8) -> tuple[list[str], list[dict]]:
    """A corpus of the records' pos + first negatives and eval rows whose pos_index points into it."""
    texts = list(dict.fromkeys(t for r in records for t in r["pos"] + r["neg"][:negatives]))
    return texts, [{"query": r["query"], "pos_index": [texts.index(t) for t in r["pos"]]} for r in records]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, toy_records) -> Path:
    d = tmp_path_factory.mktemp("eval-data")
    texts, rows = with_corpus(toy_records("tool")[:3])
    write_jsonl(d / "tool/toolbench/corpus.json", [{"text": t} for t in texts])
    write_jsonl(d / "tool/toolbench/test.json", rows)
    texts, rows = with_corpus(toy_records("convsearch")[:3])
    write_jsonl(d / "convsearch/qrecc/corpus.json", [{"text": t} for t in texts])
    write_jsonl(d / "convsearch/qrecc/test.concat.json", rows)
    write_jsonl(d / "chat/msc/test.json", toy_records("chat")[:2])
    lrlm = toy_records("lrlm")[0]
    write_jsonl(d / "lrlm/x/test.json", [{"text": " ".join([*lrlm["neg"][:6], lrlm["query"], *lrlm["answers"]])}])
    qa = toy_records("qa")[:2]
    write_jsonl(d / "qa/msmarco/corpus.json", [{"title": "", "text": t} for r in qa for t in r["pos"] + r["neg"][:5]])
    write_jsonl(
        d / "qa/mmlu/test.json",
        [
            {"query": qa[0]["query"], "choices": ["war", "peace", "art", "music"], "answer": 0, "subject": "us_war"},
            {"query": "What is 3 + 4?", "choices": ["5", "6", "7", "8"], "answer": "C", "subject": "math"},
        ],
    )
    icl = toy_records("icl")[:2]
    demos = [t for r in icl for t in r["pos"] + r["neg"][:5]]
    write_jsonl(d / "icl/icl/corpus.json", [{"contents": t, "task_name": "paws"} for t in demos])
    write_jsonl(
        d / "icl/icl/test.json",
        [
            {"query": icl[0]["query"], "answers": ["1"], "options": ["No", "Yes"], "task_name": "paws"},
            {"query": icl[1]["query"], "answers": ["No"], "options": ["No", "Yes"], "task_name": "paws"},
            {"query": "Question: what is the capital of France?\nAnswer:", "answers": ["Paris"], "task_name": "nq"},
            {"query": "Question: who wrote Hamlet?\nAnswer:", "answers": ["Shakespeare"], "task_name": "nq"},
        ],
    )
    return d


def small_lrlm(d: Path, limit: int | None):
    """The lrlm builder with chunk sizes that fit the tiny LM's 512-token window."""
    files = sorted((d / "lrlm").glob("*/test.json"))
    return LongText(files, chunk_size=16, window_chunks=8, target_chunks=2, top_k=2, max_chars=2500, limit=limit)


def small_icl(d: Path, limit: int | None):
    """The icl builder with fewer demos and short generations (each greedy step costs a forward)."""
    test, corpus = d / "icl/icl/test.json", d / "icl/icl/corpus.json"
    return InContextLearning(test, corpus, top_k=3, max_new_tokens=4, limit=limit)


@pytest.fixture(scope="module")
def grid(tiny_encoder_dir):
    """Patches the lrlm and icl builders for the module; yields the retriever specs."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry.EVALUATORS, "lrlm", ("lrlm", small_lrlm))
        mp.setitem(registry.EVALUATORS, "icl", ("icl", small_icl))
        yield ["none", "bm25", f"dense:{tiny_encoder_dir}", "recency"]


@pytest.fixture(scope="module")
def full_run(grid, data_dir, eval_lm_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("grid-out")
    board = run_grid(build_evaluators(data_dir, TASKS), grid, out, lm_name=str(eval_lm_dir), show_progress=False)
    return out, board


def count_runs(evaluators) -> list[tuple[str, str]]:
    """Record (evaluator, retriever) of every ``run`` call."""
    calls = []

    def wrap(evaluator):
        original = evaluator.run

        def run(lm, retriever, **kwargs):
            calls.append((evaluator.name, retriever.name))
            return original(lm, retriever, **kwargs)

        return run

    for e in evaluators:
        e.run = wrap(e)
    return calls


def short(spec: str) -> str:
    return "dense" if spec.startswith("dense:") else spec


# ---------------------------------------------------------------------------- the grid
def test_grid_writes_leaderboard_md_json_png(full_run, grid):
    out, board = full_run
    saved = json.loads((out / "leaderboard.json").read_text(encoding="utf-8"))
    assert saved == board
    assert [(c["evaluator"], c["metric"], c["lower_is_better"]) for c in board["columns"]] == COLUMNS
    assert list(board["rows"]) == grid
    for spec in grid:
        for name, _, _ in COLUMNS:
            value = board["rows"][spec][name]
            if (name, short(spec)) in NOT_APPLICABLE:
                assert value is None, (name, spec)
            else:
                assert isinstance(value, float), (name, spec)
    assert board["rows"]["bm25"]["tool"] > 0 and board["rows"]["bm25"]["convsearch"] > 0
    assert board["rows"]["none"]["msc"] != board["rows"]["recency"]["msc"]

    lines = (out / "leaderboard.md").read_text(encoding="utf-8").splitlines()
    assert lines[0] == (
        "| retriever | mmlu accuracy ↑ | icl score ↑ | msc perplexity ↓ | lrlm perplexity ↓ | tool ndcg@5 ↑ "
        "| convsearch ndcg@3 ↑ |"
    )
    assert len(lines) == 4 + len(grid) and lines[-2] == ""
    assert lines[-1].startswith("[low, high]: 95% bootstrap interval") and "▲" not in lines[-1]  # no `base` row
    assert board["reference"] is None
    for spec, line in zip(grid, lines[2:-2], strict=True):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == spec
        for (name, _, _), text in zip(COLUMNS, cells[1:], strict=True):
            value, confidence = board["rows"][spec][name], board["confidence"][spec][name]
            if value is None:
                assert text == "–" and confidence is None, (spec, name)
                continue
            d = 3 if value < 10 else 2 if value < 1000 else 1
            low, high = confidence["interval"]
            assert text == f"{value:.{d}f} [{low:.{d}f}, {high:.{d}f}]", (spec, name)
            assert "vs_reference" not in confidence

    png = (out / "leaderboard.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_every_cell_interval_comes_from_its_details(full_run, grid):
    """Each evaluator's details reproduce its number, and the interval is their bootstrap interval."""
    out, board = full_run
    for spec in grid:
        for name, metric, _ in COLUMNS:
            if board["rows"][spec][name] is None:
                continue
            details = read_jsonl(out / "details" / f"{cell_stem(name, spec)}.jsonl")
            sample = stats.sample_from_details(metric, details)
            assert stats.statistic(sample) == pytest.approx(board["rows"][spec][name], rel=1e-9), (spec, name)
            assert board["confidence"][spec][name] == {
                "n": EXAMPLES[name],
                "unit": "example",  # the toy records carry no clusters
                "units": EXAMPLES[name],
                "interval": pytest.approx(list(stats.bootstrap_interval(sample))),
            }


def test_leaderboard_against_a_reference_row(full_run, grid, tmp_path):
    out, board = full_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    (copy / "details" / "icl__none.jsonl").unlink()  # as if made by a version that kept no details
    names = [name for name, _, _ in COLUMNS]
    again = write_leaderboard(copy, names, grid, board["lm"], reference="bm25")
    assert again["rows"] == board["rows"] and again["reference"] == "bm25"
    assert again["statistics"]["resamples"] == stats.RESAMPLES and again["statistics"]["level"] == 0.95
    lines = (copy / "leaderboard.md").read_text(encoding="utf-8").splitlines()
    assert "▲ / ▼: significantly better / worse than `bm25`" in lines[-1] and "Holm" in lines[-1]
    rows = {line.strip("|").split("|")[0].strip(): line for line in lines[2 : lines.index("")]}
    assert list(rows) == [split_label(spec)[0] for spec in grid]
    assert not any(mark in rows["bm25"] for mark in "▲▼=")
    icl_text = rows["none"].strip("|").split("|")[1 + names.index("icl")].strip()
    assert again["confidence"]["none"]["icl"] is None and icl_text == f"{board['rows']['none']['icl']:.3f}"
    compared = 0
    for spec in ("none", grid[2], "recency"):
        for name, metric, low in COLUMNS:
            confidence = again["confidence"][spec][name]
            if confidence is None or again["confidence"]["bm25"][name] is None:
                assert confidence is None or "vs_reference" not in confidence
                continue
            pair = [
                stats.sample_from_details(metric, read_jsonl(copy / "details" / f"{cell_stem(name, s)}.jsonl"))
                for s in (spec, "bm25")
            ]
            expected = stats.paired_test(*pair)
            versus = confidence["vs_reference"]
            assert versus["p_value"] == pytest.approx(expected.p_value) and versus["exact"] == expected.exact
            assert versus["difference"] == pytest.approx(board["rows"][spec][name] - board["rows"]["bm25"][name])
            assert versus["p_holm"] >= versus["p_value"]
            assert versus["verdict"] == stats.verdict_of(expected.difference, versus["p_holm"], low)
            assert stats.MARKS[versus["verdict"]] in rows[split_label(spec)[0]]
            compared += 1
    assert compared == 3 + 6 + 2  # none: no tool/convsearch, no icl details; recency: only msc and lrlm
    assert again["statistics"]["comparisons"] >= compared


def test_unknown_reference_fails_before_any_cell(data_dir, eval_lm_dir, tmp_path):
    evaluators = build_evaluators(data_dir, ["chat"])
    calls = count_runs(evaluators)
    with pytest.raises(ValueError, match="reference row 'base' is not on the leaderboard; rows: none, bm25"):
        run_grid(evaluators, ["none", "bm25"], tmp_path / "out", lm_name=str(eval_lm_dir), reference="base")
    assert calls == [] and not (tmp_path / "out").exists()


def test_grid_cells_details_and_cache(full_run, grid):
    out, _ = full_run
    cells = sorted((out / "cells").glob("*.json"))
    assert len(cells) == len(COLUMNS) * len(grid)
    for file in cells:
        cell = json.loads(file.read_text(encoding="utf-8"))
        key = (cell["evaluator"], short(cell["retriever"]))
        details = out / "details" / file.name.replace(".json", ".jsonl")
        if key in NOT_APPLICABLE:
            assert "not_applicable" in cell and "metrics" not in cell and not details.exists()
        else:
            assert cell["main_metric"] in cell["metrics"] and cell["seconds"] >= 0
            assert len(details.read_text(encoding="utf-8").splitlines()) == EXAMPLES[cell["evaluator"]]
    # One cached corpus embedding per corpus searched densely (chat and lrlm rank their own pools).
    cached = sorted(p.name.split("-")[0] for p in (out / "cache").glob("*.npy"))
    assert cached == ["convsearch", "icl", "qa", "tool"]


def test_resume_runs_only_the_missing_cells(full_run, grid, data_dir, eval_lm_dir, tmp_path):
    out, board = full_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    dense = grid[2]
    (copy / "cells" / "msc__bm25.json").unlink()
    (copy / "cells" / f"{cell_stem('tool', dense)}.json").unlink()
    evaluators = build_evaluators(data_dir, TASKS)
    calls = count_runs(evaluators)
    again = run_grid(evaluators, grid, copy, lm_name=str(eval_lm_dir), show_progress=False)
    assert sorted(calls) == [("msc", "bm25"), ("tool", dense)]
    assert again == board
    # Nothing missing: nothing runs.
    calls.clear()
    run_grid(evaluators, grid, copy, lm_name=str(eval_lm_dir), show_progress=False)
    assert calls == []


def test_changed_evaluation_code_runs_every_cell_again(full_run, grid, data_dir, eval_lm_dir, tmp_path, monkeypatch):
    out, _ = full_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    evaluators = build_evaluators(data_dir, ["chat"])
    calls = count_runs(evaluators)
    run_grid(evaluators, grid, copy, lm_name=str(eval_lm_dir), show_progress=False)
    assert calls == []  # same code: every cell is reused
    # As if an evaluator had been fixed: the digest of the evaluation code is another one.
    monkeypatch.setattr(grid_module, "EVALUATION_CODE", (*grid_module.EVALUATION_CODE, "llm_embedder.errors"))
    run_grid(evaluators, grid, copy, lm_name=str(eval_lm_dir), show_progress=False)
    assert sorted(calls) == sorted(("msc", spec) for spec in grid)


def test_a_specs_version_runs_only_its_cells_again(full_run, grid, data_dir, eval_lm_dir, tmp_path):
    """A model folder trained again under the same path: its version (part of its cells' keys) decides."""
    out, _ = full_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    evaluators = build_evaluators(data_dir, ["chat"])
    calls = count_runs(evaluators)
    run_grid(evaluators, grid, copy, lm_name=str(eval_lm_dir), show_progress=False, versions={"bm25": "v1"})
    assert calls == [("msc", "bm25")]  # a version where there was none is another key
    calls.clear()
    run_grid(evaluators, grid, copy, lm_name=str(eval_lm_dir), show_progress=False, versions={"bm25": "v1"})
    assert calls == []
    run_grid(evaluators, grid, copy, lm_name=str(eval_lm_dir), show_progress=False, versions={"bm25": "v2"})
    assert calls == [("msc", "bm25")]
    assert {p.name for p in copy.iterdir()} <= set(grid_module.GRID_MEMBERS)


def test_killed_run_keeps_finished_cells_and_rerun_finishes(full_run, grid, data_dir, eval_lm_dir, tmp_path):
    out, board = full_run
    specs, tasks = ["none", "bm25"], ["chat", "lrlm", "tool"]
    evaluators = build_evaluators(data_dir, tasks)
    msc = evaluators[0]
    original = msc.run

    def killed(lm, retriever, **kwargs):
        if retriever.name == "bm25":
            raise KeyboardInterrupt  # as if the job were stopped inside this cell
        return original(lm, retriever, **kwargs)

    msc.run = killed
    target = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_grid(evaluators, specs, target, lm_name=str(eval_lm_dir), show_progress=False)
    done = sorted(p.name for p in (target / "cells").glob("*.json"))
    assert done == ["lrlm__none.json", "msc__none.json", "tool__none.json"]
    assert not (target / "leaderboard.md").exists()
    assert not list((target / "cells").glob(".*"))  # no half-written file left behind

    evaluators = build_evaluators(data_dir, tasks)
    calls = count_runs(evaluators)
    resumed = run_grid(evaluators, specs, target, lm_name=str(eval_lm_dir), show_progress=False)
    assert sorted(calls) == [("lrlm", "bm25"), ("msc", "bm25"), ("tool", "bm25")]
    for spec in specs:
        for name in ("msc", "lrlm", "tool"):
            assert resumed["rows"][spec][name] == board["rows"][spec][name]


@dataclass
class Halves:
    """An evaluator of the user's own (the Evaluator protocol, no LM): every other answer right."""

    limit: int | None = None
    name: str = "halves"
    task: str = "qa"
    needs_lm: ClassVar[bool] = False

    def run(self, lm, retriever, show_progress=False) -> EvalResult:
        assert lm is None  # needs_lm = False: no LM is loaded for it
        details = [{"query": f"q{i}", "correct": float(i % 2)} for i in range(10)]
        return EvalResult({"accuracy": 0.5}, "accuracy", details=details)


def test_details_found_for_any_spec_and_any_evaluator(tmp_path):
    # ".json" inside the row's name once sent its details to a file the leaderboard never read
    spec = "v1.json=bm25"
    board = run_grid([Halves()], [spec], tmp_path / "out", show_progress=False)
    stem = cell_stem("halves", spec)
    assert sorted(p.name for p in (tmp_path / "out/details").iterdir()) == [f"{stem}.jsonl"]
    cell = board["confidence"][spec]["halves"]
    assert board["rows"][spec]["halves"] == 0.5 and cell["n"] == 10
    low, high = cell["interval"]
    assert low < 0.5 < high


# ---------------------------------------------------------------------------- selection and errors
def test_build_evaluators_selects_present_files(data_dir, tmp_path):
    assert [e.name for e in build_evaluators(data_dir, TASKS)] == [name for name, _, _ in COLUMNS]
    assert [e.name for e in build_evaluators(data_dir, ["qa"], limit=1)] == ["mmlu"]  # no popqa files here
    assert build_evaluators(data_dir, ["tool"], limit=1)[0].limit == 1
    with pytest.raises(ValueError, match=r"unknown task 'nope'; known: chat, convsearch, icl, lrlm, qa, tool"):
        build_evaluators(data_dir, ["nope"])
    with pytest.raises(FileNotFoundError, match="no such data folder"):
        build_evaluators(tmp_path / "missing", ["chat"])
    with pytest.raises(FileNotFoundError, match="no evaluation files for task 'chat'"):
        build_evaluators(tmp_path, ["chat"])


def test_unknown_retriever_fails_before_any_cell(data_dir, eval_lm_dir, tmp_path):
    evaluators = build_evaluators(data_dir, ["chat"])
    calls = count_runs(evaluators)
    with pytest.raises(ValueError, match="unknown retriever 'bm52'"):
        run_grid(evaluators, ["none", "bm52"], tmp_path / "out", lm_name=str(eval_lm_dir), show_progress=False)
    assert calls == [] and not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- the command
def test_cli_eval_end_to_end(data_dir, eval_lm_dir, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["eval", "--data", str(data_dir), "--tasks", "chat,tool", "--retriever", "none", "--retriever", "bm25"]
    args += ["--lm", str(eval_lm_dir), "--out", str(out), "--limit", "1", "--device", "cpu", "--reference", "bm25"]
    assert cli_main(args) == 0
    captured = capsys.readouterr()
    assert "| retriever | msc perplexity ↓ | tool ndcg@5 ↑ |" in captured.out
    assert "| none |" in captured.out and "| – |" in captured.out
    assert "] = | – |" in captured.out  # one example: none is level with the reference bm25
    assert "worse than `bm25`" in captured.out
    assert "leaderboard: " in captured.out
    assert "eval" in captured.err and "cell" in captured.err  # the progress bar
    board = json.loads((out / "leaderboard.json").read_text(encoding="utf-8"))
    assert board["rows"]["none"]["tool"] is None and board["rows"]["bm25"]["tool"] is not None
    assert board["reference"] == "bm25" and board["confidence"]["none"]["msc"]["vs_reference"]["p_value"] == 1.0
    assert len((out / "details" / "msc__none.jsonl").read_text().splitlines()) == 1  # --limit
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert cli_main(["-q", *args]) == 0  # a rerun resumes: nothing to do
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")} == stamps


@pytest.mark.parametrize(
    "change,message",
    [
        ({"--data": "missing"}, "no such data folder"),
        ({"--tasks": "chat,nope"}, "unknown task 'nope'"),
        ({"--retriever": "dense:"}, "unknown retriever 'dense:'"),
    ],
    ids=["data", "task", "retriever"],
)
def test_cli_eval_bad_input_exits_2_with_one_line(data_dir, eval_lm_dir, tmp_path, capsys, change, message):
    options = {"--data": str(data_dir), "--tasks": "chat", "--retriever": "none", "--lm": str(eval_lm_dir)}
    options.update({k: str(tmp_path / v) if k == "--data" else v for k, v in change.items()})
    args = ["-q", "eval", "--out", str(tmp_path / "out")] + [x for kv in options.items() for x in kv]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("llm-embedder: error: ") and message in err and err.count("\n") == 1


def test_cli_eval_lm_window_too_small_for_lrlm(data_dir, eval_lm_dir, tmp_path, capsys, monkeypatch):
    """The default lrlm settings need a 4096-token window; the tiny LM has 512."""
    monkeypatch.setitem(registry.EVALUATORS, "lrlm", ("lrlm", registry._lrlm))  # undo the module's small builder
    args = ["-q", "eval", "--data", str(data_dir), "--tasks", "lrlm", "--retriever", "none"]
    assert cli_main([*args, "--lm", str(eval_lm_dir), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "lrlm needs 4096 tokens" in err and "window is 512" in err and err.count("\n") == 1


# ---------------------------------------------------------------------------- qa retrieval column
def test_qa_retrieval_column_without_an_lm(tmp_path):
    """PopQA questions whose records label their source passage get a ``qa-retrieval ndcg@10``
    column; it needs no LLM (a missing LM folder is never loaded)."""
    import math

    from llm_embedder.evaluation.retrievers import BM25Retriever
    from llm_embedder.retrieval.corpus import Corpus

    passages = [
        ("Paris", "Paris is the capital city of France."),
        ("River", "The river bank is full of money."),
        ("Fox", "The quick brown fox jumps over the lazy dog."),
        ("Music", "A singer and a band play a song."),
    ]
    questions = [("What is the capital of France?", 0), ("Who jumps over the dog?", 2), ("Who plays the song?", 3)]
    d = tmp_path / "data"
    write_jsonl(d / "qa/nq/corpus.json", [{"title": t, "text": x} for t, x in passages])
    write_jsonl(d / "qa/popqa/test.json", [{"query": q, "answers": ["x"], "pos_index": [p]} for q, p in questions])
    evaluators = build_evaluators(d, ["qa"])
    assert [e.name for e in evaluators] == ["popqa", "qa-retrieval"]
    retrieval = evaluators[1]
    board = run_grid([retrieval], ["bm25"], tmp_path / "out", lm_name=str(tmp_path / "no-lm"), show_progress=False)
    assert board["columns"] == [{"evaluator": "qa-retrieval", "metric": "ndcg@10", "lower_is_better": False}]
    corpus = Corpus.from_jsonl(d / "qa/nq/corpus.json", "{title} {text}")
    rankings = BM25Retriever().search("qa", [q for q, _ in questions], corpus, 10)
    expected = [1 / math.log2(r.index(p) + 2) if p in r else 0.0 for r, (_, p) in zip(rankings, questions, strict=True)]
    assert board["rows"]["bm25"]["qa-retrieval"] == pytest.approx(sum(expected) / len(expected))
    assert "qa-retrieval ndcg@10 ↑" in (tmp_path / "out" / "leaderboard.md").read_text(encoding="utf-8")
    # The released PopQA file labels no passage: no column.
    write_jsonl(d / "qa/popqa/test.json", [{"query": q, "answers": ["x"]} for q, _ in questions])
    assert [e.name for e in build_evaluators(d, ["qa"])] == ["popqa"]


def test_qa_retrieval_prefers_its_own_files(tmp_path):
    """Where ``qa/retrieval/test.json`` + ``corpus.json`` exist (the demo data), the qa-retrieval column
    ranks over them, not popqa's source passages; without them it falls back to popqa."""
    d = tmp_path / "data"
    write_jsonl(d / "qa/nq/corpus.json", [{"title": "A", "text": "alpha"}])
    write_jsonl(d / "qa/popqa/test.json", [{"query": "alpha", "answers": ["x"], "pos_index": [0]}])
    write_jsonl(d / "qa/retrieval/corpus.json", [{"title": "B", "text": "beta"}, {"title": "C", "text": "gamma"}])
    write_jsonl(d / "qa/retrieval/test.json", [{"query": "gamma", "answers": ["x"], "pos_index": [1]}])
    qa_retrieval = build_evaluators(d, ["qa"])[1]
    assert qa_retrieval.name == "qa-retrieval"
    assert (qa_retrieval.eval_file, qa_retrieval.corpus_file) == (
        d / "qa/retrieval/test.json",
        d / "qa/retrieval/corpus.json",
    )
    (d / "qa/retrieval/corpus.json").unlink()
    assert build_evaluators(d, ["qa"])[1].eval_file == d / "qa/popqa/test.json"
