"""A folder whose contents are replaced atomically: versioned subfolders and a pointer file.

``DIR/CURRENT`` names the live version ``DIR/v-PID-TOKEN``.  A new version is written under a
hidden temporary name, renamed, and published by replacing ``CURRENT`` in one ``os.replace``: a
reader (or a kill at any instant) sees the old version or the new one, never neither.  Leftovers
of runs that died (their process is gone) are removed by the next write; only names whose token
checks out (:func:`llm_embedder.fileio.make_token`) count, so a user's ``v-1-ab`` folder is never touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from llm_embedder.fileio import make_token, pid_alive, token_pid

POINTER = "CURRENT"
_VERSION = re.compile(r"^v-(\d+-[0-9a-f]+)$")
_TEMP = re.compile(r"^\.(?:v|CURRENT)-(\d+-[0-9a-f]+)\.tmp$")
_KIND = "version"


def current(directory: str | Path) -> Path | None:
    """The live version folder of ``directory``, or None when it has no pointer."""
    directory = Path(directory)
    pointer = directory / POINTER
    if not pointer.is_file():
        return None
    name = pointer.read_text(encoding="utf-8").strip()
    if not _VERSION.match(name) or not (directory / name).is_dir():
        raise FileNotFoundError(f"{pointer}: names {name!r}, which is not a version folder here")
    return directory / name


def leftovers(directory: str | Path) -> list[Path]:
    """Temporary folders of dead runs and versions no pointer names (made by dead runs)."""
    directory = Path(directory)
    try:
        live = current(directory)
    except FileNotFoundError:
        live = None  # a broken pointer protects nothing; the next publish replaces it
    found = []
    for path in directory.iterdir():
        match = _TEMP.match(path.name) or _VERSION.match(path.name)
        pid = None if match is None else token_pid(_KIND, match.group(1))
        if pid is not None and path != live and not pid_alive(pid):
            found.append(path)
    return found


def clean_leftovers(directory: str | Path) -> None:
    """Remove :func:`leftovers`."""
    for path in leftovers(directory):
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


@contextlib.contextmanager
def new_version(directory: str | Path) -> Iterator[Path]:
    """Yield an empty folder to fill; on success it becomes the live version and older ones go."""
    directory = Path(directory)
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    clean_leftovers(directory)
    token = make_token(_KIND)
    tmp, final = directory / f".v-{token}.tmp", directory / f"v-{token}"
    tmp.mkdir()
    try:
        yield tmp
        tmp.rename(final)
        pointer_tmp = directory / f".CURRENT-{token}.tmp"
        try:
            pointer_tmp.write_text(final.name + "\n", encoding="utf-8")
            try:
                old = current(directory)
            except FileNotFoundError:
                old = None
            os.replace(pointer_tmp, directory / POINTER)
        except BaseException:  # not published: the new version goes, the old one stays live
            pointer_tmp.unlink(missing_ok=True)
            shutil.rmtree(final, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if created and not any(directory.iterdir()):
            directory.rmdir()  # a failed first build leaves no folder behind
