"""Errors about user input, phrased so that the user can find and fix the bad spot."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input: names the file, the line (1-based) and the field when they are known."""

    def __init__(self, path: str | Path | None, line: int | None, field: str | None, message: str):
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field
        self.message = message
        where = self.path or "<input>"
        if line is not None:
            where += f":{line}"
        what = f"field {field!r}: " if field else ""
        super().__init__(f"{where}: {what}{message}")
