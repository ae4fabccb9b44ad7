"""tool: BFCL user requests and their gold function documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from llm_embedder.data.demo.common import (
    EVAL_SPLITS,
    DemoSize,
    TaskData,
    halve_ood,
    norm_text,
    ood_linked,
    seeded_halves,
    shuffled,
    train_corpus_path,
    word_count,
)
from llm_embedder.data.tool_text import render_function

_LABELLED_BFCL = ("simple_python", "simple_java", "simple_javascript", "live_simple", "multiple", "live_multiple")


def _read_jsonl_file(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


OOD_BFCL = ("live_simple", "live_multiple")
"""Held back for ood: requests users sent to the live leaderboard, against the functions they brought (another
tool family than the curated simple_* and multiple sets the other splits use)."""


def read_bfcl(bfcl_dir: Path) -> tuple[list[tuple[str, str, str, list[str]]], dict[str, list[str]]]:
    """Labelled requests ``(category, query, gold document, the row's other documents)`` and every
    function document of the single-turn BFCL files (sorted, unique), split into ``in`` and ``ood``
    (the live files)."""
    data = bfcl_dir / "data"
    labelled = []
    for name in _LABELLED_BFCL:
        rows = _read_jsonl_file(data / f"BFCL_v4_{name}.json")
        answers_file = data / "possible_answer" / f"BFCL_v4_{name}.json"
        gold = {}
        if answers_file.is_file():
            for a in _read_jsonl_file(answers_file):
                if len(a.get("ground_truth", [])) == 1 and isinstance(a["ground_truth"][0], dict):
                    gold[a["id"]] = next(iter(a["ground_truth"][0]))
        for row in rows:
            functions = row.get("function") or []
            if name.startswith(("simple", "live_simple")):
                target = functions[0].get("name") if len(functions) == 1 else None
            else:
                target = gold.get(row["id"])
            docs = [f for f in functions if f.get("name") == target]
            turn = row.get("question", [[]])[0]
            query = " ".join(" ".join(str(m.get("content", "")).split()) for m in turn if m.get("role") == "user")
            ascii_share = sum(c.isascii() for c in query) / max(1, len(query))
            if len(docs) == 1 and 3 <= word_count(query) <= 150 and ascii_share >= 0.95:
                others = [render_function(f) for f in functions if f is not docs[0]]
                labelled.append((name, query, render_function(docs[0]), others))
    every: dict[str, set[str]] = {"in": set(), "ood": set()}
    for path in sorted(data.glob("BFCL_v4_*.json")):
        if "multi_turn" in path.name or "format_sensitivity" in path.name:
            continue
        part = "ood" if path.name.startswith("BFCL_v4_live_") else "in"
        for row in _read_jsonl_file(path):
            every[part] |= {render_function(f) for f in row.get("function") or [] if isinstance(f, dict)}
    return labelled, {part: sorted(docs) for part, docs in every.items()}


def _tool_corpus(
    picked: list[tuple[str, str, list[str]]],
    distractors: list[str],
    total: int,
    rng: np.random.Generator,
    exclude: frozenset[str] | set[str] = frozenset(),
) -> tuple[list[dict[str, str]], dict[str, int]]:
    """Every document offered with a picked request plus a seeded sample of ``distractors``, shuffled;
    none in ``exclude``."""
    docs = sorted({d for _, gold, others in picked for d in [gold, *others]} - exclude)
    offered = set(docs)
    rest = [d for d in distractors if d not in offered and d not in exclude]
    docs += [rest[i] for i in rng.permutation(len(rest))[: max(0, total - len(docs))].tolist()]
    docs = shuffled(docs, rng)
    return [{"text": d, "name": d.split(",", 1)[0]} for d in docs], {d: i for i, d in enumerate(docs)}


def _tool_cluster(gold: str) -> dict[str, str]:
    """Requests for one function are not independent: the leaderboard resamples whole tools."""
    return {"cluster": gold.split(",", 1)[0], "cluster_unit": "tool"}


def build_tool(bfcl_dir: Path, size: DemoSize, rng: np.random.Generator) -> TaskData:
    """Tool retrieval: a BFCL user request -> its gold function document.

    Requests with exactly one gold function (English; 3-150 words; unique) from simple_python/java/
    javascript and the single-call rows of multiple make train, dev and test; requests sharing a gold
    document stay in one split, so the three share no tool.  An eval record's ``cluster`` is its gold
    function's name.  ood: the live_simple and single-call live_multiple requests (real users' requests
    and the functions they brought: another tool family of the same leaderboard), split by gold
    function name (seeded, about half the names each) into ood-dev and ood-test, which share the ood
    corpus.  The corpus is every document offered with a chosen request (its gold and the row's other
    functions) plus a seeded sample of the other BFCL function documents of the same family (ood: the
    live files; the others: the rest).
    Negatives are mined from the training corpus (``corpus-train/tool.jsonl``), made the same way from
    the training requests but without any dev, test or ood gold document.
    """
    labelled, every = read_bfcl(bfcl_dir)
    by_gold: dict[str, list[tuple[str, str, list[str]]]] = {}
    ood, seen = [], set()
    for category, query, gold, others in shuffled(labelled, rng):
        if norm_text(query) in seen:
            continue
        seen.add(norm_text(query))
        if category in OOD_BFCL:
            ood.append((query, gold, others))
        else:
            by_gold.setdefault(gold, []).append((query, gold, others))
    splits: dict[str, list[tuple[str, str, list[str]]]] = {"test": [], "dev": [], "train": []}
    n_test = size.test_of("tool")
    need = {"test": n_test, "dev": n_test, "train": size.train}
    groups = iter(by_gold.values())  # insertion order: the first request of each tool, shuffled
    for split in splits:
        while len(splits[split]) < need[split]:
            group = next(groups, None)
            if group is None:
                raise RuntimeError(f"tool: only {len(splits[split])} {split} requests")
            splits[split] += group[: need[split] - len(splits[split])]
    splits["ood"] = ood[:n_test]
    in_picked = splits["test"] + splits["dev"] + splits["train"]
    corpus, row_of = _tool_corpus(in_picked, every["in"], size.tool_corpus, rng)
    ood_corpus, ood_row_of = _tool_corpus(splits["ood"], every["ood"], size.tool_corpus, rng)
    files: dict[str, list[dict[str, Any]]] = {
        "eval/tool/toolbench/corpus.json": corpus,
        "ood-test/tool/toolbench/corpus.json": ood_corpus,
    }
    # The training corpus is drawn after the test corpora (the test files do not depend on it) and holds
    # no held-out gold document, also where a training request's BFCL row offers one beside its own.
    held_out = {g for split in ("test", "dev", "ood") for _, g, _ in splits[split]}
    files[train_corpus_path("tool")], train_row_of = _tool_corpus(
        splits["train"], every["in"], size.tool_corpus, rng, exclude=held_out
    )
    # ood halved by tool (drawn last, so nothing else depends on it): requests for one function are one cluster
    side = seeded_halves([_tool_cluster(g)["cluster"] for _, g, _ in splits["ood"]], rng)
    halves = halve_ood(splits, lambda request: side[_tool_cluster(request[1])["cluster"]])
    for split, folder in EVAL_SPLITS.items():
        rows = ood_row_of if split.startswith("ood") else row_of
        files[f"{folder}/tool/toolbench/test.json"] = [
            {"query": q, "pos_index": [rows[g]], **_tool_cluster(g), "query_id": i}
            for i, (q, g, _) in enumerate(halves[split])
        ]
    train = [
        {"query": q, "pos": [g], "pos_index": [train_row_of[g]], "task": "tool", "query_id": i}
        for i, (q, g, _) in enumerate(splits["train"])
    ]
    return TaskData(
        train,
        "tool/toolbench/test.json",
        files,
        train_corpus=train_corpus_path("tool"),
        linked={
            "dev/tool/toolbench/corpus.json": "eval/tool/toolbench/corpus.json",
            **ood_linked(["tool/toolbench/corpus.json"]),
        },
        notes={
            "labelled_requests_available": len(labelled),
            "function_documents_available": {k: len(v) for k, v in every.items()},
        },
    )
