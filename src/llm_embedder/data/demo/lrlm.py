"""lrlm: long-range language modelling on whole Wikipedia articles."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from llm_embedder.data.demo.common import EVAL_SPLITS, DemoSize, TaskData, norm_text, shuffled
from llm_embedder.data.demo.wikipedia import GAP, LONG_ARTICLE_CHARS, Article


def chunk_text(text: str, target: int = 500) -> list[str]:
    """Consecutive chunks of about ``target`` characters, cut after a space; they concatenate back to ``text``."""
    chunks, start = [], 0
    while start < len(text):
        end = min(len(text), start + target)
        if end < len(text):
            space = text.rfind(" ", start + target * 4 // 5, end)
            if space > start:
                end = space + 1
        chunks.append(text[start:end])
        start = end
    return chunks


def _article_text(article: Article, max_chars: int) -> str:
    """The article's paragraphs (one per line), whole paragraphs up to ``max_chars``."""
    out, used = [], 0
    for paragraph in article.paragraphs:
        paragraph = re.sub(r"\s{2,}", " ", paragraph.replace(GAP, "")).strip()
        if used + len(paragraph) + 1 > max_chars and out:
            break
        out.append(paragraph)
        used += len(paragraph) + 1
    return "\n".join(out)


def build_lrlm(parts: dict[str, list[Article]], size: DemoSize, rng: np.random.Generator) -> TaskData:
    """Long-range language modelling on whole Wikipedia articles.

    Articles with at least 15,000 characters of prose (paragraphs, one per line) are cut to at most
    30,000 at a paragraph end.  Test, dev, ood-dev and ood-test: whole articles of their split (ood:
    biographies, halved by article as for qa and convsearch; each half takes up to the test split's
    number of articles) as ``{"title", "text"}``; the evaluator chunks them into LM tokens and
    predicts the last 8 chunks of each.  Train, from the train split's articles: the text is cut into ~500-character
    chunks at spaces; a record takes chunk ``i`` as ``query``, chunk ``i+1`` as its answer, and 8
    of the chunks before ``i-1`` (seeded sample, in document order) as ``neg``; ``pos`` is empty
    (the teacher picks the positive) and ``context`` is empty.  A few records per article.
    """
    long_ones = {
        split: shuffled([a for a in parts[split] if len(a.text) >= LONG_ARTICLE_CHARS], rng)
        for split in ("test", "dev", "train", "ood")
    }
    # the ood articles in the same (seeded) order, halved by article
    for half in ("ood-dev", "ood-test"):
        long_ones[half] = [a for a in long_ones["ood"] if a in parts[half]]
    for split in ("test", "dev"):
        if len(long_ones[split]) < size.lrlm_test_docs:
            raise RuntimeError(f"lrlm: only {len(long_ones[split])} long {split} articles")
    train_docs = long_ones["train"]
    if len(train_docs) < 5:
        raise RuntimeError(f"lrlm: only {len(train_docs)} long train articles")
    files = {
        f"{folder}/lrlm/wikipedia/test.json": [
            {"title": a.title, "text": _article_text(a, 30_000), "query_id": i}
            for i, a in enumerate(long_ones[split][: size.lrlm_test_docs])
        ]
        for split, folder in EVAL_SPLITS.items()
    }
    per_doc = math.ceil(size.train / len(train_docs)) + 1
    train: list[dict[str, Any]] = []
    seen: set[str] = set()
    k = size.candidates
    for article in train_docs:
        chunks = chunk_text(_article_text(article, 30_000))
        positions = list(range(k + 1, len(chunks) - 2))  # the answer chunk i+1 is not the short tail
        for i in sorted(rng.permutation(positions)[:per_doc].tolist()):
            if len(train) >= size.train or norm_text(chunks[i]) in seen:
                continue
            seen.add(norm_text(chunks[i]))
            earlier = sorted(rng.choice(i - 1, k, replace=False).tolist())
            train.append(
                {
                    "query": chunks[i],
                    "answers": [chunks[i + 1]],
                    "pos": [],
                    "neg": [chunks[j] for j in earlier],
                    "context": "",
                    "task": "lrlm",
                    "query_id": len(train),
                    "title": article.title,
                }
            )
    return TaskData(
        train,
        "lrlm/wikipedia/test.json",
        files,
        notes={"train_documents": len({r["title"] for r in train})},
    )
