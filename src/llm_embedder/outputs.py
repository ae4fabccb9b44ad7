"""Outputs that never destroy what a command did not make, and never resume from stale work.

Every output gets a small manifest: the command that made it, a digest of each input file and the
settings.  Before a command writes, :func:`claim` checks the target:

- an output equal to one of its inputs (or a folder holding one) is always refused;
- an existing path whose manifest names another command, or that has none, is refused unless
  ``overwrite`` (the user's files are never replaced silently);
- a resumable output (:func:`resume_partial`) continues only when its manifest matches in full;
  otherwise the error says what changed and ``restart`` starts over.

A file's manifest is a hidden neighbour (``.NAME.manifest.json``); a folder's lies inside it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_embedder.errors import InputError
from llm_embedder.fileio import clean_dead_temporaries, write_json
from llm_embedder.fingerprint import file_digest

FOLDER_MANIFEST = "llm-embedder-output.json"


def manifest_path(path: str | Path, is_dir: bool = False) -> Path:
    path = Path(path)
    return path / FOLDER_MANIFEST if is_dir else path.with_name(f".{path.name.lstrip('.')}.manifest.json")


def read_manifest(path: str | Path, is_dir: bool = False) -> dict[str, Any] | None:
    file = manifest_path(path, is_dir)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("command"), str) else None


def changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between two manifests, one short phrase per input or setting."""
    found = []
    for section in ("inputs", "settings"):
        a, b = old.get(section) or {}, new.get(section) or {}
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                if section == "inputs":
                    found.append(f"input {key} changed")
                else:
                    found.append(f"{key}: {json.dumps(a.get(key))} -> {json.dumps(b.get(key))}")
    return found


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


@dataclass
class Output:
    """A target a command may write; :meth:`seal` records its manifest."""

    path: Path
    manifest: dict[str, Any]
    is_dir: bool = False

    def matches(self, path: str | Path | None = None) -> bool:
        """Whether ``path`` (default: the output) carries this very manifest."""
        old = read_manifest(self.path if path is None else path, self.is_dir and path is None)
        return old is not None and old["command"] == self.manifest["command"] and not changes(old, self.manifest)

    def seal(self, path: str | Path | None = None) -> None:
        write_json(manifest_path(self.path if path is None else path, self.is_dir and path is None), self.manifest)


def claim(
    path: str | Path,
    command: str,
    *,
    inputs: Mapping[str, str | Path | None] | None = None,
    settings: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    is_dir: bool = False,
    recognise: Callable[[Path], bool] | None = None,
) -> Output:
    """Check that ``command`` may write ``path``; see the module doc for the rules.

    ``inputs`` name the files the output is made from (hashed by content); ``recognise`` tells an
    earlier output of this command that predates manifests (e.g. an index folder).
    """
    path = Path(path)
    inputs = {k: Path(v) for k, v in (inputs or {}).items() if v is not None}
    for name, source in inputs.items():
        inside = is_dir and source.resolve().is_relative_to(path.resolve())
        if _same_path(path, source) or path.resolve() == source.resolve() or inside:
            where = "holds" if inside and path.resolve() != source.resolve() else "is"
            raise InputError(path, None, None, f"the output {where} the {name} {source}; choose another output path")
    manifest = {
        "command": command,
        "inputs": {k: file_digest(v) if v.exists() else None for k, v in inputs.items()},
        "settings": json.loads(json.dumps(dict(settings or {}), default=str)),
    }
    output = Output(path, manifest, is_dir)
    # Temporary files of runs that died (a kill mid-write) go before anything else is judged.
    clean_dead_temporaries(path if is_dir else path.parent, recursive=is_dir)
    if path.exists() and not overwrite and not _is_ours(output, recognise):
        kind = "folder" if path.is_dir() else "file"
        raise InputError(
            path,
            None,
            None,
            f"an existing {kind} that `llm-embedder {command}` did not write; "
            "choose another output path or pass --overwrite to replace it",
        )
    if path.exists() and path.is_dir() != is_dir:
        # --overwrite: a file where a folder goes (or the reverse) gives way.
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return output


def _is_ours(output: Output, recognise: Callable[[Path], bool] | None) -> bool:
    path = output.path
    if output.is_dir and path.is_dir() and not any(path.iterdir()):
        return True  # an empty folder holds nothing to lose
    old = read_manifest(path, output.is_dir and path.is_dir())
    if old is not None:
        return old["command"] == output.manifest["command"]
    return recognise is not None and recognise(path)


def resume_partial(output: Output, partial: Path, restart: bool) -> str:
    """How to go on with ``partial`` (a hidden work file of ``output``): ``"resume"`` it, start
    ``"fresh"``, or ``"done"`` (the output is complete and current).

    A partial or finished output made from other inputs or settings stops the command with what
    changed, unless ``restart``.
    """
    for candidate in (partial, output.path):
        old = read_manifest(candidate)
        if not candidate.exists() or old is None or output.matches(candidate):
            continue
        if not restart:
            what = "; ".join(changes(old, output.manifest)) or "made by another command"
            raise InputError(
                output.path,
                None,
                None,
                f"an earlier run wrote {candidate.name} from other inputs or settings ({what}); "
                "pass --restart to start over",
            )
    if partial.exists() and output.matches(partial):
        return "resume"
    if output.path.exists() and output.matches():
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
