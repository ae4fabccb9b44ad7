"""Reading JSON lines with precise errors, and writing files so that a killed job leaves no half file."""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from llm_embedder.errors import InputError


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
            if _SURROGATE.search(line):
                _check_text(record, path, number, None)
            yield number, record


# "\ud800" alone is valid JSON but no text: it cannot be encoded, and would fail far from the file.
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _check_text(value: Any, path: Path, line: int, field: str | None) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            message = "holds a lone surrogate escape (such as \\ud800), which is not text; fix or remove it"
            raise InputError(path, line, field, message) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, path, line, field)
            _check_text(item, path, line, field or key)
    elif isinstance(value, list):
        for item in value:
            _check_text(item, path, line, field)


def read_text(path: Path, what: str) -> str:
    """A text file's content (a byte-order mark dropped); a missing, folder or non-UTF-8 path raises
    :class:`InputError` naming it."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise InputError(path, None, None, f"{what} not found") from None
    except IsADirectoryError:
        raise InputError(path, None, None, f"is a directory, expected a {what}") from None
    except UnicodeDecodeError as exc:
        raise InputError(path, None, None, f"not UTF-8 text (byte {exc.start})") from None
    return text


def read_yaml(path: str | Path, what: str = "YAML file") -> Any:
    """A YAML file's data (None when empty); a missing, non-UTF-8 or malformed file raises
    :class:`InputError` naming it (and the line, for bad YAML).  A byte-order mark is accepted."""
    import yaml

    path = Path(path)
    text = read_text(path, what)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(path, None if mark is None else mark.line + 1, None, f"invalid YAML: {problem}") from None


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """A JSON file's data; an unreadable or malformed file raises :class:`InputError` naming it and the line."""
    path = Path(path)
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(path, exc.lineno, None, f"malformed JSON ({exc.msg} at column {exc.colno})") from None


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


# Work files carry a token: the writer's pid, a random nonce and a check digest of the three with the
# file's name.  A user's file that merely looks like a temporary (``.report.99999.draft.tmp``) fails
# the check, so the clean-up of dead runs' leftovers never touches it.
_TOKEN_SALT = "llm-embedder work file"


def _check(kind: str, pid: int, nonce: str) -> str:
    return hashlib.sha256(f"{_TOKEN_SALT}\0{kind}\0{pid}\0{nonce}".encode()).hexdigest()[:8]


def make_token(kind: str, pid: int | None = None) -> str:
    """``PID-NONCECHECK`` for a work file or folder of this process (``pid``: another's, for tests);
    ``kind`` binds it to a name."""
    pid, nonce = os.getpid() if pid is None else pid, secrets.token_hex(4)
    return f"{pid}-{nonce}{_check(kind, pid, nonce)}"


def token_pid(kind: str, token: str) -> int | None:
    """The pid in a token :func:`make_token` made for ``kind``; None for anything else."""
    match = re.fullmatch(r"(\d+)-([0-9a-f]{8})([0-9a-f]{8})", token)
    if match is None or _check(kind, int(match.group(1)), match.group(2)) != match.group(3):
        return None
    return int(match.group(1))


def temporary_name(target: str, pid: int | None = None) -> str:
    """The hidden name a work copy of ``target`` gets while it is written."""
    return f".{target}.{make_token(target, pid)}.tmp"


_TEMPORARY = re.compile(r"^\.(.+)\.(\d+-[0-9a-f]{16})\.tmp$")


def temporary_pid(name: str) -> int | None:
    """The writer's pid if ``name`` is a work file of :func:`temporary_name`, else None."""
    match = _TEMPORARY.match(name)
    return None if match is None else token_pid(match.group(1), match.group(2))


# Set while a command runs (outputs.declare): called with every path written through atomic_path,
# it refuses a write the command did not declare.
WRITE_GUARD: Callable[[Path], None] | None = None

_FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


def _full_disk(exc: OSError) -> bool:
    # numpy reports a short write as "N requested and M written", without an errno
    return exc.errno in _FULL_DISK or bool(re.search(r"requested and \d+ written", str(exc)))


@contextlib.contextmanager
def atomic_path(target: str | Path, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success move it into place in one rename.

    A crash or exception leaves ``target`` untouched (a previous version survives) and removes
    the temporary file or folder.  A full disk is reported with ``target``'s name.
    """
    target = Path(target)
    if WRITE_GUARD is not None:
        WRITE_GUARD(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{target.name}.old")
    if is_dir and old.is_dir() and not target.exists():
        old.rename(target)  # a run killed between its two renames: the previous version comes back
    clean_dead_temporaries(target.parent, pattern=f".{glob.escape(target.name)}.*.tmp")
    tmp = target.with_name(temporary_name(target.name))
    # the usual permissions (umask), not mkstemp's private ones; O_EXCL: never an existing file
    if is_dir:
        tmp.mkdir(0o777)
    else:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        try:
            yield tmp
        except OSError as exc:
            if _full_disk(exc):
                raise OSError(
                    errno.ENOSPC,
                    f"{target}: no space left on the device, nothing was written; free some space or "
                    "choose another output path",
                ) from None
            raise
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
    """Remove the temporary files and folders of :func:`atomic_path` whose process has died (only
    names whose token checks out: see :func:`temporary_name`)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = folder.rglob(pattern) if recursive else folder.glob(pattern)
    removed = []
    for path in list(found):
        pid = temporary_pid(path.name)
        if pid is not None and not pid_alive(pid):
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


def cache_dir() -> Path:
    """The library's cache (converted models, onnx exports): ``$LLM_EMBEDDER_CACHE`` or ``~/.cache/llm-embedder``."""
    root = os.environ.get("LLM_EMBEDDER_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "llm-embedder"
