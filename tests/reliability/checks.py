"""Helpers for the reliability tests: fingerprint files before and after, and check one-line errors.

``snapshot(*paths)`` -> {file: sha256} over files and folders (hidden files included), so a test can
assert that nothing it gave was touched; ``assert_one_line`` checks an error as the user sees it.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path


def snapshot(*paths: Path) -> dict[str, str]:
    found = {}
    for path in paths:
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            found[str(file)] = hashlib.sha256(file.read_bytes()).hexdigest()
        if path.is_dir() and not files:
            found[str(path)] = "empty folder"
    return found


def write_jsonl(path: Path, rows: list, raw: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw + "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8"))
    return path


CORPUS_ROWS = [
    {"title": f"Doc {i}", "text": text}
    for i, text in enumerate(
        [
            "Paris is the capital of France and its largest city.",
            "The river Seine flows through Paris.",
            "Berlin is the capital of Germany.",
            "Cats sleep for most of the day.",
            "Dogs are loyal companions and like long walks.",
            "The quick brown fox jumps over the lazy dog.",
            "Water boils at one hundred degrees Celsius.",
            "The moon orbits the earth every month.",
            "Music history includes many famous singers.",
            "The atomic bomb was built by the Manhattan project.",
        ]
    )
]


def assert_one_line(code: int, err: list[str], pattern: str, expected_code: int = 2) -> None:
    """Exit code, exactly one line on stderr, no traceback, and the message naming what it should."""
    assert code == expected_code, err
    assert len(err) == 1, err
    assert err[0].startswith("llm-embedder: error:"), err
    assert "Traceback" not in err[0]
    assert re.search(pattern, err[0]), (pattern, err[0])
