"""tool: BFCL user requests and their gold function documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from llm_embedder.data.demo.common import DemoSize, TaskData, norm_text, shuffled, word_count

_LABELLED_BFCL = ("simple_python", "simple_java", "simple_javascript", "live_simple", "multiple", "live_multiple")


def render_function(fn: dict[str, Any]) -> str:
    """A function document as one key, in the shape of the ToolBench keys of the released data:
    ``name, description, required_params: [...], optional_params: [...]``."""
    params = fn.get("parameters") or {}
    props = params.get("properties") or {}
    required = [n for n in params.get("required") or [] if n in props]

    def describe(name: str) -> dict[str, str]:
        spec = props.get(name) or {}
        return {"name": name, "type": str(spec.get("type", "")), "description": str(spec.get("description", ""))}

    req = [describe(n) for n in required]
    opt = [describe(n) for n in props if n not in required]
    description = " ".join(str(fn.get("description", "")).split())
    return (
        f"{fn.get('name', '')}, {description}, required_params: {json.dumps(req, ensure_ascii=False)}, "
        f"optional_params: {json.dumps(opt, ensure_ascii=False)}"
    )


def _read_jsonl_file(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_bfcl(bfcl_dir: Path) -> tuple[list[tuple[str, str, list[str]]], list[str]]:
    """Labelled requests ``(query, gold document, the row's other documents)`` and every function
    document of the single-turn BFCL files (sorted, unique)."""
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
                labelled.append((query, render_function(docs[0]), others))
    every = set()
    for path in sorted(data.glob("BFCL_v4_*.json")):
        if "multi_turn" in path.name or "format_sensitivity" in path.name:
            continue
        for row in _read_jsonl_file(path):
            every |= {render_function(f) for f in row.get("function") or [] if isinstance(f, dict)}
    return labelled, sorted(every)


def build_tool(bfcl_dir: Path, size: DemoSize, rng: np.random.Generator) -> TaskData:
    """Tool retrieval: a BFCL user request -> its gold function document.

    Requests with exactly one gold function (simple_python/java/javascript, live_simple, and the
    single-call rows of multiple and live_multiple; English; 3-150 words; unique) are shuffled into
    test and train.  The corpus is every document offered with a chosen request (its gold and the
    row's other functions) plus a seeded sample of the other BFCL function documents.  Negatives
    are mined.
    """
    labelled, every = read_bfcl(bfcl_dir)
    picked, seen = [], set()
    for query, gold, others in shuffled(labelled, rng):
        if norm_text(query) not in seen:
            seen.add(norm_text(query))
            picked.append((query, gold, others))
        if len(picked) >= size.train + size.test:
            break
    if len(picked) < size.train + size.test:
        raise RuntimeError(f"tool: only {len(picked)} labelled requests")
    docs = sorted({d for _, gold, others in picked for d in [gold, *others]})
    offered = set(docs)
    rest = [d for d in every if d not in offered]
    docs += [rest[i] for i in rng.permutation(len(rest))[: max(0, size.tool_corpus - len(docs))].tolist()]
    docs = shuffled(docs, rng)
    row_of = {d: i for i, d in enumerate(docs)}
    corpus = [{"text": d, "name": d.split(",", 1)[0]} for d in docs]
    test = [{"query": q, "pos_index": [row_of[g]], "query_id": i} for i, (q, g, _) in enumerate(picked[: size.test])]
    train = [
        {"query": q, "pos": [g], "pos_index": [row_of[g]], "task": "tool", "query_id": i}
        for i, (q, g, _) in enumerate(picked[size.test :])
    ]
    return TaskData(
        train,
        {"tool/toolbench/test.json": test, "tool/toolbench/corpus.json": corpus},
        corpus_file="tool/toolbench/corpus.json",
        notes={"labelled_requests_available": len(labelled), "function_documents_available": len(every)},
    )
