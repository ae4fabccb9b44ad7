"""The retrieval demo: index each task's real candidates and show what the embedder finds.

For every task file of the released format (``qa.json``, ``tool.json``, ...) the candidates of all
records (``pos`` + ``neg``, or ``history``) become one corpus.  Each query is searched with the
dense embedder and with BM25.  A query counts as a hit when its labelled positive (or, for tasks
without labels, the candidate the LLM scored highest) is among the top k.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from textwrap import shorten

from llm_embedder.errors import InputError
from llm_embedder.fileio import iter_jsonl, write_json
from llm_embedder.models.embedder import Embedder
from llm_embedder.retrieval.corpus import Corpus
from llm_embedder.retrieval.searcher import Searcher


@dataclass
class DemoQuery:
    text: str
    targets: set[str]


@dataclass
class TaskFigures:
    task: str
    documents: int
    queries: int
    target: str
    dense_hits: int
    bm25_hits: int
    chance: float


def load_demo_task(path: Path) -> tuple[str, Corpus, list[DemoQuery], str]:
    """Corpus, queries and their target candidates from one released-format task file."""
    texts: dict[str, int] = {}
    queries: list[DemoQuery] = []
    task, target_kind = None, "labelled positive"
    for number, record in iter_jsonl(path):
        for field in ("query", "task"):
            if not isinstance(record.get(field), str):
                raise InputError(path, number, field, "missing or not a string")
        task = task or record["task"]
        candidates = record.get("history") or record.get("pos", []) + record.get("neg", [])
        if not candidates:
            raise InputError(path, number, "pos", "the record has no candidates (pos, neg or history)")
        for text in candidates:
            texts.setdefault(text, len(texts))
        positives = [] if "history" in record else record.get("pos", [])
        if not positives:
            scores = record.get("teacher_scores")
            if not scores or len(scores) != len(candidates):
                raise InputError(path, number, "teacher_scores", "needed (one per candidate) when there is no positive")
            positives = [candidates[max(range(len(scores)), key=scores.__getitem__)]]
            target_kind = "LLM's best candidate"
        queries.append(DemoQuery(record["query"], set(positives)))
    if task is None:
        raise InputError(path, None, None, "no records")
    return task, Corpus(list(texts), list(range(len(texts)))), queries, target_kind


def run_retrieval_demo(
    data_dir: Path, model: str | None = None, k: int = 3, out: Path | None = None
) -> list[TaskFigures]:
    files = sorted(data_dir.glob("*.json")) if data_dir.is_dir() else []
    if not files:
        raise InputError(data_dir, None, None, "no task files (*.json in the released LLM-Embedder format)")
    start = time.perf_counter()
    embedder = Embedder.from_pretrained(model)
    print(f"encoder: {embedder}\n")
    figures = []
    for path in files:
        task, corpus, queries, target_kind = load_demo_task(path)
        print(f"[{task}] {len(corpus)} candidates from {path.name}, {len(queries)} queries", flush=True)
        dense = Searcher.build(corpus, "dense", task=task, embedder=embedder)
        bm25 = Searcher.build(corpus, "bm25", task=task)
        texts = [q.text for q in queries]
        dense_hits, bm25_hits = dense.search(texts, k=k), bm25.search(texts, k=k)
        first = queries[0]
        print(f"  query: {shorten(first.text, 110, placeholder='…')}")
        for rank, hit in enumerate(dense_hits[0], start=1):
            mark = "*" if hit.text in first.targets else " "
            print(f"   {mark}{rank}. {hit.score:.3f}  {shorten(hit.text, 100, placeholder='…')}")
        figures.append(
            TaskFigures(
                task=task,
                documents=len(corpus),
                queries=len(queries),
                target=target_kind,
                dense_hits=_count_hits(dense_hits, queries),
                bm25_hits=_count_hits(bm25_hits, queries),
                chance=sum(min(1.0, k * len(q.targets) / len(corpus)) for q in queries) / len(queries),
            )
        )
    print(f"\ntarget in the top {k} (* above marks it):")
    print(f"| task | candidates | queries | target | dense ({model or 'minilm'}) | BM25 | chance |")
    print("|---|---|---|---|---|---|---|")
    for f in figures:
        print(
            f"| {f.task} | {f.documents} | {f.queries} | {f.target} | {f.dense_hits}/{f.queries} | "
            f"{f.bm25_hits}/{f.queries} | {f.chance:.2f} |"
        )
    print(f"\ndone in {time.perf_counter() - start:.0f} s")
    if out is not None:
        write_json(out, [asdict(f) for f in figures])
    return figures


def _count_hits(results: list, queries: list[DemoQuery]) -> int:
    return sum(any(h.text in q.targets for h in hits) for hits, q in zip(results, queries, strict=True))
