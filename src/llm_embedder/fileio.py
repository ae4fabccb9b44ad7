"""Reading JSON lines with precise errors, and writing files so that a killed job leaves no half file."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llm_embedder.errors import InputError


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for each non-blank line; a bad line raises :class:`InputError`."""
    path = Path(path)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise InputError(path, None, None, "file not found") from None
    except IsADirectoryError:
        raise InputError(path, None, None, "is a directory, expected a JSON-lines file") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                # Files from Windows tools start with a byte-order mark: not part of the JSON.
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise InputError(path, number, None, "not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(path, number, None, f"malformed JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(record, dict):
                raise InputError(path, number, None, f"expected a JSON object, got {type(record).__name__}")
            yield number, record


def read_yaml(path: str | Path, what: str = "YAML file") -> Any:
    """A YAML file's data (None when empty); a missing, non-UTF-8 or malformed file raises
    :class:`InputError` naming it (and the line, for bad YAML).  A byte-order mark is accepted."""
    import yaml

    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise InputError(path, None, None, f"{what} not found") from None
    except IsADirectoryError:
        raise InputError(path, None, None, f"is a directory, expected a {what}") from None
    except UnicodeDecodeError as exc:
        raise InputError(path, None, None, f"not UTF-8 text (byte {exc.start})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(path, None if mark is None else mark.line + 1, None, f"invalid YAML: {problem}") from None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return [record for _, record in iter_jsonl(path)]


def require_field(record: dict[str, Any], field: str, path: str | Path, line: int, kind: type | None = None) -> Any:
    """``record[field]``, or an :class:`InputError` naming file, line and field."""
    if field not in record:
        raise InputError(path, line, field, "missing")
    value = record[field]
    if kind is not None and not isinstance(value, kind):
        raise InputError(path, line, field, f"expected {kind.__name__}, got {type(value).__name__}")
    return value


@contextlib.contextmanager
def atomic_path(target: str | Path, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success move it into place in one rename.

    A crash or exception leaves ``target`` untouched (a previous version survives) and removes
    the temporary file or folder.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{target.name}.old")
    if is_dir and old.is_dir() and not target.exists():
        old.rename(target)  # a run killed between its two renames: the previous version comes back
    clean_dead_temporaries(target.parent, pattern=f".{glob.escape(target.name)}.*.tmp")
    prefix = f".{target.name}.{os.getpid()}."  # the pid tells a dead run's leftovers from a live run's
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    # mkstemp/mkdtemp make private files; the result should get the usual permissions.
    os.chmod(tmp, (0o777 if is_dir else 0o666) & ~_UMASK)
    try:
        yield tmp
        if is_dir:
            if target.exists():
                shutil.rmtree(old, ignore_errors=True)
                target.rename(old)
                tmp.rename(target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(target)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink()


_TEMPORARY = re.compile(r"^\..+\.(\d+)\.[A-Za-z0-9_]+\.tmp$")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs (ours counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_dead_temporaries(folder: str | Path, recursive: bool = False, pattern: str = ".*.tmp") -> list[Path]:
    """Remove the temporary files and folders of :func:`atomic_path` whose process has died."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = folder.rglob(pattern) if recursive else folder.glob(pattern)
    removed = []
    for path in list(found):
        match = _TEMPORARY.match(path.name)
        if match and not pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def write_json(path: str | Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_jsonl(path: str | Path, records: Any) -> None:
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
