"""Reading JSON lines with precise errors, and writing files so that a killed job leaves no half file."""

from __future__ import annotations

import contextlib
import json
import os
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
                line = raw.decode("utf-8")
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
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    # mkstemp/mkdtemp make private files; the result should get the usual permissions.
    os.chmod(tmp, (0o777 if is_dir else 0o666) & ~_UMASK)
    try:
        yield tmp
        if is_dir:
            if target.exists():
                old = target.with_name(f".{target.name}.old")
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


def write_json(path: str | Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_jsonl(path: str | Path, records: Any) -> None:
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
