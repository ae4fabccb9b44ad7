"""Queries written by the user's LLM, for data that has none: questions a passage answers, requests a tool serves.

The recipe is InPars / Promptagator's: a few-shot prompt per key, several queries per key (each from
another set of demonstrations, so that greedy decoding still gives different queries), duplicates
dropped, then a **consistency filter**: a query is kept only if BM25 over all keys ranks its own key
within the top ``filter_top_k``.  Generation is batched and each row stops at the end of its line
(:meth:`CausalLM.generate`).  For questions, the LLM then extracts a short answer from the passage: the
text whose likelihood is the reward when candidates are scored.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from llm_embedder.models.lm import CausalLM

# Our own demonstrations (short, varied in form): (passage, question, answer) and (tool, request).
QUESTION_SHOTS = (
    (
        "The Amazon River flows through Peru, Colombia and Brazil before reaching the Atlantic Ocean. "
        "It carries more water than any other river in the world.",
        "Which ocean does the Amazon River flow into?",
        "the Atlantic Ocean",
    ),
    (
        "To reset the router, hold the recessed button on the back panel for ten seconds until the light "
        "blinks orange. Settings return to their factory values.",
        "How long do you hold the button to reset the router?",
        "ten seconds",
    ),
    (
        "Marie Curie was the first person to win Nobel Prizes in two sciences: physics in 1903 and chemistry in 1911.",
        "In which year did Marie Curie win the Nobel Prize in chemistry?",
        "1911",
    ),
    (
        "Employees may carry over up to five unused vacation days into the next calendar year; days "
        "beyond that expire on December 31.",
        "What happens to unused vacation days beyond five at the end of the year?",
        "they expire on December 31",
    ),
)
REQUEST_SHOTS = (
    (
        'get_weather, Current weather for a city, required_params: [{"name": "city", "type": "string", '
        '"description": "City name"}], optional_params: []',
        "What's the weather like in Lisbon right now?",
    ),
    (
        'send_email, Send an email message, required_params: [{"name": "to", "type": "string", "description": '
        '"Recipient"}, {"name": "body", "type": "string", "description": "Message text"}], optional_params: []',
        "Email Sam that the meeting moved to 3pm.",
    ),
    (
        'convert_currency, Convert an amount between currencies, required_params: [{"name": "amount", "type": '
        '"number", "description": ""}, {"name": "to", "type": "string", "description": "Target currency"}], '
        "optional_params: []",
        "How much is 250 dollars in euros?",
    ),
    (
        'create_reminder, Create a reminder at a given time, required_params: [{"name": "text", "type": '
        '"string", "description": ""}, {"name": "time", "type": "string", "description": "ISO time"}], '
        "optional_params: []",
        "Remind me to call the dentist tomorrow at 9.",
    ),
)
KEY_CHARS = 900
"""A key is cut to this many characters in a prompt: the LLM needs its gist, not all of it."""


@dataclass(frozen=True)
class GenerationSettings:
    per_key: int = 2
    """Queries written per passage or tool (each from another pair of demonstrations)."""
    per_tool: int | None = None
    """Requests written per tool, when it should differ from ``per_key`` (a user has few tools and
    many passages, so more requests per tool cost little); none: ``per_key``."""
    filter_top_k: int = 3
    """Consistency filter: keep a query whose key BM25 ranks within this many (0: no filter)."""
    max_new_tokens: int = 40
    batch_size: int = 16
    max_keys: int | None = None
    """Write queries for at most this many keys (a seeded sample; none: all).  The other keys still
    count in the consistency filter and, for passages, as negatives."""

    def __post_init__(self) -> None:
        for name in ("per_key", "per_tool"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= MAX_PER_KEY:
                raise ValueError(f"{name} must be 1-{MAX_PER_KEY} (the pairs of demonstrations), got {value}")
        if self.filter_top_k < 0:
            raise ValueError(f"filter_top_k must be 0 (off) or more, got {self.filter_top_k}")
        if self.max_keys is not None and self.max_keys < 1:
            raise ValueError(f"max_keys must be at least 1 (or none for all), got {self.max_keys}")


@dataclass
class Generated:
    """Kept queries (``source``: the index of their key) and what each step dropped."""

    queries: list[str] = field(default_factory=list)
    sources: list[int] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    dropped_samples: dict[str, list[dict[str, str]]] = field(default_factory=dict)


def _shots(shots: Sequence[tuple[str, ...]], variant: int) -> list[tuple[str, ...]]:
    """The ``variant``-th ordered pair of demonstrations, each pair different: first the neighbours
    (0, 1), (1, 2), ..., then shots two apart, and so on (``n * (n - 1)`` pairs for ``n`` shots)."""
    n = len(shots)
    gap, start = divmod(variant % (n * (n - 1)), n)
    return [shots[start], shots[(start + gap + 1) % n]]


_FEWEST_SHOTS = min(len(QUESTION_SHOTS), len(REQUEST_SHOTS))
MAX_PER_KEY = _FEWEST_SHOTS * (_FEWEST_SHOTS - 1)
"""Prompts per key that differ (greedy decoding repeats itself on the same prompt)."""


def _cut(text: str, chars: int = KEY_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= chars else text[:chars].rsplit(" ", 1)[0] + " ..."


def question_prompt(passage: str, variant: int) -> str:
    parts = [f"Passage: {_cut(p)}\nQuestion: {q}\n" for p, q, _ in _shots(QUESTION_SHOTS, variant)]
    return "\n".join([*parts, f"Passage: {_cut(passage)}\nQuestion:"])


def request_prompt(tool: str, variant: int) -> str:
    parts = [f"Tool: {_cut(t)}\nUser request: {q}\n" for t, q in _shots(REQUEST_SHOTS, variant)]
    return "\n".join([*parts, f"Tool: {_cut(tool)}\nUser request:"])


def answer_prompt(passage: str, question: str) -> str:
    parts = [f"Passage: {_cut(p)}\nQuestion: {q}\nAnswer: {a}\n" for p, q, a in _shots(QUESTION_SHOTS, 0)]
    return "\n".join([*parts, f"Passage: {_cut(passage)}\nQuestion: {question}\nAnswer:"])


def clean_query(text: str, question: bool) -> str | None:
    """The generated line as a query, or None when it is not one (too short or long; for questions,
    no question mark; a copy of a demonstration)."""
    text = " ".join(text.strip().strip('"').split())
    if question and "?" in text:
        text = text[: text.index("?") + 1]
    words = len(text.split())
    if words < 3 or words > 40 or (question and not text.endswith("?")):
        return None
    if not question and ("_params" in text or any(c in text for c in "{}[]")):
        return None  # a copy of the tool's rendering, not a request
    if text in {shot[1] for shot in (*QUESTION_SHOTS, *REQUEST_SHOTS)}:
        return None
    return text


def _names_the_tool(query: str, tool_text: str) -> bool:
    """Whether ``query`` holds the tool's name (the rendered key's first field), e.g. ``get_weather``."""
    name = tool_text.split(",", 1)[0].strip()
    return bool(name) and name.lower() in query.lower()


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def consistent(queries: Sequence[str], sources: Sequence[int], keys: Sequence[str], top_k: int) -> list[bool]:
    """Whether BM25 over ``keys`` ranks each query's own key (``sources``) within ``top_k``."""
    from llm_embedder.retrieval.bm25 import BM25Index

    if top_k <= 0 or not queries:
        return [True] * len(queries)
    index = BM25Index()
    index.add(list(keys))
    _, ids = index.search(list(queries), min(top_k, len(keys)))
    return [int(source) in set(row.tolist()) for row, source in zip(ids, sources, strict=True)]


def write_queries(
    lm: CausalLM,
    keys: Sequence[str],
    settings: GenerationSettings,
    kind: str,
    show_progress: bool = False,
    seed: int = 0,
) -> Generated:
    """``settings.per_key`` queries for each key (``per_tool`` for tools, when set; ``kind``: ``question``
    for passages, ``request`` for tools; at most ``settings.max_keys`` keys, a sample seeded by
    ``seed``), cleaned, deduplicated and filtered for consistency against all keys."""
    question = kind == "question"
    make = question_prompt if question else request_prompt
    chosen = range(len(keys))
    if settings.max_keys is not None and settings.max_keys < len(keys):
        chosen = sorted(np.random.default_rng(seed).permutation(len(keys))[: settings.max_keys].tolist())
    per_key = settings.per_key if question or settings.per_tool is None else settings.per_tool
    jobs = [(i, v) for i in chosen for v in range(per_key)]
    prompts = [make(keys[i], v) for i, v in jobs]
    texts = _generate(lm, prompts, settings, show_progress, f"writing {kind}s")
    out = Generated()
    out.counts["written"] = len(texts)
    candidates: list[tuple[str, int]] = []
    seen: set[str] = set()
    for (i, _), text in zip(jobs, texts, strict=True):
        query = clean_query(text, question)
        if query is not None and not question and _names_the_tool(query, keys[i]):
            query = None  # the tool's own name: a copy of its description, not a user's words
        reason = "malformed" if query is None else "duplicate" if _norm(query) in seen else None
        if reason:
            out.counts[f"dropped: {reason}"] += 1
            _sample(out, reason, text, keys[i])
            continue
        seen.add(_norm(query))
        candidates.append((query, i))
    keep = consistent([q for q, _ in candidates], [i for _, i in candidates], keys, settings.filter_top_k)
    for (query, i), ok in zip(candidates, keep, strict=True):
        if ok:
            out.queries.append(query)
            out.sources.append(i)
        else:
            out.counts["dropped: inconsistent"] += 1
            _sample(out, "inconsistent", query, keys[i])
    out.counts["kept"] = len(out.queries)
    return out


def write_answers(
    lm: CausalLM, questions: Sequence[str], passages: Sequence[str], settings: GenerationSettings, show_progress=False
) -> list[str]:
    """A short answer to each question, extracted by the LLM from its passage ("" when none)."""
    prompts = [answer_prompt(p, q) for q, p in zip(questions, passages, strict=True)]
    return [" ".join(a.split()) for a in _generate(lm, prompts, settings, show_progress, "extracting answers")]


def _generate(lm: CausalLM, prompts: list[str], settings: GenerationSettings, show_progress: bool, what: str):
    """Greedy continuations of ``prompts``.  Under ``torchrun`` each rank writes every ``world``-th prompt
    (as ``score`` deals its chunks) and all ranks receive every answer, in input order."""
    from tqdm.auto import tqdm

    from llm_embedder import distributed as dist_utils

    world, rank = dist_utils.world_size(), dist_utils.rank()
    mine = prompts[rank::world]
    out: list[str] = []
    step = settings.batch_size  # one batch per bar update
    label = f"{what}[{rank}]" if world > 1 else what
    with tqdm(total=len(mine), desc=label, unit="prompt", disable=not show_progress) as bar:
        for start in range(0, len(mine), step):
            chunk = mine[start : start + step]
            out.extend(lm.generate(chunk, max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size))
            bar.update(len(chunk))
    if world == 1:
        return out
    import torch.distributed as dist

    parts: list[list[str]] = [[] for _ in range(world)]
    dist.all_gather_object(parts, out)
    return [parts[i % world][i // world] for i in range(len(prompts))]


def _sample(out: Generated, reason: str, text: str, key: str, limit: int = 5) -> None:
    bucket = out.dropped_samples.setdefault(reason, [])
    if len(bucket) < limit:
        bucket.append({"query": text.strip(), "key": _cut(key, 300)})


def split_by_source(sources: Sequence[str], dev_share: float, seed: int) -> set[str]:
    """The sources (documents, tools, conversations) held out for dev: a seeded ``dev_share`` of them,
    at least one when there are two or more, never all."""
    unique = sorted(set(sources))
    if len(unique) < 2 or dev_share <= 0:
        return set()
    n = min(len(unique) - 1, max(1, round(dev_share * len(unique))))
    rng = np.random.default_rng(seed)
    return {unique[i] for i in rng.permutation(len(unique))[:n].tolist()}
