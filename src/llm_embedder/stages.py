"""What every stage of a pipeline run shares: its progress lines, and whether its output is still fresh.

:class:`Progress` prints ``[n/N] stage: note`` with ``n`` and ``N`` taken from the list of stages the run
goes through (``run``: data, mine, score, train, evaluate; ``--select`` and ``adapt``: data, mine, score,
train, select), and how long a stage took.

:class:`Stage` answers "is this output still fresh?" for every stage output of a work folder: a stamp
records what the output was made from (its settings, upstream stages included, or the digest of its
input files); an output whose stamp differs is made again, and the only files removed on the way are
those the folder's manifest lists as made by llm-embedder (:func:`llm_embedder.outputs.remove_made`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from llm_embedder.fileio import atomic_path, write_json
from llm_embedder.fingerprint import files_digest
from llm_embedder.outputs import made_here, record_made, remove_made
from llm_embedder.tasks import DEFAULT_TASKS

STAGE_FILE = "stage.json"


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


class Stage:
    """One output of a stage and the stamp of what it is made from (``key``: JSON-able; a string, such as
    a digest, is stored as it is).

    :meth:`fresh` says whether the output may be reused; :meth:`begin` readies it for work from ``key``
    (removing a stale output's files made by llm-embedder, never anything else); :meth:`seal` records the
    key.  Resumable work (scoring, training: a killed run resumes from what it wrote) is stamped by
    ``begin`` before it starts; work that is made whole is stamped by ``seal`` once it is done.
    """

    def __init__(
        self,
        stamp: str | Path,
        key: Any,
        *,
        output: str | Path | None = None,
        members: tuple[str, ...] = (),
        product: str | Path | None = None,
    ):
        self.stamp = Path(stamp)
        self.key = key if isinstance(key, str) else json.loads(json.dumps(key))  # tuples -> lists, as read back
        self.output = None if output is None else Path(output)
        self.members = members
        self.product = None if product is None else Path(product)

    @classmethod
    def folder(cls, folder: str | Path, settings: dict[str, Any], members: tuple[str, ...] = ()) -> Stage:
        """A stage folder made from ``settings`` (``folder/stage.json``).  ``members``: names in it that a
        library call writes (a trainer's checkpoints), removed with the stage's own files when it starts again."""
        return cls(Path(folder) / STAGE_FILE, settings, output=folder, members=members)

    @classmethod
    def made_from(cls, target: str | Path, inputs: Iterable[str | Path]) -> Stage:
        """A file of a stage folder made from the content of ``inputs`` (``.NAME.inputs`` beside it).

        Stage folders are keyed by settings; this catches the data itself changing under the same
        settings (a rebuilt dataset): a target made from other input bytes is made again."""
        target = Path(target)
        return cls(target.with_name(f".{target.name}.inputs"), files_digest(inputs), output=target)

    def recorded(self) -> Any:
        """The key the stamp holds (None: no readable stamp)."""
        try:
            text = self.stamp.read_text(encoding="utf-8")
        except OSError:
            return None
        if isinstance(self.key, str):
            return text
        try:
            return json.loads(text)
        except ValueError:
            return None

    def fresh(self) -> bool:
        """Whether the stamp records this key (and the ``product`` that ends the work exists)."""
        if self.product is not None and not self.product.exists():
            return False
        return self.recorded() == self.key

    def begin(self, resumable: bool = True) -> bool:
        """Ready the output for work from ``key``; returns whether it was fresh (a partial output of the
        same key resumes).  Otherwise the stale stamp goes, and what llm-embedder made of the output;
        ``resumable``: the key is stamped at once (else :meth:`seal` stamps it after the work)."""
        fresh = self.fresh()
        if self.output is not None and self.stamp.parent == self.output:  # a folder that holds its stamp
            self._begin_folder(fresh)
        elif self.output is not None:
            record_made(self.output.parent, [self.output.name])  # its work files (the stamp, a partial) go with it
            if not fresh:
                self.output.unlink(missing_ok=True)
        if fresh:
            return True
        self.stamp.unlink(missing_ok=True)
        if resumable:
            self.seal()
        return False

    def _begin_folder(self, fresh: bool) -> None:
        folder = self.output
        assert folder is not None
        if not fresh and folder.is_dir() and any(folder.iterdir()):
            if self.stamp.is_file() and not made_here(folder):  # from before the list: the names stages give files
                named = [folder / sub / f"{task}.json" for sub in ("", "train", "holdout") for task in DEFAULT_TASKS]
                named += [folder / member for member in self.members]
                record_made(folder, [p.relative_to(folder).as_posix() for p in named if p.exists()])
            print(f"      {folder} was made with other settings: starting it again")
            remove_made(folder)
        record_made(folder, [self.stamp.name, *self.members])

    def seal(self) -> None:
        """Record the key (written under a temporary name, then renamed)."""
        if isinstance(self.key, str):
            with atomic_path(self.stamp) as tmp:
                tmp.write_text(self.key, encoding="utf-8")
        else:
            write_json(self.stamp, self.key)
