"""The demo's instruction choice, made with natural questions in the generality check, then tested once.

Issue 21 §7: the shipped demo model was chosen (instructions on) by a check of cloze sentences from its
own sources, which could not see what the prefixes cost on the questions users send.  Here the
selection reads a second out-of-domain check, half of the natural-question sets of ``build_data.py``
(``halves.py``: by FAQ file and by conversation), and the other half reports the choice once.  Run from
the repository root, in order::

    .venv/bin/python benchmarks/adapt_eval/build_data.py --out runs/adapt-eval
    .venv/bin/python benchmarks/adapt_eval/halves.py --data runs/adapt-eval/eval --out runs/natural
    PLAIN='{name: plain, techniques: {instructions: false}}'
    INSTR='{name: instr, techniques: {instructions: true}}'
    .venv/bin/llm-embedder run recipes/demo.yaml --select --set "select.variants=[$PLAIN, $INSTR]" \\
        --set 'select.check=[runs/natural/ood-dev]'
    .venv/bin/python benchmarks/adapt_eval/natural_selection.py

This script copies the selection and the grids it read to ``--results`` and scores BM25, the base and
every variant on ``runs/natural/ood-test`` (``--test``), which nothing chose on.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from llm_embedder.evaluation.grid import run_grid
from llm_embedder.evaluation.registry import build_evaluators
from llm_embedder.fileio import read_json
from llm_embedder.models.zoo import model_digest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, default=Path("runs/demo"), help="the work folder of the --select run")
    parser.add_argument("--test", type=Path, default=Path("runs/natural/ood-test"))
    parser.add_argument("--base", default="minilm")
    parser.add_argument("--results", type=Path, default=Path("results/demo/natural-selection"))
    args = parser.parse_args(argv)

    select = args.demo / "select"
    selection = read_json(select / "selection.json", "selection")
    if "checks" not in selection:
        raise SystemExit(f"{select / 'selection.json'} is from before select.check: run --select again")
    specs = ["bm25", f"base=dense:{args.base}"]
    specs += [f"{name}=dense:{path}" for name, path in selection["models"].items()]
    # a cell is cached per spec: a model folder trained again must be scored again
    versions = {spec: model_digest(spec.split("=dense:", 1)[1]) for spec in specs if "=dense:" in spec}
    out = args.demo / "natural-ood-test"
    run_grid(build_evaluators(args.test, ["qa", "tool"]), specs, out, reference="base", versions=versions)

    args.results.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(select / "selection.json", args.results / "selection.json")
    for split in ("dev", *selection["checks"]):
        (args.results / split).mkdir(exist_ok=True)
        shutil.copyfile(select / f"eval-{split}" / "leaderboard.json", args.results / split / "leaderboard.json")
    (args.results / "ood-test").mkdir(exist_ok=True)
    shutil.copyfile(out / "leaderboard.json", args.results / "ood-test" / "leaderboard.json")
    print(f"chosen: {selection['chosen']} ({selection['rule']}); results in {args.results} (run `make tables`)")


if __name__ == "__main__":
    main()
