"""Hard-negative mining: retrieve candidates for each query, drop its positives, keep a rank range.

Hits ranked ``start``..``end`` (0-based, after removing the labelled positives) are the pool; a
seeded sample of ``count`` of them becomes the record's ``neg`` (texts) and ``neg_index`` (corpus
ids), in rank order.  The top ranks are skipped by default because, for real data, many of them
are unlabelled positives.  Old ``teacher_scores`` are removed: they belonged to other candidates.

Two optional guards against negatives that are secretly positives (both off by default):

* encoder guard (``guard_margin``): a hit is dropped from the pool when a base encoder scores it at
  least ``guard_margin`` above the record's best labelled positive (cosine, the task's instructions);
  ``0.0`` drops every hit the encoder ranks at or above the positive, a negative margin drops near ties too;
* teacher guard (``teacher_guard``, applied to *scored* records before training, so it lives with the
  training split: :func:`llm_embedder.data.split.teacher_guard_record`): a negative the teacher scores
  at least as high as the best labelled positive is dropped.

Which searcher and which encoder a mining run uses is decided once, by :func:`mine_corpus` (the
``mine`` command and the pipeline's mine stage both call it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llm_embedder.errors import InputError
from llm_embedder.fileio import iter_jsonl, write_jsonl
from llm_embedder.retrieval.searcher import Hit, Searcher

if TYPE_CHECKING:
    from llm_embedder.models.embedder import Embedder
    from llm_embedder.retrieval.corpus import Corpus
log = logging.getLogger(__name__)


@dataclass
class MineSettings:
    start: int = 10
    end: int = 100
    count: int = 16
    seed: int = 0
    filter_answers: bool = False
    """Also drop hits that contain one of the record's answers (case-insensitive)."""
    guard_margin: float | None = None
    """Encoder guard: drop hits scored >= best positive + margin by the guard encoder (None: off)."""
    teacher_guard: bool = False
    """Teacher guard for scored records: drop negatives scored >= the best positive (see
    :func:`llm_embedder.data.split.teacher_guard_record`)."""

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise ValueError(f"--range: rank range {self.start}:{self.end} is empty; expected 0 <= START < END")
        if self.count < 1:
            raise ValueError(f"--count: expected at least 1, got {self.count}")


def parse_rank_range(text: str) -> tuple[int, int]:
    """``"10:100"`` -> (10, 100)."""
    start, sep, end = text.partition(":")
    if not sep or not start.strip().isdigit() or not end.strip().isdigit():
        raise ValueError(f"--range: rank range {text!r}; expected START:END, e.g. 10:100")
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


def _positive_texts(record: dict[str, Any], searcher: Searcher) -> list[str]:
    by_id = dict(zip(searcher.corpus.ids, searcher.corpus.texts, strict=True))
    return list(record.get("pos", [])) + [by_id[i] for i in record.get("pos_index", []) if i in by_id]


def encoder_guard(
    records: Sequence[dict[str, Any]],
    positives: Sequence[Sequence[str]],
    pools: Sequence[Sequence[Hit]],
    embedder: Embedder,
    task: str,
    margin: float,
) -> list[list[Hit]]:
    """Each pool less the hits that ``embedder`` scores at least ``margin`` above the record's best positive
    (``cos(q, hit) >= max_p cos(q, p) + margin``).  Records without a positive text keep their pool."""
    texts = list(
        dict.fromkeys(t for pos, pool in zip(positives, pools, strict=True) for t in [*pos, *(h.text for h in pool)])
    )
    row = {t: i for i, t in enumerate(texts)}
    keys = embedder.encode_keys(texts, task) if texts else np.empty((0, 0), dtype=np.float32)
    queries = embedder.encode_queries([r["query"] for r in records], task)
    out = []
    for q, pos, pool in zip(queries, positives, pools, strict=True):
        if not pos:
            out.append(list(pool))
            continue
        best = max(float(keys[row[t]] @ q) for t in pos)
        out.append([h for h in pool if float(keys[row[h.text]] @ q) < best + margin])
    return out


def mine_file(
    searcher: Searcher,
    queries_path: str | Path,
    output_path: str | Path,
    settings: MineSettings | None = None,
    show_progress: bool | None = None,
    guard_embedder: Embedder | None = None,
    task: str = "qa",
) -> int:
    """Write every query record of ``queries_path`` with mined ``neg``/``neg_index``; returns how many.

    With ``settings.guard_margin`` set, ``guard_embedder`` (the base encoder, encoding with ``task``'s
    instructions) removes suspected false negatives from each pool before the sample is drawn."""
    settings = settings or MineSettings()
    if settings.guard_margin is not None and guard_embedder is None:
        raise ValueError("guard_margin is set but no guard encoder was given")
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
            f"--range: rank range {settings.start}:{settings.end} starts beyond the corpus "
            f"({len(searcher.corpus)} documents)"
        )
    pools = _pools(searcher, [r for _, r in rows], settings, show_progress)
    if settings.guard_margin is not None:
        assert guard_embedder is not None
        records = [r for _, r in rows]
        positives = [_positive_texts(r, searcher) for r in records]
        pools = encoder_guard(records, positives, pools, guard_embedder, task, settings.guard_margin)
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


def needs_encoder(method: str, settings: MineSettings) -> bool:
    """Whether mining needs the base encoder: to search (``dense``) or to guard (``guard_margin``)."""
    return method == "dense" or settings.guard_margin is not None


def mine_corpus(
    corpus: Corpus,
    queries_path: str | Path,
    output_path: str | Path,
    settings: MineSettings,
    *,
    method: str = "bm25",
    embedder: Embedder | None = None,
    task: str = "qa",
    show_progress: bool | None = None,
) -> int:
    """Mine ``corpus`` for the queries of ``queries_path`` into ``output_path`` (:func:`mine_file`); returns
    how many.  ``embedder`` (required when :func:`needs_encoder`) searches when ``method`` is ``dense`` and
    guards when ``settings.guard_margin`` is set; a BM25 search never uses it."""
    if embedder is None and needs_encoder(method, settings):
        raise ValueError(f"mining with method {method!r} and guard_margin {settings.guard_margin} needs an encoder")
    searcher = Searcher.build(
        corpus, method, task=task, embedder=embedder if method == "dense" else None, show_progress=show_progress
    )
    return mine_file(
        searcher, queries_path, output_path, settings, show_progress=show_progress, guard_embedder=embedder, task=task
    )
