"""Split an evaluation folder in two halves by whole cluster: a check that selection reads, a test it never does.

The natural-question sets of ``build_data.py`` (FAQ questions clustered by FAQ file, ToolTalk turns by
conversation) serve the demo's selection as an out-of-domain check of the kind of query users send
(issue 21 §7).  A check that chose a model cannot also report it, so each test file is split by cluster
(never by query): clusters are shuffled with ``--seed`` and each goes to the half that holds fewer
queries so far.  Both halves keep the whole corpus.  Run from the repository root::

    .venv/bin/python benchmarks/adapt_eval/halves.py --data runs/adapt-eval/eval --out runs/natural

writes ``runs/natural/ood-dev`` and ``runs/natural/ood-test`` (eval layout) and ``runs/natural/halves.json``
(which clusters went where).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from collections import defaultdict
from pathlib import Path

from llm_embedder.fileio import atomic_path, read_jsonl, write_json

HALVES = ("ood-dev", "ood-test")


def split_clusters(records: list[dict], seed: int) -> tuple[list[str], list[str]]:
    """The clusters of each half: shuffled, each to the half with fewer queries so far (ties: the first)."""
    sizes: dict[str, int] = defaultdict(int)
    for record in records:
        sizes[str(record["cluster"])] += 1
    clusters = sorted(sizes)
    random.Random(seed).shuffle(clusters)
    halves: tuple[list[str], list[str]] = ([], [])
    counts = [0, 0]
    for cluster in clusters:
        side = 0 if counts[0] <= counts[1] else 1
        halves[side].append(cluster)
        counts[side] += sizes[cluster]
    return halves


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("runs/adapt-eval/eval"), help="an eval-layout folder")
    parser.add_argument("--out", type=Path, default=Path("runs/natural"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.out.exists():
        raise SystemExit(f"{args.out} exists; give a new folder")
    with atomic_path(args.out, is_dir=True) as tmp:  # a killed run leaves no half-written folder
        record: dict[str, dict] = {}
        for test in sorted(args.data.glob("*/*/test.json")):
            rel = test.parent.relative_to(args.data)
            rows = list(read_jsonl(test))
            halves = split_clusters(rows, args.seed)
            record[rel.as_posix()] = {}
            for name, clusters in zip(HALVES, halves, strict=True):
                folder = tmp / name / rel
                shutil.copytree(test.parent, folder)
                keep = [r for r in rows if str(r["cluster"]) in set(clusters)]
                (folder / "test.json").write_text("".join(json.dumps(r) + "\n" for r in keep), encoding="utf-8")
                record[rel.as_posix()][name] = {"clusters": sorted(clusters), "queries": len(keep)}
                print(f"{name}/{rel}: {len(keep)} queries from {len(clusters)} clusters")
        write_json(tmp / "halves.json", {"source": str(args.data), "seed": args.seed, "halves": record})


if __name__ == "__main__":
    main()
