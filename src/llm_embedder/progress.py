"""The progress lines of a run through stages.

:class:`Progress` prints ``[n/N] stage: note`` with ``n`` and ``N`` taken from the list of stages the run
goes through (``run``: data, mine, score, train, evaluate; ``--select`` and ``adapt``: data, mine, score,
train, select), and how long a stage took.  Whether a stage's output is still fresh is
:mod:`llm_embedder.freshness`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence


class Progress:
    """The progress lines of one run through ``stages`` (their names, in order)."""

    def __init__(self, stages: Sequence[str]):
        self.stages = tuple(stages)
        self._started: float | None = None

    def _head(self, stage: str) -> str:
        if stage not in self.stages:  # a stage called on its own, outside this run's list
            return stage
        return f"[{self.stages.index(stage) + 1}/{len(self.stages)}] {stage}"

    def ready(self, stage: str, note: str) -> None:
        """``stage``'s output is in place: one line, nothing to do."""
        print(f"{self._head(stage)}: {note}")

    def start(self, stage: str, note: str) -> None:
        """``stage`` starts work (``note``: what, and how long it may take); :meth:`done` ends it."""
        print(f"\n{self._head(stage)}: {note}", flush=True)
        self._started = time.perf_counter()

    def note(self, text: str) -> None:
        """A detail of the stage under way, indented under its line."""
        print(f"      {text}", flush=True)

    def done(self, extra: str = "") -> None:
        """The stage begun by :meth:`start` is over: its time, and ``extra`` after it."""
        seconds = time.perf_counter() - (self._started if self._started is not None else time.perf_counter())
        print(f"      done in {seconds:.0f} s{extra}", flush=True)
        self._started = None
