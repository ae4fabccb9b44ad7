"""What a scored training file becomes before training: a seeded held-out part, and the teacher guard.

- holdout: ``holdout`` records of a file (at most half of it), drawn by a generator seeded by the data's
  seed and the file's length, are kept out of training for the diagnostics (top-1 agreement of the
  trained encoder with the teacher and the labels on records it never saw);
- teacher guard (false-negative guard for *scored* records): a negative the teacher scores at least as
  high as the best labelled positive is dropped (:func:`teacher_guard_record`).  The encoder guard,
  which needs a model, is mining's (:mod:`llm_embedder.rewards.mine`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from llm_embedder.fileio import iter_jsonl, write_jsonl


def holdout_rows(n: int, holdout: int, seed: int) -> set[int]:
    """The rows of an ``n``-record file held out of training: ``min(holdout, n // 2)`` of them, seeded."""
    rng = np.random.default_rng([int(seed), n])
    return set(rng.permutation(n)[: min(holdout, n // 2)].tolist())


def split_file(
    source: str | Path, train_path: str | Path, held_path: str | Path, holdout: int, seed: int, teacher_guard: bool
) -> None:
    """``source``'s records into ``held_path`` (:func:`holdout_rows`) and ``train_path`` (the rest, with
    :func:`teacher_guard_record` applied when ``teacher_guard``), in file order."""
    records = [r for _, r in iter_jsonl(source)]
    out = holdout_rows(len(records), holdout, seed)
    kept = [r for i, r in enumerate(records) if i not in out]
    if teacher_guard:
        kept = [teacher_guard_record(r)[0] for r in kept]
    write_jsonl(held_path, [r for i, r in enumerate(records) if i in out])
    write_jsonl(train_path, kept)


def teacher_guard_record(record: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """``(record, dropped)``: the scored record less the negatives whose teacher score is at least the best
    labelled positive's, with ``neg``, ``neg_index`` and ``teacher_scores`` kept aligned.  A record without
    teacher scores or without a labelled positive (chat, lrlm) is returned as it is."""
    pos, neg, scores = record.get("pos", []), record.get("neg", []), record.get("teacher_scores")
    if not pos or scores is None or len(scores) != len(pos) + len(neg):
        return record, 0
    best = max(scores[: len(pos)])
    keep = [j for j in range(len(neg)) if scores[len(pos) + j] < best]
    out = dict(
        record, neg=[neg[j] for j in keep], teacher_scores=scores[: len(pos)] + [scores[len(pos) + j] for j in keep]
    )
    if "neg_index" in record and len(record["neg_index"]) == len(neg):
        out["neg_index"] = [record["neg_index"][j] for j in keep]
    return out, len(neg) - len(keep)


def teacher_guard_file(in_path: str | Path, out_path: str | Path) -> tuple[int, int]:
    """Apply :func:`teacher_guard_record` to every record of a scored file; returns (records, negatives dropped)."""
    dropped = 0
    rows = 0

    def guarded() -> Any:
        nonlocal dropped, rows
        for _, record in iter_jsonl(in_path):
            out, n = teacher_guard_record(record)
            dropped += n
            rows += 1
            yield out

    write_jsonl(out_path, guarded())
    return rows, dropped
