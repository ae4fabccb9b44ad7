"""Adapted models on real human queries that ``adapt`` never saw: base, adapted, and every model trained.

Run from the repository root after ``build_data.py`` and ``adapt`` runs on its corpus and tools (the
commands are in ``docs/guides/adapt.md``)::

    .venv/bin/python benchmarks/adapt_eval/evaluate.py --data runs/adapt-eval \\
        --run full=runs/adapt-abl/full --run no-reward=runs/adapt-abl/no-reward

Rows: BM25, the zero-shot base encoder, ``adapted`` (the first run's output: what ``adapt`` chose) and,
for each run ``NAME``, every model its selection trained (``NAME.VARIANT``, unmerged and merged with
the base).  A run of ``adapt`` with another setting (no rewards, no consistency filter) is an ablation.
Columns: qa-retrieval nDCG@10 over the FAQ answers and tool nDCG@5 over the ToolTalk APIs, with
intervals and Holm-corrected paired tests against ``base`` (the harness's).

The test queries are never given to ``adapt``, but the LLM may still write one of them word for word
(the Perl FAQ's answers cite other FAQ questions by name).  Every such test query is listed in the
summary, and ``base`` and ``adapted`` are scored again without them (``unwritten/``; ``--keep-written``
skips it) so a reader sees whether they matter.  The leaderboard, the generation counts and choice of each run
are copied to ``--results`` (committed: the docs include the table from there).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

from llm_embedder.evaluation.grid import run_grid
from llm_embedder.evaluation.registry import build_evaluators
from llm_embedder.fileio import read_jsonl
from llm_embedder.models.zoo import model_digest

TEST_FILES = {"qa": "qa/retrieval/test.json", "tool": "tool/toolbench/test.json"}


def normalise(text: str) -> str:
    """Case, spacing and end punctuation do not make a different question."""
    return re.sub(r"\s+", " ", text).strip().rstrip("?.! ").lower()


def written_queries(work: Path) -> dict[str, set[str]]:
    """Every query the run's LLM wrote, training and dev, per task (normalised)."""
    found: dict[str, set[str]] = {task: set() for task in TEST_FILES}
    for task, dev_file in TEST_FILES.items():
        for file in (work / "data" / "train" / f"{task}.json", work / "data" / "dev" / dev_file):
            if file.is_file():
                found[task].update(normalise(r["query"]) for r in read_jsonl(file))
    return found


def test_queries_written(data: Path, works: list[Path]) -> dict[str, list[str]]:
    """The test queries (as written in the test file) that any run's LLM also wrote, per task."""
    written: dict[str, set[str]] = {task: set() for task in TEST_FILES}
    for work in works:
        for task, queries in written_queries(work).items():
            written[task] |= queries
    return {
        task: [r["query"] for r in read_jsonl(data / "eval" / rel) if normalise(r["query"]) in written[task]]
        for task, rel in TEST_FILES.items()
    }


def without_queries(src: Path, dst: Path, drop: dict[str, list[str]]) -> None:
    """A copy of the evaluation folder ``src`` whose test files lack the queries in ``drop``."""
    for task, rel in TEST_FILES.items():
        shutil.copytree((src / rel).parent, (dst / rel).parent, dirs_exist_ok=True)
        gone = set(drop.get(task, []))
        lines = [json.dumps(r) for r in read_jsonl(src / rel) if r["query"] not in gone]
        (dst / rel).write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("runs/adapt-eval"))
    parser.add_argument(
        "--run",
        action="append",
        metavar="NAME=FOLDER",
        help="an adapt output folder (its work folder is FOLDER.work); the first is the method, the rest ablations",
    )
    parser.add_argument("--base", default="minilm")
    parser.add_argument("--out", type=Path, default=Path("runs/adapt-abl/eval-real"))
    parser.add_argument("--results", type=Path, default=Path("results/adapt-eval"))
    parser.add_argument(
        "--differs", action="append", default=[], metavar="NAME=TEXT", help="what run NAME changes (for the table)"
    )
    parser.add_argument("--keep-written", action="store_true", help="do not also score without written test queries")
    args = parser.parse_args(argv)

    runs = [tuple(item.split("=", 1)) for item in (args.run or ["full=runs/adapt-abl/full"])]
    differs = dict(item.split("=", 1) for item in args.differs)
    adapted = Path(runs[0][1])
    specs = ["bm25", f"base=dense:{args.base}", f"adapted=dense:{adapted}"]
    for name, folder in runs:
        for model in sorted((Path(folder + ".work") / "select" / "models").glob("*/model")):
            specs.append(f"{name}.{model.parent.name}=dense:{model}")
    # a cell is cached per spec: a model folder trained again must be scored again
    versions = {spec: model_digest(spec.split("=dense:", 1)[1]) for spec in specs if "=dense:" in spec}
    evaluators = build_evaluators(args.data / "eval", ["qa", "tool"])
    run_grid(evaluators, specs, args.out, reference="base", show_progress=True, versions=versions)

    written = test_queries_written(args.data, [Path(folder + ".work") for _, folder in runs])
    args.results.mkdir(parents=True, exist_ok=True)
    for name in ("leaderboard.md", "leaderboard.json"):
        shutil.copyfile(args.out / name, args.results / name)
    if any(written.values()) and not args.keep_written:
        clean = args.out.parent / (args.out.name + "-unwritten")
        without_queries(args.data / "eval", clean / "data", written)
        run_grid(
            build_evaluators(clean / "data", ["qa", "tool"]),
            specs[1:3],
            clean / "eval",
            reference="base",
            show_progress=True,
            versions=versions,
        )
        (args.results / "unwritten").mkdir(exist_ok=True)
        for name in ("leaderboard.md", "leaderboard.json"):
            shutil.copyfile(clean / "eval" / name, args.results / "unwritten" / name)

    summary: dict = {"benchmark": "adapt runs", "test queries the LLM also wrote": written, "runs": {}}
    for name, folder in runs:
        report = json.loads((Path(folder) / "report.json").read_text(encoding="utf-8"))
        summary["runs"][name] = {
            "differs": differs.get(name, ""),
            "chosen": report["chosen"],
            "rule": report["selection"]["rule"],
            "candidates": report["selection"]["candidates"],
            "generated": {task: part.get("counts") for task, part in report["generated"].items()},
            "seconds": report["seconds"],
            "lm": report["lm"],
            "base": report["base"],
        }
    (args.results / "adapt-summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print((args.results / "leaderboard.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
