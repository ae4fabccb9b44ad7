"""chat (MSC-style memory) from the chitchat-dataset conversations."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llm_embedder.data.demo.common import (
    EVAL_SPLITS,
    DemoSize,
    TaskData,
    cut_words,
    halve_ood,
    norm_text,
    seeded_halves,
    shuffled,
    word_count,
)


@dataclass(frozen=True)
class Conversation:
    key: str
    """The conversation's id in the dataset."""
    prompt: str
    """The conversation starter the two people were given ("" when none)."""
    turns: list[str]


def read_chitchat(chitchat_dir: Path) -> list[Conversation]:
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
            prompt = " ".join(str(data[key].get("prompt") or "").split())
            out.append(Conversation(key, prompt, [cut_words(t, 400) for t in turns]))
    return out


OOD_PROMPT_SHARE = 0.15
"""Share of the conversation starters (prompts) whose conversations are held back for ood."""


def build_chat(conversations: list[Conversation], size: DemoSize, rng: np.random.Generator) -> TaskData:
    """MSC-style memory: the conversation's earlier exchanges are the candidates.

    For each conversation (one record each; train, dev and test from different conversations) an
    even turn ``q`` (12-16, so 6-8 earlier exchanges) is the ``query``, the next turn the answer;
    the ``history`` is the earlier turns in pairs ``"Speaker 1: ...\\nSpeaker 2: ..."`` where
    Speaker 1 is the query's speaker; ``conversation`` is the dataset's id; an eval record's
    ``cluster`` is its conversation starter (prompt; without one, the conversation).  Query and answer need
    4+ words.  ood: conversations started from other prompts (a seeded 15% of the conversation
    starters of the same chat set are held back; no train, dev or test conversation had one of them),
    split by conversation starter (seeded, about half the starters each) into ood-dev and ood-test.
    The other installed chat corpus, chatterbot-corpus, has conversations of 2-6 lines: too short for
    a memory of 6+ exchanges, so it cannot serve here.
    """
    k = size.candidates
    prompts = sorted({c.prompt for c in conversations if c.prompt})
    held = {prompts[i] for i in rng.permutation(len(prompts))[: round(OOD_PROMPT_SHARE * len(prompts))].tolist()}
    pools: dict[str, list[dict[str, Any]]] = {"in": [], "ood": []}
    n_test = size.test_of("chat")
    need = {"in": size.train + 2 * n_test, "ood": n_test}
    seen: set[str] = set()
    prompts_of: dict[str, str] = {}
    for conv in shuffled(conversations, rng):
        part = "ood" if conv.prompt in held else "in"
        turns, pool = conv.turns, pools[part]
        options = [
            q
            for q in range(12, 2 * k + 1, 2)
            if q + 1 < len(turns) and word_count(turns[q]) >= 4 and word_count(turns[q + 1]) >= 4
        ]
        if not options or len(pool) >= need[part]:
            continue
        q = options[int(rng.integers(len(options)))]
        if norm_text(turns[q]) in seen:
            continue
        seen.add(norm_text(turns[q]))
        history = [f"Speaker 1: {turns[j]}\nSpeaker 2: {turns[j + 1]}" for j in range(0, q, 2)]
        pool.append({"query": turns[q], "answers": [turns[q + 1]], "history": history, "conversation": conv.key})
        prompts_of[conv.key] = conv.prompt
    if len(pools["in"]) < need["in"]:
        raise RuntimeError(f"chat: only {len(pools['in'])} conversations usable")
    n = n_test
    split_records = {"test": pools["in"][:n], "dev": pools["in"][n : 2 * n], "ood": pools["ood"]}
    side = seeded_halves([prompts_of[r["conversation"]] for r in pools["ood"]], rng)
    split_records = halve_ood(split_records, lambda r: side[prompts_of[r["conversation"]]])
    files = {
        # conversations started from one prompt share a topic: the leaderboard resamples whole prompts
        f"{folder}/chat/msc/test.json": [
            {
                **r,
                "cluster": prompts_of[r["conversation"]] or r["conversation"],
                "cluster_unit": "prompt",
                "query_id": i,
            }
            for i, r in enumerate(split_records[split])
        ]
        for split, folder in EVAL_SPLITS.items()
    }
    train = [{**r, "task": "chat", "query_id": i} for i, r in enumerate(pools["in"][2 * n :])]
    return TaskData(train, "chat/msc/test.json", files, notes={"ood_prompts": len(held), "prompts": len(prompts)})
