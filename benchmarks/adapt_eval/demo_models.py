"""The demo's models on real questions from sources the demo never used: the Perl and Python FAQs
(human questions over the FAQ answers) and ToolTalk (human requests over its APIs).

The demo's own out-of-domain test is a held-out topic or tool family of its training sources, and its
knowledge questions are cloze sentences.  This asks what a user's natural questions get, and what the
instruction prefixes do there: each model is scored as shipped and with the other instruction set.
Nothing in the demo's recipe was chosen on this data.  Run from the repository root after ``make demo``
and ``build_data.py`` (``docs/guides/adapt.md``)::

    .venv/bin/python benchmarks/adapt_eval/demo_models.py --data runs/adapt-eval --demo runs/demo

Rows: BM25; ``base`` (MiniLM, no instructions, as the demo's ``base`` row), ``base+instructions``;
``fine-tuned`` and ``merged`` as shipped (LLM-Embedder instructions), and each ``-plain`` (the same
weights without instructions).  The leaderboard is copied to ``--results`` for ``make tables``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from llm_embedder.evaluation.grid import run_grid
from llm_embedder.evaluation.registry import build_evaluators
from llm_embedder.fileio import atomic_path
from llm_embedder.freshness import Stage
from llm_embedder.models.embedder import Embedder
from llm_embedder.models.zoo import model_digest


def with_instructions(source: str | Path, instructions: str, folder: Path) -> Path:
    """``source`` saved under ``folder`` with the instruction set ``instructions``; reused while the
    source's digest and the set are those it was made from."""
    model = folder / "model"
    stage = Stage(folder / "made-from.txt", f"{model_digest(str(source))} {instructions}", product=model)
    if not stage.fresh():
        with atomic_path(model, is_dir=True) as tmp:
            Embedder.from_pretrained(str(source), instructions=instructions).save_pretrained(tmp)
        stage.seal()
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("runs/adapt-eval"))
    parser.add_argument("--demo", type=Path, default=Path("runs/demo"))
    parser.add_argument("--base", default="minilm")
    parser.add_argument("--out", type=Path, default=Path("runs/demo-real-questions"))
    parser.add_argument("--results", type=Path, default=Path("results/demo/real-questions"))
    args = parser.parse_args(argv)

    trained = {"fine-tuned": args.demo / "models" / "fine-tuned" / "model", "merged": args.demo / "merged" / "model"}
    for name, folder in trained.items():
        if not (folder / "llm_embedder.json").is_file():
            raise SystemExit(f"{folder}: no {name} model here (run `make demo` first)")
    models = args.out / "models"
    specs = ["bm25", f"base=dense:{with_instructions(args.base, 'none', models / 'base')}"]
    specs.append(f"base+instructions=dense:{with_instructions(args.base, 'llm-embedder', models / 'base-instr')}")
    for name, folder in trained.items():
        specs.append(f"{name}=dense:{folder}")
        specs.append(f"{name}-plain=dense:{with_instructions(folder, 'none', models / (name + '-plain'))}")
    # a cell is cached per spec: a model trained again must be scored again
    versions = {spec: model_digest(spec.split("=dense:", 1)[1]) for spec in specs if "=dense:" in spec}
    evaluators = build_evaluators(args.data / "eval", ["qa", "tool"])
    run_grid(evaluators, specs, args.out / "eval", reference="base", show_progress=True, versions=versions)
    args.results.mkdir(parents=True, exist_ok=True)
    for name in ("leaderboard.md", "leaderboard.json"):
        shutil.copyfile(args.out / "eval" / name, args.results / name)
    print((args.results / "leaderboard.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
