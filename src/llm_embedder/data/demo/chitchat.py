"""The chitchat-dataset conversations: chat (MSC-style memory) and convsearch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from llm_embedder.data.demo.common import DemoSize, TaskData, cut_words, norm_text, shuffled, word_count


def read_chitchat(chitchat_dir: Path) -> list[list[str]]:
    """Conversations (sorted by id) as turns: consecutive messages of one sender joined by spaces.
    Only conversations whose turns alternate between two senders are kept."""
    data = json.loads((chitchat_dir / "dataset.json").read_text(encoding="utf-8"))
    out = []
    for key in sorted(data):
        groups = data[key].get("messages", [])
        turns, senders = [], []
        for group in groups:
            text = " ".join(" ".join(str(m.get("text", "")).split()) for m in group).strip()
            sender = group[0].get("sender") if group else None
            if not text or sender is None:
                turns = []
                break
            if senders and sender == senders[-1]:
                turns[-1] += " " + text
                continue
            turns.append(text)
            senders.append(sender)
        if len(turns) >= 6 and len(set(senders)) == 2:
            out.append([cut_words(t, 400) for t in turns])
    return out


def build_chat(conversations: list[list[str]], size: DemoSize, rng: np.random.Generator) -> TaskData:
    """MSC-style memory: the conversation's earlier exchanges are the candidates.

    For each conversation (one record each, train and test from different conversations) an even
    turn ``q`` (12-16, so 6-8 earlier exchanges) is the ``query``, the next turn the answer; the
    ``history`` is the earlier turns in pairs ``"Speaker 1: ...\\nSpeaker 2: ..."`` where Speaker 1
    is the query's speaker.  Query and answer need 4+ words.
    """
    k = size.candidates
    records, seen = [], set()
    for turns in conversations:
        options = [
            q
            for q in range(12, 2 * k + 1, 2)
            if q + 1 < len(turns) and word_count(turns[q]) >= 4 and word_count(turns[q + 1]) >= 4
        ]
        if not options or len(records) >= size.train + size.test:
            continue
        q = options[int(rng.integers(len(options)))]
        if norm_text(turns[q]) in seen:
            continue
        seen.add(norm_text(turns[q]))
        history = [f"Speaker 1: {turns[j]}\nSpeaker 2: {turns[j + 1]}" for j in range(0, q, 2)]
        records.append({"query": turns[q], "answers": [turns[q + 1]], "history": history})
    if len(records) < size.train + size.test:
        raise RuntimeError(f"chat: only {len(records)} conversations usable")
    test = [{**r, "query_id": i} for i, r in enumerate(records[: size.test])]
    train = [{**r, "task": "chat", "query_id": i} for i, r in enumerate(records[size.test :])]
    return TaskData(train, {"chat/msc/test.json": test})


def build_convsearch(conversations: list[list[str]], size: DemoSize, rng: np.random.Generator) -> TaskData:
    """Conversational search as next-response retrieval (a stand-in for QReCC).

    Per conversation one turn ``r`` (3rd or later, 8+ words) is the passage to find: the query is
    the turn before it followed by up to three earlier turns, most recent first (QReCC's "concat"
    form: question, then context); ``pos`` is turn ``r``; ``answers`` the turn after it.  The
    corpus is all these target turns plus turns of 8+ words from other conversations.
    """
    need = size.train + size.test
    picked, seen, distractors = [], set(), []
    for turns in conversations:
        if len(picked) < need:
            options = [
                r
                for r in range(3, len(turns) - 1)
                if word_count(turns[r]) >= 8 and word_count(turns[r - 1]) >= 4 and word_count(turns[r + 1]) >= 3
            ]
            if options:
                r = options[int(rng.integers(len(options)))]
                query = " ".join([turns[r - 1], *reversed(turns[max(0, r - 4) : r - 1])])
                if norm_text(query) not in seen and norm_text(turns[r]) not in seen:
                    seen |= {norm_text(query), norm_text(turns[r])}
                    picked.append((query, turns[r], turns[r + 1]))
                    continue
        distractors += [t for t in turns if word_count(t) >= 8]
        if len(picked) >= need and len(distractors) >= 3 * size.convsearch_corpus:
            break
    if len(picked) < need:
        raise RuntimeError(f"convsearch: only {len(picked)} conversations usable")
    targets = [p[1] for p in picked]
    target_keys = {norm_text(t) for t in targets}
    extra, taken = [], set()
    for t in shuffled(distractors, rng):
        if len(targets) + len(extra) >= size.convsearch_corpus:
            break
        if norm_text(t) not in target_keys and norm_text(t) not in taken:
            taken.add(norm_text(t))
            extra.append(t)
    texts = shuffled(targets + extra, rng)
    row_of = {t: i for i, t in enumerate(texts)}
    corpus = [{"text": t} for t in texts]
    test = [
        {"query": q, "answers": [a], "pos_index": [row_of[p]], "query_id": i}
        for i, (q, p, a) in enumerate(picked[: size.test])
    ]
    train = [
        {"query": q, "answers": [a], "pos": [p], "pos_index": [row_of[p]], "task": "convsearch", "query_id": i}
        for i, (q, p, a) in enumerate(picked[size.test :])
    ]
    return TaskData(
        train,
        {"convsearch/qrecc/test.concat.json": test, "convsearch/qrecc/corpus.json": corpus},
        corpus_file="convsearch/qrecc/corpus.json",
    )
