"""icl: four real in-context-learning task sets (sentiment, topic, analogy, trivia)."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import zip_longest
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
    split_counts,
    train_corpus_path,
    word_count,
)
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

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader where libyaml is there: 10x faster
    data = yaml.load((chatterbot_dir / "data" / "english" / f"{name}.yml").read_text(encoding="utf-8"), Loader=loader)
    return [[str(x).strip() for x in conv] for conv in data.get("conversations", []) if isinstance(conv, list)]


TOPICS = ("coding", "money", "movies", "science", "sports", "tech_support")
OOD_TOPICS = ("ai", "emotion", "humor", "literature", "psychology")
"""Topic files of the ood topic task, none of them among ``TOPICS``."""

Tasks = dict[str, tuple[list["Demo"], list[str] | None]]


@dataclass(frozen=True)
class Demo:
    input: str
    output: str
    group: str
    """Demonstrations of the same group are the labelled positives (same class / same relation)."""
    content: tuple[str, ...] = ()
    """What the example teaches, as keys no two splits may share: an analogy's two word pairs (its
    answer pair shown in any other split would give the answer away); empty: its input."""

    @property
    def keys(self) -> tuple[str, ...]:
        return self.content or (norm_text(self.input),)


def _topic_demos(
    chatterbot_dir: Path, topics: tuple[str, ...], rng: np.random.Generator
) -> tuple[list[Demo], list[str]]:
    """First messages of the topics' chatterbot conversations -> the topic, round-robin over topics
    so that every split sees every topic (tech support is 1,000+ long)."""
    names = [t.replace("_", " ") for t in topics]
    question = "Which topic is this message about: " + ", ".join(names[:-1]) + f" or {names[-1]}?"
    by_topic = []
    for topic, name in zip(topics, names, strict=True):
        firsts = [conv[0] for conv in read_chatterbot(chatterbot_dir, topic) if conv and word_count(conv[0]) >= 2]
        by_topic.append(shuffled([Demo(f"Message: {m}\n{question}", name, name) for m in firsts], rng))
    return [d for group in zip_longest(*by_topic) for d in group if d is not None], names


def _analogy_demos(gensim_dir: Path, grammar: bool) -> list[Demo]:
    """The word2vec analogy questions of the semantic sections, or of the grammatical (``gram*``) ones."""
    return [
        Demo(f"Complete the analogy: {a} is to {b} as {c} is to", d, section, (_pair(a, b), _pair(c, d)))
        for section, (a, b, c, d) in read_analogies(gensim_dir)
        if section.startswith("gram") == grammar
    ]


def _pair(x: str, y: str) -> str:
    """A word pair as a key, either order ("Athens Greece" and "Greece Athens" give the same away)."""
    return " | ".join(sorted((x.lower(), y.lower())))


def split_by_content(demos: list[Demo], sizes: list[int]) -> list[list[Demo]]:
    """``demos`` dealt in order into splits of ``sizes`` (the first filled first; the last may come up
    short), so that no content key is in two splits: an example sharing a key with an earlier split
    is left out.  Examples whose keys are their unique inputs are dealt as consecutive slices."""
    out: list[list[Demo]] = [[] for _ in sizes]
    owner: dict[str, int] = {}
    split = 0
    for d in demos:
        while split < len(sizes) and len(out[split]) >= sizes[split]:
            split += 1
        if split == len(sizes):
            break
        if any(owner.get(key, split) != split for key in d.keys):
            continue
        owner.update(dict.fromkeys(d.keys, split))
        out[split].append(d)
    return out


def _unique(tasks: Tasks, rng: np.random.Generator, keep_order: tuple[str, ...]) -> Tasks:
    """Each task's examples shuffled (except ``keep_order``), first of each input kept."""
    out = {}
    for name, (demos, options) in tasks.items():
        demos = demos if name in keep_order else shuffled(demos, rng)
        unique, seen = [], set()
        for d in demos:
            if norm_text(d.input) not in seen:
                seen.add(norm_text(d.input))
                unique.append(d)
        out[name] = (unique, options)
    return out


def icl_tasks(gensim_dir: Path, chatterbot_dir: Path, rng: np.random.Generator) -> Tasks:
    """The ICL task names, each with its examples (shuffled, unique inputs) and options (classification) or None."""
    tasks: Tasks = {}
    sentiment = [
        Demo(f"Review: {text}\nIs this movie review positive or negative?", label, label)
        for label, text in read_polarity(gensim_dir)
    ]
    tasks["sentiment"] = (sentiment, ["negative", "positive"])
    topic_demos, topic_names = _topic_demos(chatterbot_dir, TOPICS, rng)
    tasks["topic"] = (topic_demos, topic_names)
    tasks["analogy"] = (_analogy_demos(gensim_dir, grammar=False), None)
    trivia = [
        Demo(f"Question: {conv[0]}", conv[1].rstrip(". "), "trivia")
        for conv in read_chatterbot(chatterbot_dir, "trivia")
        if len(conv) >= 2 and conv[1].rstrip(". ")
    ]
    tasks["trivia"] = (trivia, None)
    return _unique(tasks, rng, keep_order=("topic",))


def ood_icl_tasks(gensim_dir: Path, chatterbot_dir: Path, rng: np.random.Generator) -> Tasks:
    """The ood ICL task names: other topics, grammatical analogies."""
    topic_demos, topic_names = _topic_demos(chatterbot_dir, OOD_TOPICS, rng)
    tasks: Tasks = {
        "topic-other": (topic_demos, topic_names),
        "analogy-grammar": (_analogy_demos(gensim_dir, grammar=True), None),
    }
    return _unique(tasks, rng, keep_order=("topic-other",))


def _test_record(d: Demo, name: str, options: list[str] | None) -> dict[str, Any]:
    record: dict[str, Any] = {"query": d.input, "answers": [d.output], "task_name": name}
    if options:
        record["options"] = options
    return record


def _pool_rows(pool: list[Demo], name: str) -> list[dict[str, Any]]:
    return [{"contents": f"{d.input}\n{d.output}", "task_name": name} for d in pool]


def build_icl(gensim_dir: Path, chatterbot_dir: Path, size: DemoSize, rng: np.random.Generator) -> TaskData:
    """In-context learning over four real task names.

    - ``sentiment`` (classification): a Pang & Lee movie-review sentence -> positive / negative;
    - ``topic`` (classification): the first message of a chatterbot-corpus conversation -> the topic
      file it comes from (coding, money, movies, science, sports, tech support);
    - ``analogy`` (generation): a word2vec analogy question of a semantic section (capitals,
      currencies, cities in states, family) "a is to b as c is to" -> d;
    - ``trivia`` (generation): a chatterbot trivia question -> its answer.

    Each task's unique examples are shuffled and split into test queries, dev queries, training
    queries and the demonstration pool (the corpus, ``contents`` = "input\noutput"); the four are
    disjoint by content, not only by string: no word pair of an analogy (its answer pair included)
    is in two of them, since "Athens is to Greece as Baghdad is to Iraq" in the pool answers the
    test question "Paris is to France as Baghdad is to".  A training record's ``pos`` are 3 pool
    demonstrations of the same group (class, analogy relation, or any trivia) drawn at random; the
    LLM teacher re-ranks them later; negatives are mined.

    ood (its own corpus of demonstrations): ``topic-other``, the topic task over other chatterbot
    files (ai, emotion, humor, literature, psychology), and ``analogy-grammar``, the grammatical
    analogy sections (adjective to adverb, plurals, tenses, ...), which no other split uses.  Each
    task's ood queries are split (seeded, about half each) into ood-dev and ood-test by whole
    analogy section, or by message (each opens its own chatterbot conversation); the two halves share
    the ood demonstrations.
    """
    tasks = icl_tasks(gensim_dir, chatterbot_dir, rng)
    names = list(tasks)
    test_n = split_counts(size.test_of("icl"), len(names))
    train_n = split_counts(size.train, len(names))
    corpus: list[dict[str, Any]] = []
    train, test, dev = [], [], []
    for t, name in enumerate(names):
        demos, options = tasks[name]
        need = [test_n[t], test_n[t], train_n[t]]
        test_items, dev_items, train_items, pool = split_by_content(demos, [*need, size.icl_pool_per_task])
        if [len(x) for x in (test_items, dev_items, train_items)] != need or len(pool) < 10:
            raise RuntimeError(f"icl/{name}: {len(demos)} examples are too few for {need} and a pool of 10")
        start = len(corpus)
        corpus += _pool_rows(pool, name)
        by_group: dict[str, list[int]] = {}
        for j, d in enumerate(pool):
            by_group.setdefault(d.group, []).append(start + j)
        test += [_test_record(d, name, options) for d in test_items]
        dev += [_test_record(d, name, options) for d in dev_items]
        for d in train_items:
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
    ood_tasks = ood_icl_tasks(gensim_dir, chatterbot_dir, rng)
    ood_n = split_counts(size.test_of("icl"), len(ood_tasks))
    ood: list[tuple[dict[str, Any], str]] = []  # (record, its half)
    ood_corpus = []
    for n, (name, (demos, options)) in zip(ood_n, ood_tasks.items(), strict=True):
        ood_items, ood_pool = split_by_content(demos, [n, size.icl_pool_per_task])
        # an analogy section's questions share word pairs: one section is one cluster; a topic message is its own
        cluster_of = {d.input: d.group if options is None else d.input for d in ood_items}
        side = seeded_halves(list(cluster_of.values()), rng)
        ood += [(_test_record(d, name, options), side[cluster_of[d.input]]) for d in ood_items]
        ood_corpus += _pool_rows(ood_pool, name)
    split = halve_ood({"test": test, "dev": dev, "ood": ood}, lambda item: item[1])
    halves = {half: [r for r, _ in split[half]] for half in ("ood-dev", "ood-test")}
    for records in (train, test, dev, *halves.values()):
        for i, r in enumerate(records):
            r["query_id"] = i
    return TaskData(
        train,
        "icl/icl/test.json",
        {
            "eval/icl/icl/test.json": test,
            "eval/icl/icl/corpus.json": corpus,
            "dev/icl/icl/test.json": dev,
            **{f"{EVAL_SPLITS[half]}/icl/icl/test.json": records for half, records in halves.items()},
            "ood-test/icl/icl/corpus.json": ood_corpus,
        },
        # ICL queries have no labelled key: the pool is the demonstration collection that training
        # and evaluation both retrieve from, as in the paper; what keeps test content out of it is the
        # split by content (no test item's input is in it).
        train_corpus=train_corpus_path("icl"),
        linked={
            "dev/icl/icl/corpus.json": "eval/icl/icl/corpus.json",
            **ood_linked(["icl/icl/corpus.json"]),
            train_corpus_path("icl"): "eval/icl/icl/corpus.json",
        },
        notes={"task_names": names, "ood_task_names": list(ood_tasks)},
    )
