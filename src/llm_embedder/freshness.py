"""Is this output still fresh?  One answer for every output llm-embedder reuses instead of making it again.

A :class:`Stage` pairs an output with the key of what it is made from (settings and the digests of
:mod:`llm_embedder.fingerprint`: input files, weights, code) and the place that key is recorded:

- a stamp file: ``stage.json`` in a pipeline stage folder (:meth:`Stage.folder`), ``.NAME.inputs``
  beside a file made from other files (:meth:`Stage.made_from`), the manifest of a command's resumable
  work file (:func:`resume_partial`);
- a field of the JSON record that is the output (:meth:`Stage.record`): an evaluation cell's ``key``, a
  training checkpoint's ``recipe``.

An output is reused only when the recorded key equals the wanted one (:meth:`Stage.fresh`).  What
becomes of a stale one is the caller's rule: inside a work folder the pipeline makes it again, removing
only what llm-embedder made (:meth:`Stage.begin`); a command's own output stops with what changed
(:meth:`Stage.changes`) unless ``--restart``.  Who may write where is :mod:`llm_embedder.outputs`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llm_embedder.errors import InputError
from llm_embedder.fileio import atomic_path, write_json
from llm_embedder.fingerprint import files_digest
from llm_embedder.outputs import Output, made_here, manifest_path, read_manifest, record_made, remove_made
from llm_embedder.outputs import changes as manifest_changes
from llm_embedder.tasks import DEFAULT_TASKS

STAGE_FILE = "stage.json"


class Stage:
    """One output and the record of what it is made from (``key``: JSON-able; a string, such as a digest,
    is stored as it is).

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
        field: str | None = None,
    ):
        self.stamp = Path(stamp)
        self.key = key if isinstance(key, str) else json.loads(json.dumps(key))  # tuples -> lists, as read back
        self.output = None if output is None else Path(output)
        self.members = members
        self.product = None if product is None else Path(product)
        self.field = field

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

    @classmethod
    def record(cls, file: str | Path, key: Any, field: str = "key") -> Stage:
        """A JSON object file that carries its own key in ``field`` (an evaluation cell, a checkpoint's
        state); :meth:`seal` writes the record with the key in it."""
        return cls(file, key, field=field)

    def recorded(self) -> Any:
        """The key the stamp holds (None: no readable stamp)."""
        try:
            text = self.stamp.read_text(encoding="utf-8")
        except OSError:
            return None
        if isinstance(self.key, str) and self.field is None:
            return text
        try:
            value = json.loads(text)
        except ValueError:
            return None
        if self.field is None:
            return value
        return value.get(self.field) if isinstance(value, dict) else None

    def fresh(self) -> bool:
        """Whether the stamp records this key (and the ``product`` that ends the work exists)."""
        if self.product is not None and not self.product.exists():
            return False
        return self.recorded() == self.key

    def changes(self) -> list[str]:
        """What differs between the recorded key and this one, one short phrase each (empty when equal)."""
        old = self.recorded()
        if old == self.key:
            return []
        if old is None:
            return ["it records nothing of what it was made from"]
        if not (isinstance(old, dict) and isinstance(self.key, dict)):
            return ["made from other inputs"]
        found = manifest_changes(old, self.key)  # the "inputs" and "settings" sections, per entry
        for name in sorted(set(old) | set(self.key)):
            if name not in ("inputs", "settings") and old.get(name) != self.key.get(name):
                found.append(f"{name}: {json.dumps(old.get(name))} -> {json.dumps(self.key.get(name))}")
        return found

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

    def seal(self, content: dict[str, Any] | None = None) -> None:
        """Record the key (written under a temporary name, then renamed); a :meth:`record` is written
        whole, ``content`` with the key in its field."""
        if self.field is not None:
            write_json(self.stamp, {**(content or {}), self.field: self.key})
        elif isinstance(self.key, str):
            with atomic_path(self.stamp) as tmp:
                tmp.write_text(self.key, encoding="utf-8")
        else:
            write_json(self.stamp, self.key)


# ---------------------------------------------------------------------------- a command's resumable output
def resume_partial(output: Output, partial: Path, restart: bool) -> str:
    """How to go on with ``partial`` (a hidden work file of ``output``): ``"resume"`` it, start
    ``"fresh"``, or ``"done"`` (the output is complete and current).

    The key of each is its manifest (:mod:`llm_embedder.outputs`).  A partial or finished output made
    from other inputs or settings stops the command with what changed, unless ``restart``.
    """
    current = {}  # each candidate that exists: whether its manifest is this output's
    for candidate in (partial, output.path):
        stage = Stage(manifest_path(candidate), output.manifest)
        current[candidate] = candidate.exists() and stage.fresh()
        if not candidate.exists() or read_manifest(candidate) is None or current[candidate]:
            continue
        if not restart:
            raise InputError(
                output.path,
                None,
                None,
                f"an earlier run wrote {candidate.name} from other inputs or settings "
                f"({'; '.join(stage.changes())}); pass --restart to start over",
            )
    if current[partial]:
        return "resume"
    if current[output.path]:
        return "done"
    partial.unlink(missing_ok=True)
    output.seal(partial)
    return "fresh"


def finish_partial(output: Output, partial: Path) -> None:
    """Move a complete ``partial`` into place: the manifest first, so a kill in between resumes from
    the (complete) partial, whose manifest is still there."""
    output.seal()
    os.replace(partial, output.path)
    manifest_path(partial).unlink(missing_ok=True)
