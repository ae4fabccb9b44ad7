"""Training records in the released LLM-Embedder format, validated on load, and their key groups.

One JSON-lines file is one dataset of one task.  A record has a ``query`` and a ``task`` and its
candidate keys: ``pos`` + ``neg``, or ``history`` (chat).  ``teacher_scores``, when present, holds
the LLM's reward for each candidate, aligned with ``pos + neg`` (or ``history``).

At every visit a record becomes a *group*: the query, one positive and up to ``group_size - 1``
distinct negatives chosen by the task's settings, with the teacher scores of those keys.  The choice is
drawn from a generator seeded by (seed, step, row), so it is the same in every run, on every rank
and after a resume, yet a record meets new negatives each time it is visited.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llm_embedder.errors import InputError
from llm_embedder.fileio import iter_jsonl
from llm_embedder.tasks import TaskTable, TrainingSettings


@dataclass(frozen=True)
class TrainRecord:
    query: str
    candidates: tuple[str, ...]
    num_positives: int
    """The first ``num_positives`` candidates are labelled positives (0 for ``history``)."""
    teacher_scores: tuple[float, ...] | None
    line: int


@dataclass
class TrainDataset:
    name: str
    path: Path
    task: str
    settings: TrainingSettings
    records: list[TrainRecord]
    dropped: dict[str, int] = field(default_factory=dict)
    weight: float = 1.0
    """Its share of the batches relative to its size (the recipe's ``weight``)."""

    def __len__(self) -> int:
        return len(self.records)


@dataclass(frozen=True)
class Group:
    """What the encoder sees for one query: keys[0] is the positive, then the negatives.

    At most ``group_size`` keys, no two with the same text; fewer when the record has fewer distinct candidates."""

    query: str
    keys: tuple[str, ...]
    teacher_scores: tuple[float, ...] | None


def _string_list(record: dict, name: str, path: Path, line: int) -> list[str]:
    value = record.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(path, line, name, "expected a list of strings")
    return value


def record_candidates(record: dict, path: str | Path, line: int) -> list[str]:
    """A record's candidate keys, in the order ``teacher_scores`` follows: ``history``, else ``pos + neg``."""
    if "history" in record:
        return _string_list(record, "history", path, line)
    if "pos" not in record and "neg" not in record:
        raise InputError(path, line, "pos", "missing (a record needs pos/neg or history)")
    return _string_list(record, "pos", path, line) + _string_list(record, "neg", path, line)


def load_train_file(
    path: str | Path,
    tasks: TaskTable,
    *,
    name: str | None = None,
    settings: TrainingSettings | None = None,
    require_teacher: bool | None = None,
    require_labels: bool = False,
    seed: int = 0,
) -> TrainDataset:
    """Read and validate one training file.

    Errors (naming file, line and field): malformed JSON, a missing or mistyped field, an unknown
    task, a file mixing tasks, ``teacher_scores`` of the wrong length, a record without a usable
    positive.  Records the recipe filters out on purpose (no negatives, teacher scores below the
    minimum or the margin, beyond ``max_samples``) are dropped and counted in ``dropped``.

    ``settings`` defaults to the task's own; ``require_teacher`` defaults to whether its losses
    distil; ``require_labels`` (the no-reward ablation) drops records without a labelled positive.
    """
    path = Path(path)
    task_name: str | None = None
    records: list[TrainRecord] = []
    dropped: Counter[str] = Counter()
    for line, record in iter_jsonl(path):
        for required in ("query", "task"):
            if not isinstance(record.get(required), str):
                raise InputError(path, line, required, "missing or not a string")
        if task_name is None:
            task_name = record["task"]
            if task_name not in tasks:
                raise InputError(path, line, "task", f"unknown task {task_name!r}; known: {', '.join(tasks)}")
            settings = settings or tasks[task_name].training
            if require_teacher is None:
                require_teacher = settings.uses_teacher
        elif record["task"] != task_name:
            raise InputError(
                path, line, "task", f"{record['task']!r} in a file of task {task_name!r}: one file, one task"
            )
        assert settings is not None

        candidates = record_candidates(record, path, line)
        num_pos = 0 if "history" in record else len(record.get("pos", []))

        scores = record.get("teacher_scores")
        if scores is not None:
            # bool is an int subclass, and json reads NaN/Infinity: neither is a usable score.
            if not isinstance(scores, list) or not all(
                isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(s) for s in scores
            ):
                raise InputError(path, line, "teacher_scores", "expected a list of finite numbers")
            if len(scores) != len(candidates):
                what = "history" if "history" in record else "pos + neg"
                raise InputError(
                    path, line, "teacher_scores", f"has {len(scores)} scores for {len(candidates)} candidates ({what})"
                )
        elif require_teacher:
            raise InputError(path, line, "teacher_scores", f"missing; the {task_name} losses distil teacher scores")

        if require_labels and num_pos == 0:
            dropped["no labelled positive"] += 1
            continue
        if settings.select_positive == "teacher" and scores is None and num_pos == 0:
            raise InputError(path, line, "teacher_scores", "needed to pick a positive: the record has no pos")
        if settings.select_positive != "teacher" and num_pos == 0:
            raise InputError(path, line, "pos", f"empty, and select_positive={settings.select_positive!r} needs one")
        teacher_pick = settings.select_positive == "teacher" and scores is not None
        best = int(np.argmax(scores)) if teacher_pick else 0
        if len(candidates) - num_pos - (teacher_pick and best >= num_pos) < 1:
            dropped["no negatives"] += 1
            continue
        if scores is not None:
            if settings.teacher_scores_min is not None and max(scores) < settings.teacher_scores_min:
                dropped["best teacher score below minimum"] += 1
                continue
            if (
                settings.teacher_scores_margin is not None
                and max(scores) - min(scores) < settings.teacher_scores_margin
            ):
                dropped["teacher scores within margin"] += 1
                continue
        records.append(
            TrainRecord(
                record["query"], tuple(candidates), num_pos, None if scores is None else tuple(map(float, scores)), line
            )
        )
    if task_name is None or settings is None:
        raise InputError(path, None, None, "no records")
    if settings.max_samples is not None and len(records) > settings.max_samples:
        # A seeded random subset (the original kept the last rows of the file).
        keep = np.sort(np.random.default_rng(seed).choice(len(records), settings.max_samples, replace=False))
        dropped["beyond max_samples"] = len(records) - settings.max_samples
        records = [records[i] for i in keep]
    return TrainDataset(name or path.stem, path, task_name, settings, records, dict(dropped))


def make_group(record: TrainRecord, settings: TrainingSettings, rng: np.random.Generator) -> Group:
    """Choose the positive and up to ``group_size - 1`` negatives of one visit of ``record``.

    - positive: ``first`` labelled, a ``random`` labelled one, or the ``teacher``'s best candidate
      (when that is a negative it leaves the negatives; unchosen positives never become negatives);
    - negatives: ``random`` ones or the ``teacher``'s highest-scored, never the same key text twice
      nor the positive's text; with fewer distinct negatives than needed the group is *smaller*
      (the trainer pads it and masks the missing slots in every loss);
    - with stable distillation the negatives are ordered by teacher score, best first, because
      that loss reads the group as a ranking (the positive stays first).
    """
    scores = record.teacher_scores
    n_pos = record.num_positives
    if settings.select_positive == "teacher" and scores is not None:
        chosen = int(np.argmax(scores))
    elif settings.select_positive == "random":
        chosen = int(rng.integers(n_pos))
    else:
        chosen = 0
    # Distinct texts only: the first occurrence of a repeated negative stands for all of them.
    seen = {record.candidates[chosen]}
    negatives = []
    for i in range(n_pos, len(record.candidates)):
        if i != chosen and record.candidates[i] not in seen:
            seen.add(record.candidates[i])
            negatives.append(i)
    need = min(settings.group_size - 1, len(negatives))
    if settings.select_negative == "teacher" and scores is not None:
        picked = sorted(range(len(negatives)), key=lambda j: -scores[negatives[j]])[:need]
    else:
        picked = rng.choice(len(negatives), need, replace=False).tolist()
    negatives = [negatives[j] for j in picked]
    if scores is not None and "stable_distill" in settings.losses:
        negatives.sort(key=lambda i: -scores[i])
    keys = [chosen, *negatives]
    return Group(
        record.query,
        tuple(record.candidates[i] for i in keys),
        None if scores is None else tuple(scores[i] for i in keys),
    )
