"""Training and dev data from a user's own files, in the layout the pipeline's later stages read.

Per need (each optional):

- knowledge (``qa``): the LLM writes questions for each corpus passage (:mod:`llm_embedder.userdata.generate`,
  consistency-filtered) and extracts a short answer; the passage is the positive, the answer is what the
  reward scores.  Negatives are mined later from the training corpus (``corpus-train/qa.jsonl``);
- tools (``tool``): the LLM writes requests each tool serves; the tool is the positive;
- memory (``chat``): a later user turn is the query, the assistant's reply the answer, the conversation's
  earlier exchanges the candidates;
- documents (``lrlm``): a chunk is the query, the next chunk the answer, earlier chunks the candidates;
- examples (``icl``): an example's input is the query, its output the answer, the examples BM25 finds
  nearest (itself excluded) the candidates.

The dev split holds out whole sources (documents, tools, conversations), never single queries, and
the training corpora hold no dev key: dev keys are neither mined as negatives nor scored.  A user's
labelled ``--queries`` of ``qa`` or ``tool`` give that task's dev set instead (a seeded ``dev_share`` of
them, in place of the LLM-written dev queries, which flatter a model trained on their like); their
positives are then removed from every training record and corpus.  Layout
(:mod:`llm_embedder.data.layout`): ``train/<task>.json``, ``corpus-train/<task>.jsonl`` (training keys
only), ``dev/`` (``qa/retrieval``, ``tool/toolbench``, ``chat/msc``), ``generation.json``, ``GENERATED.md``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llm_embedder.data.layout import train_corpus_path
from llm_embedder.data.tool_text import render_function
from llm_embedder.errors import InputError
from llm_embedder.fileio import atomic_path, read_jsonl, write_json, write_jsonl
from llm_embedder.userdata.generate import GenerationSettings, split_by_source, write_answers, write_queries
from llm_embedder.userdata.readers import (
    chunk_passages,
    read_conversations,
    read_corpus,
    read_documents,
    read_examples,
    read_tools,
)

if TYPE_CHECKING:
    from llm_embedder.models.lm import CausalLM

INPUT_KINDS = ("corpus", "tools", "conversations", "documents", "examples", "queries")
LRLM_CHUNK_WORDS = 80
"""A long document is cut into chunks of about this many words (at paragraph ends where possible)."""


@dataclass(frozen=True)
class UserInputs:
    corpus: str | None = None
    tools: str | None = None
    conversations: str | None = None
    documents: str | None = None
    examples: str | None = None
    queries: str | None = None
    """Labelled queries in the released format (``query``, ``pos``, ``task``, ...): training records, and
    for ``qa`` and ``tool`` the dev set (see the module docstring)."""

    def given(self) -> dict[str, str]:
        return {k: v for k in INPUT_KINDS if (v := getattr(self, k))}


@dataclass(frozen=True)
class UserDataSettings:
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    dev_share: float = 0.2
    """Share of the sources (documents, tools, conversations) held out for dev."""
    candidates: int = 4
    """Candidates per query for the self-supervised needs (chat history, earlier chunks, examples)."""
    per_source: int = 6
    """At most this many chat / long-document records per conversation or document."""
    seed: int = 0


def _write_eval(out: Path, folder: str, test: list[dict[str, Any]], corpus: list[dict[str, Any]] | None) -> None:
    write_jsonl(out / folder / "test.json", test)
    if corpus is not None:
        write_jsonl(out / folder / "corpus.json", corpus)


def _knowledge(lm, path, settings, out: Path, report: dict[str, Any], show_progress: bool) -> list[dict]:
    passages = read_corpus(path)
    keys = [f"{p.title} {p.text}".strip() for p in passages]
    made = write_queries(lm, keys, settings.generation, "question", show_progress, settings.seed)
    answers = write_answers(
        lm, made.queries, [keys[i] for i in made.sources], settings.generation, show_progress=show_progress
    )
    dev_docs = split_by_source([p.doc for p in passages], settings.dev_share, settings.seed)
    train, dev, counts = [], [], Counter(made.counts)
    for query, source, answer in zip(made.queries, made.sources, answers, strict=True):
        if not answer:
            counts["dropped: no answer"] += 1
            continue
        if passages[source].doc in dev_docs:
            dev.append({"query": query, "pos_index": [source], "cluster": passages[source].doc})
        else:
            train.append({"query": query, "pos": [keys[source]], "answers": [answer], "task": "qa"})
    counts["kept"], counts["train"], counts["dev"] = len(train) + len(dev), len(train), len(dev)
    write_jsonl(
        out / train_corpus_path("qa"),
        ({"title": p.title, "text": p.text} for p in passages if p.doc not in dev_docs),
    )
    if dev:
        _write_eval(out / "dev", "qa/retrieval", dev, [{"title": p.title, "text": p.text} for p in passages])
    report["qa"] = {
        "source": str(path),
        "passages": len(passages),
        "documents": len({p.doc for p in passages}),
        "counts": dict(counts),
        "dropped_samples": made.dropped_samples,
        "sample": [r | {"source": r["pos"][0][:300]} for r in train[:5]],
    }
    return train


def _tools(lm, path, settings, out: Path, report: dict[str, Any], show_progress: bool) -> list[dict]:
    tools = read_tools(path)
    keys = [render_function(t.definition) for t in tools]
    made = write_queries(lm, keys, settings.generation, "request", show_progress, settings.seed)
    dev_tools = split_by_source([t.name for t in tools], settings.dev_share, settings.seed)
    train, dev = [], []
    for query, source in zip(made.queries, made.sources, strict=True):
        if tools[source].name in dev_tools:
            dev.append({"query": query, "pos_index": [source], "cluster": tools[source].name})
        else:
            train.append({"query": query, "pos": [keys[source]], "task": "tool"})
    write_jsonl(
        out / train_corpus_path("tool"),
        ({"text": k} for t, k in zip(tools, keys, strict=True) if t.name not in dev_tools),
    )
    if dev:
        _write_eval(out / "dev", "tool/toolbench", dev, [{"text": k} for k in keys])
    report["tool"] = {
        "source": str(path),
        "tools": len(tools),
        "counts": dict(made.counts) | {"train": len(train), "dev": len(dev)},
        "dropped_samples": made.dropped_samples,
        "sample": [r | {"tool": r["pos"][0][:200]} for r in train[:5]],
    }
    return train


def _chat(path, settings: UserDataSettings, out: Path, report: dict[str, Any]) -> list[dict]:
    chats = read_conversations(path)
    dev_ids = split_by_source([c.id for c in chats], settings.dev_share, settings.seed)
    train, dev, skipped = [], [], 0
    for chat in chats:
        pairs, records = [], []
        turns = chat.turns
        for i in range(len(turns) - 1):
            (role, text), (next_role, reply) = turns[i], turns[i + 1]
            if role != "user" or next_role != "assistant":
                continue
            if pairs and len(text.split()) >= 3:
                records.append({"query": text, "answers": [reply], "history": list(pairs), "conversation": chat.id})
            pairs.append(f"Speaker 1: {text}\nSpeaker 2: {reply}")
        if not records:
            skipped += 1
        records = records[-settings.per_source :]  # the latest turns: the longest memories
        (dev if chat.id in dev_ids else train).extend(records)
    if dev:
        _write_eval(out / "dev", "chat/msc", [r | {"query_id": i} for i, r in enumerate(dev)], None)
    report["chat"] = {
        "source": str(path),
        "conversations": len(chats),
        "counts": {"train": len(train), "dev": len(dev), "conversations without a later user turn": skipped},
        "sample": [{"query": r["query"], "answer": r["answers"][0], "history": len(r["history"])} for r in train[:3]],
    }
    return [r | {"task": "chat", "query_id": i} for i, r in enumerate(train)]


def _lrlm(path, settings: UserDataSettings, report: dict[str, Any]) -> list[dict]:
    docs = read_documents(path)
    rng = np.random.default_rng(settings.seed)
    k, train = settings.candidates, []
    for doc in docs:
        chunks = chunk_passages(doc.text, LRLM_CHUNK_WORDS)
        positions = list(range(2, len(chunks) - 1))  # an earlier chunk besides the previous one; a next one
        for i in sorted(rng.permutation(positions)[: settings.per_source].tolist()):
            earlier = sorted(rng.choice(i - 1, min(k, i - 1), replace=False).tolist())
            train.append(
                {
                    "query": chunks[i],
                    "answers": [chunks[i + 1]],
                    "pos": [],
                    "neg": [chunks[j] for j in earlier],
                    "context": "",
                    "task": "lrlm",
                    "title": doc.title,
                }
            )
    report["lrlm"] = {
        "source": str(path),
        "documents": len(docs),
        "counts": {
            "train": len(train),
            "documents too short (under 4 chunks)": sum(
                len(chunk_passages(d.text, LRLM_CHUNK_WORDS)) < 4 for d in docs
            ),
        },
    }
    return train


def _icl(path, settings: UserDataSettings, report: dict[str, Any]) -> list[dict]:
    from llm_embedder.retrieval.bm25 import BM25Index

    examples = read_examples(path)
    texts = [f"{e.input}\n{e.output}" for e in examples]
    index = BM25Index()
    index.add(texts)
    k = min(settings.candidates, len(examples) - 1)
    ids, _ = index.search([e.input for e in examples], k + 1)
    train = []
    for i, (example, row) in enumerate(zip(examples, ids, strict=True)):
        others = [int(j) for j in row.tolist() if int(j) != i and j >= 0][:k]
        train.append(
            {
                "query": example.input,
                "answers": [example.output],
                "pos": [],
                "neg": [texts[j] for j in others],
                "task": "icl",
            }
        )
    report["icl"] = {"source": str(path), "examples": len(examples), "counts": {"train": len(train)}}
    return train


def _queries(path, report: dict[str, Any]) -> dict[str, list[dict]]:
    from llm_embedder.fileio import iter_jsonl
    from llm_embedder.tasks import DEFAULT_TASKS

    by_task: dict[str, list[dict]] = {}
    for line, record in iter_jsonl(path):
        task = record.get("task")
        if task not in DEFAULT_TASKS:
            raise InputError(path, line, "task", f"expected one of {', '.join(DEFAULT_TASKS)}")
        if not isinstance(record.get("query"), str) or not record["query"].strip():
            raise InputError(path, line, "query", "expected a non-empty string")
        by_task.setdefault(task, []).append(record)
    report["queries"] = {"source": str(path), "counts": {t: len(r) for t, r in by_task.items()}}
    return by_task


LABELLED_DEV = {"qa": "qa/retrieval", "tool": "tool/toolbench"}
"""Tasks whose dev set a user's labelled queries replace, and its folder under ``dev/``."""


def _key_text(task: str, row: dict[str, Any]) -> str:
    return f"{row['title']} {row['text']}".strip() if task == "qa" else row["text"]


def _labelled_dev(task: str, records: list[dict], settings: UserDataSettings, out: Path) -> tuple[list[dict], set[str]]:
    """Hold out a seeded ``dev_share`` of ``task``'s labelled queries that have a positive as its dev set
    (replacing written dev queries; the corpus keeps the written dev corpus and gains their positives and
    negatives).  Return the other records and the held-out positives."""
    ids = [str(i) for i, r in enumerate(records) if r.get("pos")]
    held = split_by_source(ids, settings.dev_share, settings.seed)
    if not held:
        return records, set()
    corpus_file = out / "dev" / LABELLED_DEV[task] / "corpus.json"
    rows = read_jsonl(corpus_file) if corpus_file.is_file() else []
    index = {_key_text(task, r): i for i, r in enumerate(rows)}

    def position(text: str) -> int:
        if text not in index:
            index[text] = len(rows)
            rows.append({"title": "", "text": text} if task == "qa" else {"text": text})
        return index[text]

    tests = []
    for i in sorted(held, key=int):
        record = records[int(i)]
        pos = [position(t) for t in record["pos"]]
        for text in record.get("neg", []):
            position(text)
        tests.append({"query": record["query"], "pos_index": pos})
    _write_eval(out / "dev", LABELLED_DEV[task], tests, rows)
    rest = [r for i, r in enumerate(records) if str(i) not in held]
    return rest, {t for i in held for t in records[int(i)]["pos"]}


def _without_keys(task: str, records: list[dict], gone: set[str], out: Path) -> list[dict]:
    """Training without the keys ``gone``: a record whose positive is one is dropped, negatives lose them,
    and so does the training corpus."""
    if not gone:
        return records
    kept = []
    for r in records:
        if any(t in gone for t in r.get("pos", [])):
            continue
        kept.append(r | ({"neg": [t for t in r["neg"] if t not in gone]} if "neg" in r else {}))
    corpus = out / train_corpus_path(task)
    if corpus.is_file():
        write_jsonl(corpus, [row for row in read_jsonl(corpus) if _key_text(task, row) not in gone])
    return kept


def build_user_data(
    inputs: UserInputs,
    out: str | Path,
    lm: CausalLM | None,
    settings: UserDataSettings = UserDataSettings(),
    show_progress: bool = False,
) -> dict[str, Any]:
    """Write the data folder ``out`` (whole: built beside it and renamed when complete); return the report."""
    given = inputs.given()
    if not given:
        raise InputError(None, None, None, f"adapt needs at least one input: --{', --'.join(INPUT_KINDS)}")
    needs_lm = inputs.corpus or inputs.tools
    if needs_lm and lm is None:
        raise ValueError("writing questions and tool requests needs the LLM")
    report: dict[str, Any] = {}
    with atomic_path(out, is_dir=True) as tmp:
        train: dict[str, list[dict]] = {}
        if inputs.corpus:
            train["qa"] = _knowledge(lm, inputs.corpus, settings, tmp, report, show_progress)
        if inputs.tools:
            train["tool"] = _tools(lm, inputs.tools, settings, tmp, report, show_progress)
        if inputs.conversations:
            train["chat"] = _chat(inputs.conversations, settings, tmp, report)
        if inputs.documents:
            train["lrlm"] = _lrlm(inputs.documents, settings, report)
        if inputs.examples:
            train["icl"] = _icl(inputs.examples, settings, report)
        if inputs.queries:
            for task, records in _queries(inputs.queries, report).items():
                gone: set[str] = set()
                if task in LABELLED_DEV:
                    dev_size = len(records)
                    records, gone = _labelled_dev(task, records, settings, tmp)
                    if gone:
                        held = dev_size - len(records)
                        report["queries"]["counts"][f"{task} held out as dev (in place of written ones)"] = held
                train[task] = _without_keys(task, train.get(task, []) + records, gone, tmp)
        for task, records in train.items():
            if records:
                write_jsonl(tmp / "train" / f"{task}.json", records)
        if not any(train.values()):
            raise InputError(None, None, None, "no training query could be made from the inputs (see the counts above)")
        write_json(tmp / "generation.json", report)
        (tmp / "GENERATED.md").write_text(generated_markdown(report), encoding="utf-8")
    return report


def generated_markdown(report: dict[str, Any]) -> str:
    """What was generated and kept, per need, with samples: the file a user reads before trusting it."""
    lines = ["# What `adapt` made from your data", ""]
    for task, part in report.items():
        lines += [f"## {task} (from `{part.get('source')}`)", ""]
        lines += [f"- {what}: {n}" for what, n in part.get("counts", {}).items()]
        for record in part.get("sample", [])[:3]:
            lines += ["", "```json", json.dumps(record, ensure_ascii=False, indent=1)[:800], "```"]
        for reason, samples in part.get("dropped_samples", {}).items():
            lines += ["", f"Dropped as {reason}, for example:"]
            lines += [f"- {s['query']!r}" for s in samples[:3]]
        lines.append("")
    return "\n".join(lines)
