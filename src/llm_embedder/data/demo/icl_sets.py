"""icl: four real in-context-learning task sets (sentiment, topic, analogy, trivia)."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Any

import numpy as np

from llm_embedder.data.demo.common import DemoSize, TaskData, norm_text, shuffled, word_count
from llm_embedder.data.demo.sources import SOURCES


def read_polarity(gensim_dir: Path) -> list[tuple[str, str]]:
    """``(label, sentence)`` of the Pang & Lee polarity sample (``negative``/``positive``); the file is
    Windows-1252 text (lower-cased and tokenised, as released)."""
    out = []
    for line in (gensim_dir / SOURCES["gensim"].files[2]).read_bytes().decode("cp1252").splitlines():
        label, _, text = line.strip().partition(" ")
        if label in ("__label__neg", "__label__pos") and text.strip():
            out.append(("positive" if label.endswith("pos") else "negative", text.strip()))
    return out


def read_analogies(gensim_dir: Path) -> list[tuple[str, list[str]]]:
    """``(section, [a, b, c, d])`` of the word2vec analogy questions."""
    out, section = [], ""
    for line in (gensim_dir / SOURCES["gensim"].files[1]).read_text(encoding="utf-8").splitlines():
        if line.startswith(":"):
            section = line[1:].strip()
        elif len(line.split()) == 4:
            out.append((section, line.split()))
    return out


def read_chatterbot(chatterbot_dir: Path, name: str) -> list[list[str]]:
    """The conversations (lists of strings) of one English chatterbot-corpus file."""
    import yaml

    data = yaml.safe_load((chatterbot_dir / "data" / "english" / f"{name}.yml").read_text(encoding="utf-8"))
    return [[str(x).strip() for x in conv] for conv in data.get("conversations", []) if isinstance(conv, list)]


TOPICS = ("coding", "money", "movies", "science", "sports", "tech_support")


@dataclass(frozen=True)
class Demo:
    input: str
    output: str
    group: str
    """Demonstrations of the same group are the labelled positives (same class / same relation)."""


def icl_tasks(
    gensim_dir: Path, chatterbot_dir: Path, rng: np.random.Generator
) -> dict[str, tuple[list[Demo], list[str] | None]]:
    """The ICL task names, each with its examples (shuffled, unique inputs) and options (classification) or None."""
    tasks: dict[str, tuple[list[Demo], list[str] | None]] = {}

    sentiment = [
        Demo(f"Review: {text}\nIs this movie review positive or negative?", label, label)
        for label, text in read_polarity(gensim_dir)
    ]
    tasks["sentiment"] = (sentiment, ["negative", "positive"])

    topic_names = [t.replace("_", " ") for t in TOPICS]
    question = "Which topic is this message about: " + ", ".join(topic_names[:-1]) + f" or {topic_names[-1]}?"
    by_topic = []
    for topic, name in zip(TOPICS, topic_names, strict=True):
        firsts = [conv[0] for conv in read_chatterbot(chatterbot_dir, topic) if conv and word_count(conv[0]) >= 2]
        by_topic.append(shuffled([Demo(f"Message: {m}\n{question}", name, name) for m in firsts], rng))
    # round-robin over topics so that every split sees every topic (tech support is 1,000+ long)
    topic_demos = [d for group in zip_longest(*by_topic) for d in group if d is not None]
    tasks["topic"] = (topic_demos, topic_names)

    analogies = [
        Demo(f"Complete the analogy: {a} is to {b} as {c} is to", d, section)
        for section, (a, b, c, d) in read_analogies(gensim_dir)
    ]
    tasks["analogy"] = (analogies, None)

    trivia = [
        Demo(f"Question: {conv[0]}", conv[1].rstrip(". "), "trivia")
        for conv in read_chatterbot(chatterbot_dir, "trivia")
        if len(conv) >= 2 and conv[1].rstrip(". ")
    ]
    tasks["trivia"] = (trivia, None)

    out = {}
    for name, (demos, options) in tasks.items():
        demos = demos if name == "topic" else shuffled(demos, rng)
        unique, seen = [], set()
        for d in demos:
            if norm_text(d.input) not in seen:
                seen.add(norm_text(d.input))
                unique.append(d)
        out[name] = (unique, options)
    return out


def _split_counts(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


def build_icl(gensim_dir: Path, chatterbot_dir: Path, size: DemoSize, rng: np.random.Generator) -> TaskData:
    """In-context learning over four real task names.

    - ``sentiment`` (classification): a Pang & Lee movie-review sentence -> positive / negative;
    - ``topic`` (classification): the first message of a chatterbot-corpus conversation -> the topic
      file it comes from (coding, money, movies, science, sports, tech support);
    - ``analogy`` (generation): a word2vec analogy question "a is to b as c is to" -> d;
    - ``trivia`` (generation): a chatterbot trivia question -> its answer.

    Each task's unique examples are shuffled and split into test queries, training queries and the
    demonstration pool (the corpus, ``contents`` = "input\\noutput"); the three are disjoint.  A
    training record's ``pos`` are 3 pool demonstrations of the same group (class, analogy relation,
    or any trivia) drawn at random; the LLM teacher re-ranks them later; negatives are mined.
    """
    tasks = icl_tasks(gensim_dir, chatterbot_dir, rng)
    names = list(tasks)
    test_n = _split_counts(size.test, len(names))
    train_n = _split_counts(size.train, len(names))
    corpus: list[dict[str, Any]] = []
    train, test = [], []
    for t, name in enumerate(names):
        demos, options = tasks[name]
        a, b = test_n[t], test_n[t] + train_n[t]
        if len(demos) < b + 10:
            raise RuntimeError(f"icl/{name}: {len(demos)} examples, {b + 10} needed")
        pool = demos[b : b + size.icl_pool_per_task]
        start = len(corpus)
        corpus += [{"contents": f"{d.input}\n{d.output}", "task_name": name} for d in pool]
        by_group: dict[str, list[int]] = {}
        for j, d in enumerate(pool):
            by_group.setdefault(d.group, []).append(start + j)
        for d in demos[:a]:
            record = {"query": d.input, "answers": [d.output], "task_name": name}
            if options:
                record["options"] = options
            test.append(record)
        for d in demos[a:b]:
            same = by_group.get(d.group) or list(range(start, len(corpus)))
            pos = sorted(rng.choice(same, min(3, len(same)), replace=False).tolist())
            train.append(
                {
                    "query": d.input,
                    "answers": [d.output],
                    "pos": [corpus[i]["contents"] for i in pos],
                    "pos_index": pos,
                    "task": "icl",
                    "task_name": name,
                }
            )
    for i, r in enumerate(train):
        r["query_id"] = i
    for i, r in enumerate(test):
        r["query_id"] = i
    return TaskData(
        train,
        {"icl/icl/test.json": test, "icl/icl/corpus.json": corpus},
        corpus_file="icl/icl/corpus.json",
        notes={"task_names": names},
    )
