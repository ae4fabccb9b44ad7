"""MkDocs hook: reference pages made from the code, so they cannot drift from it.

- ``<!-- cli-reference -->`` is replaced by one section per command of ``llm-embedder`` (its ``--help``),
  walked from :func:`llm_embedder.cli.build_parser`: a new command or option appears without a docs edit.
- ``<!-- api-modules: PACKAGE_OR_MODULE ... -->`` is replaced by a mkdocstrings ``::: module`` directive for
  the module and, for a package, every module under it (found on disk): a module added, renamed or split
  is documented without a docs edit, and one that is gone cannot be named.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
CLI_MARKER = "<!-- cli-reference -->"
API_MARKER = re.compile(r"^<!-- api-modules:\s*(?P<names>[\w. ]+?)\s*-->$", re.MULTILINE)
HELP_WIDTH = "100"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    return API_MARKER.sub(lambda m: api_directives(m["names"].split()), markdown)


def cli_reference() -> str:
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))
    from llm_embedder.cli import build_parser

    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH  # argparse wraps help to the terminal's width
    try:
        sections = []
        for depth, parser in _walk(build_parser()):
            heading = "#" * (1 + max(depth, 1))  # global options and commands: h2; sub-commands: h3
            title = f"`{parser.prog}`" if depth else "Global options"
            sections.append(f"{heading} {title}\n\n```text\n{parser.format_help().rstrip()}\n```\n")
        return "\n".join(sections)
    finally:
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns


def _walk(parser: argparse.ArgumentParser, depth: int = 0, seen: set[int] | None = None):
    seen = set() if seen is None else seen
    if id(parser) in seen:  # aliases name the same parser twice
        return
    seen.add(id(parser))
    yield depth, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _walk(sub, depth + 1, seen)


def api_directives(names: list[str]) -> str:
    modules: list[str] = []
    for name in names:
        path = SRC.joinpath(*name.split("."))
        if path.is_dir():
            modules += _package_modules(path)
        elif path.with_suffix(".py").is_file():
            modules.append(name)
        else:
            raise ValueError(f"api-modules: no module or package {name!r} under {SRC}")
    return "\n\n".join(f"::: {module}" for module in modules)


def _package_modules(package: Path) -> list[str]:
    """The package and the public modules under it, depth first, in name order."""
    name = ".".join(package.relative_to(SRC).parts)
    found = [name] if (package / "__init__.py").is_file() else []
    for child in sorted(package.iterdir()):
        if child.name.startswith("_"):
            continue
        if child.is_dir() and any(child.glob("*.py")):
            found += _package_modules(child)
        elif child.suffix == ".py":
            found.append(f"{name}.{child.stem}")
    return found
