"""A benchmark's ``--out``: checked before any work, written under a temporary name when complete.

An existing file is replaced only when it holds this benchmark's own figures (its ``benchmark`` field),
so a typo in ``--out`` never overwrites a user's file.  ``make tables`` renders these files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llm_embedder.fileio import write_json


def check_out(path: Path | None, benchmark: str) -> None:
    """Refuse a folder, or an existing file that is not an output of ``benchmark``."""
    if path is None:
        return
    if path.is_dir():
        raise SystemExit(f"--out {path} is a folder; give a file name")
    if path.exists():
        try:
            ours = json.loads(path.read_text(encoding="utf-8")).get("benchmark") == benchmark
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise SystemExit(f"--out {path} exists and is not an output of this benchmark; choose another name")


def write_figures(path: Path, figures: dict[str, Any]) -> None:
    check_out(path, figures["benchmark"])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, figures)
