"""One writer per data dir: an exclusive lock file that names its holder.

Two servers on one data dir each keep their own index, miss the other's writes and can undo each
other's drops, so the second one is refused. The lock is an OS lock (``flock``) on
``<data dir>/llm-embedder.lock``: the kernel releases it when the holder exits or dies, so a lock
left by a killed process is never in the way; the file's content (pid, command, start time) only
names the holder in the refusal. The file stays (emptied) on release: other processes may be
opening it at that moment.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from llm_embedder.fileio import pid_alive

LOCK_FILE = "llm-embedder.lock"

try:
    import fcntl
except ImportError:  # Windows: a pid file checked for a live process instead
    fcntl = None  # type: ignore[assignment]


class DataDirLocked(RuntimeError):
    """Another process holds the data dir."""


class DataDirLock:
    """``with DataDirLock(folder): ...`` or ``acquire()`` / ``release()``."""

    def __init__(self, data_dir: str | os.PathLike):
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> DataDirLock:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise DataDirLocked(self._refusal(_read_holder(fd))) from None
            else:
                holder = _read_holder(fd)
                if holder.get("pid") and holder["pid"] != os.getpid() and pid_alive(holder["pid"]):
                    raise DataDirLocked(self._refusal(holder))
            record = {"pid": os.getpid(), "command": _command(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(record).encode())
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # no holder named; the OS lock goes with the descriptor
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def _refusal(self, holder: dict[str, Any]) -> str:
        who = f"process {holder.get('pid', '?')}"
        if holder.get("command"):
            who += f" ({holder['command']}, since {holder.get('since', '?')})"
        return (
            f"data dir {self.data_dir} is in use by {who}: one server per data dir; stop it first, "
            "or keep the collections on a Qdrant server (--store qdrant://HOST:PORT) to run several servers"
        )


def _command() -> str:
    """The program and its first word (``cli.py serve``, ``pytest``): enough to recognise the holder."""
    words = [a for a in sys.argv[1:] if not a.startswith("-")][:1]
    return " ".join([Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *words])


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096).decode("utf-8") or "{}")
    except (ValueError, UnicodeDecodeError):
        return {}
