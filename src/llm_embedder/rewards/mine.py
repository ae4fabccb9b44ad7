"""Hard-negative mining: retrieve candidates for each query, drop its positives, keep a rank range.

Hits ranked ``start``..``end`` (0-based, after removing the labelled positives) are the pool; a
seeded sample of ``count`` of them becomes the record's ``neg`` (texts) and ``neg_index`` (corpus
ids), in rank order.  The top ranks are skipped by default because, for real data, many of them
are unlabelled positives.  Old ``teacher_scores`` are removed: they belonged to other candidates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llm_embedder.errors import InputError
from llm_embedder.fileio import iter_jsonl, write_jsonl
from llm_embedder.retrieval.searcher import Hit, Searcher

log = logging.getLogger(__name__)


@dataclass
class MineSettings:
    start: int = 10
    end: int = 100
    count: int = 16
    seed: int = 0
    filter_answers: bool = False
    """Also drop hits that contain one of the record's answers (case-insensitive)."""

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise ValueError(f"rank range {self.start}:{self.end} is empty; expected 0 <= start < end")
        if self.count < 1:
            raise ValueError("count must be at least 1")


def parse_rank_range(text: str) -> tuple[int, int]:
    """``"10:100"`` -> (10, 100)."""
    start, sep, end = text.partition(":")
    if not sep or not start.strip().isdigit() or not end.strip().isdigit():
        raise ValueError(f"rank range {text!r}; expected START:END, e.g. 10:100")
    return int(start), int(end)


def _is_positive(hit_id: int, hit_text: str, record: dict[str, Any], settings: MineSettings) -> bool:
    if hit_id in record.get("pos_index", []) or hit_text.strip() in {p.strip() for p in record.get("pos", [])}:
        return True
    if settings.filter_answers:
        text = hit_text.lower()
        return any(a.lower() in text for a in record.get("answers", []) if a.strip())
    return False


def _pools(
    searcher: Searcher, records: list[dict[str, Any]], settings: MineSettings, show_progress: bool | None
) -> list[list[Hit]]:
    """Hits ranked ``start``..``end`` once the positives are removed.  The search goes deeper by
    the number of labelled positives, and again (twice as deep) for queries that lost more hits
    than that (duplicates, ``filter_answers``), until the range is full or the hits run out."""
    pools: list[list[Hit]] = [[] for _ in records]
    todo = list(range(len(records)))
    k = settings.end + max((len(r.get("pos", [])) + len(r.get("pos_index", [])) for r in records), default=0)
    while todo:
        found = searcher.search([records[i]["query"] for i in todo], k=k, show_progress=show_progress)
        again = []
        for i, hits in zip(todo, found, strict=True):
            kept = [h for h in hits if not _is_positive(h.id, h.text, records[i], settings)]
            if len(kept) >= settings.end or len(hits) < k:
                pools[i] = kept[settings.start : settings.end]
            else:
                again.append(i)
        todo, k = again, 2 * k
    return pools


def mine_file(
    searcher: Searcher,
    queries_path: str | Path,
    output_path: str | Path,
    settings: MineSettings | None = None,
    show_progress: bool | None = None,
) -> int:
    """Write every query record of ``queries_path`` with mined ``neg``/``neg_index``; returns how many."""
    settings = settings or MineSettings()
    rows = list(iter_jsonl(queries_path))
    for line, record in rows:
        if not isinstance(record.get("query"), str):
            raise InputError(queries_path, line, "query", "missing or not a string")
        for field, kind in (("pos", str), ("pos_index", int), ("answers", str)):
            value = record.get(field, [])
            if not isinstance(value, list) or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
                raise InputError(queries_path, line, field, f"expected a list of {kind.__name__}s")
    if settings.start >= len(searcher.corpus):
        raise ValueError(
            f"rank range {settings.start}:{settings.end} starts beyond the corpus ({len(searcher.corpus)} documents)"
        )
    pools = _pools(searcher, [r for _, r in rows], settings, show_progress)
    short = sum(len(pool) < settings.count for pool in pools)
    if short:
        log.warning(f"{short} of {len(rows)} queries got fewer than {settings.count} negatives (too few hits in range)")

    def mined() -> Any:
        for (line, record), pool in zip(rows, pools, strict=True):
            rng = np.random.default_rng((settings.seed, line))
            keep = sorted(rng.choice(len(pool), min(settings.count, len(pool)), replace=False).tolist())
            out = {k: v for k, v in record.items() if k != "teacher_scores"}
            out["neg"] = [pool[i].text for i in keep]
            out["neg_index"] = [pool[i].id for i in keep]
            yield out

    write_jsonl(output_path, mined())
    return len(rows)
