"""Which evaluators there are, and which of them a data folder can run.

Data follow the released LLM-Embedder evaluation layout under one folder (only the files present
are evaluated):

    qa/mmlu/test.json + qa/msmarco/corpus.json        qa/popqa/test.json + qa/nq/corpus.json
                                                      (+ qa/popqa/demos.json: few-shot demonstrations)
    (qa-retrieval: qa/retrieval/test.json + corpus.json, else the popqa questions whose records carry
    ``pos_index``, ranked over qa/nq/corpus.json)
    icl/icl/test.json + icl/icl/corpus.json           chat/msc/test.json
    lrlm/<name>/test.json (any number of names)       tool/toolbench/test.json + corpus.json
    convsearch/qrecc/test.concat.json + corpus.json

:data:`EVALUATORS` maps an evaluator's name (its leaderboard column) to its task and a builder that
finds its files; its order is the leaderboard's column order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_embedder.evaluation.base import Evaluator
from llm_embedder.evaluation.icl import InContextLearning
from llm_embedder.evaluation.memory import Conversation, LongText
from llm_embedder.evaluation.qa import MultipleChoiceQA, OpenQA
from llm_embedder.evaluation.retrieval_only import RetrievalOnly
from llm_embedder.fileio import iter_jsonl

# From the data folder and the example limit: the evaluator, or None when its files are absent.
Builder = Callable[[Path, int | None], Evaluator | None]


def _if_present(*paths: Path) -> bool:
    return all(p.is_file() for p in paths)


def _mmlu(d: Path, limit: int | None) -> Evaluator | None:
    test, corpus = d / "qa/mmlu/test.json", d / "qa/msmarco/corpus.json"
    return MultipleChoiceQA(test, corpus, limit=limit) if _if_present(test, corpus) else None


def _popqa(d: Path, limit: int | None) -> Evaluator | None:
    """Few-shot demonstrations from ``qa/popqa/demos.json`` where present (the demo data: training
    questions), else from the other test questions (the released PopQA file)."""
    test, corpus, demos = d / "qa/popqa/test.json", d / "qa/nq/corpus.json", d / "qa/popqa/demos.json"
    if not _if_present(test, corpus):
        return None
    return OpenQA(test, corpus, limit=limit, demos_file=demos if demos.is_file() else None)


def _icl(d: Path, limit: int | None) -> Evaluator | None:
    test, corpus = d / "icl/icl/test.json", d / "icl/icl/corpus.json"
    return InContextLearning(test, corpus, limit=limit) if _if_present(test, corpus) else None


def _msc(d: Path, limit: int | None) -> Evaluator | None:
    test = d / "chat/msc/test.json"
    return Conversation(test, limit=limit) if test.is_file() else None


def _lrlm(d: Path, limit: int | None) -> Evaluator | None:
    files = sorted((d / "lrlm").glob("*/test.json"))
    return LongText(files, limit=limit) if files else None


def _tool(d: Path, limit: int | None) -> Evaluator | None:
    test, corpus = d / "tool/toolbench/test.json", d / "tool/toolbench/corpus.json"
    return RetrievalOnly(test, corpus, "tool", "tool", "ndcg@5", limit=limit) if _if_present(test, corpus) else None


def _first_record_has(path: Path, field: str) -> bool:
    records = iter_jsonl(path)
    try:
        return field in next(records, (0, {}))[1]
    finally:
        records.close()


def _qa_retrieval(d: Path, limit: int | None) -> Evaluator | None:
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


def _convsearch(d: Path, limit: int | None) -> Evaluator | None:
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
) -> list[Evaluator]:
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
    out: list[Evaluator] = []
    for task in tasks:
        if task not in known:
            raise ValueError(f"unknown task {task!r}; known: {', '.join(known)}")
        built = [b(data_dir, limit) for t, b in EVALUATORS.values() if t == task]
        found = [dataclasses.replace(e, **options.get(e.name, {})) for e in built if e is not None]
        if not found:
            raise FileNotFoundError(f"{data_dir}: no evaluation files for task {task!r} (see the layout in --help)")
        out += found
    return out
