"""The docs work: every runnable code block of README.md and docs/ runs, and ``mkdocs build --strict`` passes.

A fenced block is runnable when the line right before it is one of these HTML comments (invisible on
GitHub and in the built site; docs/contributing.md is the user's description):

``<!-- run -->``
    run it and require success: ``python`` in this process (fresh globals), ``bash`` in ``bash -euo pipefail``
    with ``llm-embedder`` on the PATH and curl failing on an HTTP error;
``<!-- run: background -->``
    a ``bash`` block that starts a server: it runs in the background until the page's end, and the page
    goes on once ``/health`` answers;
``<!-- file: NAME -->``
    write the block's text to ``NAME``, an input of the blocks after it.

Each page runs its blocks in order in a folder of its own where the repository's ``data/`` and ``recipes/``
are where a checkout has them. ``--8<-- "FILE:SECTION"`` lines (README sections included in the docs) are
expanded as the docs build does, so a page sees what its reader sees; an included ``run`` block runs once,
on the page that holds it, while included ``file`` and ``background`` blocks serve the including page too
(one server per distinct background block, shared by the pages that include it). The docs' server port,
8000, is replaced by a free one.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from processes import _free_port, subprocess_env

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINKED = ("data", "recipes")  # repository folders the examples name by relative path
BLOCK_TIMEOUT = 300
SERVER_START_TIMEOUT = 240
DOCS_PORT = "8000"

MARKER = re.compile(r"^\s*<!--\s*(?P<body>(?:run|file)\b.*?)\s*-->\s*$")
VALID_MARKER = re.compile(r"^(?:run|run:\s*background|file:\s*(?P<file>[\w.\-/]+))$")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
SNIPPET = re.compile(r'^\s*-{1,}8<-{1,}\s+"(?P<path>[^"]+)"\s*$')
SECTION = re.compile(r"-{1,}8<-{1,}\s+\[\s*(?P<kind>start|end)\s*:\s*(?P<name>[\w-]+)\s*\]")
RUNNABLE_LANGS = {"python", "bash"}


@dataclass
class Block:
    where: str  # file:line of the opening fence, in the file that holds it
    marker: str
    lang: str
    text: str


def expand(path: Path, section: str | None = None, depth: int = 0) -> list[tuple[str, str]]:
    """The lines of ``path`` (or of one ``--8<--`` section of it) with snippets expanded, each with
    the ``file:line`` it comes from; section marker lines are dropped, as the docs build drops them."""
    if depth > 5:
        raise AssertionError(f"{path}: snippets nested too deep")
    rel = path.relative_to(ROOT)
    lines = path.read_text("utf-8").splitlines()
    if section is not None:
        starts = [i for i, line in enumerate(lines) if (m := SECTION.search(line)) and m["name"] == section]
        if len(starts) != 2:
            raise AssertionError(f"{rel}: section {section!r} needs one start and one end marker")
        first, last = starts
        numbered = list(enumerate(lines))[first + 1 : last]
    else:
        numbered = list(enumerate(lines))
    out: list[tuple[str, str]] = []
    for i, line in numbered:
        if SECTION.search(line):
            continue
        if m := SNIPPET.match(line):
            name, _, part = m["path"].partition(":")
            out += expand(ROOT / name, part or None, depth + 1)
        else:
            out.append((line, f"{rel}:{i + 1}"))
    return out


def blocks(path: Path) -> list[Block]:
    """The marked blocks of a page, in order; a malformed or misplaced marker is an error."""
    lines = expand(path)
    found: list[Block] = []
    i = 0
    while i < len(lines):
        line, where = lines[i]
        m = MARKER.match(line)
        if not m:
            i += 1
            continue
        marker = re.sub(r"\s+", " ", m["body"])
        if not VALID_MARKER.match(m["body"]):
            raise AssertionError(f"{where}: unknown marker <!-- {marker} -->; see tests/test_docs.py")
        fence = FENCE.match(lines[i + 1][0]) if i + 1 < len(lines) else None
        if not fence:
            raise AssertionError(f"{where}: <!-- {marker} --> is not on the line right before a code block")
        indent, ticks = fence["indent"], fence["fence"]
        body, j = [], i + 2
        while j < len(lines) and not lines[j][0].strip().startswith(ticks):
            body.append(lines[j][0][len(indent) :] if lines[j][0].startswith(indent) else lines[j][0])
            j += 1
        if j == len(lines):
            raise AssertionError(f"{lines[i + 1][1]}: code block never closed")
        lang = fence["lang"]
        if marker.startswith("run") and lang not in RUNNABLE_LANGS:
            raise AssertionError(f"{lines[i + 1][1]}: only {sorted(RUNNABLE_LANGS)} blocks run, not {lang!r}")
        if marker == "run: background" and lang != "bash":
            raise AssertionError(f"{lines[i + 1][1]}: a background block is bash")
        found.append(Block(lines[i + 1][1], marker, lang, textwrap.dedent("\n".join(body)) + "\n"))
        i = j + 1
    return found


def _page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


RUN_PAGES = [
    p for p in PAGES if any(b.marker.startswith("run") and b.where.startswith(f"{_page_id(p)}:") for b in blocks(p))
]


def test_markers_are_well_formed_and_used():
    """Parsing every page checks every marker; the convention is in use where the quickstarts are."""
    counts = {_page_id(p): sum(b.marker.startswith("run") for b in blocks(p)) for p in PAGES}
    assert counts["README.md"] >= 3, counts
    for page in ("docs/getting-started/library.md", "docs/getting-started/server.md", "docs/guides/serve.md"):
        assert counts[page] >= 1, f"{page} has no runnable example"


def test_readme_links_resolve():
    """The README links into docs/ (the site checks its own links in the strict build)."""
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", (ROOT / "README.md").read_text("utf-8"))
    local = [link for link in links if "://" not in link]
    assert local, "the README links into the docs"
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, f"README links to missing files: {missing}"


class Servers:
    """The background blocks' servers, one per distinct block, on one free port, stopped at the end."""

    def __init__(self):
        self.port = str(_free_port())
        self.running: dict[tuple[str, str], tuple[subprocess.Popen, Path]] = {}

    def start(self, block: Block, text: str, folder: Path, env: dict[str, str]) -> None:
        key = (block.where, text)
        if key in self.running and self.running[key][0].poll() is None:
            return
        if self.running:
            self.close()  # another server: the port is one
        log = folder.parent / f"{folder.name}-server.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                ["bash", "-euo", "pipefail", "-c", text],
                cwd=folder,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: the shell and the server stop together
            )
        self.running[key] = (proc, log)
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"{block.where}: the server exited\n{log.read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise AssertionError(f"{block.where}: no /health after {SERVER_START_TIMEOUT} s")

    def close(self) -> None:
        for proc, _ in self.running.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.running.clear()


@pytest.fixture(scope="module")
def servers():
    pool = Servers()
    yield pool
    pool.close()


class Page:
    """One page's folder and environment."""

    def __init__(self, path: Path, folder: Path, servers: Servers):
        self.name = _page_id(path)
        self.folder = folder
        self.servers = servers
        for name in LINKED:
            (folder / name).symlink_to(ROOT / name, target_is_directory=True)
        shims = folder.parent / f"{folder.name}-bin"
        shims.mkdir()
        cli = shims / "llm-embedder"
        cli.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m llm_embedder.cli "$@"\n', "utf-8")
        cli.chmod(0o755)
        (shims / ".curlrc").write_text("fail-with-body\nshow-error\n", "utf-8")
        self.env = subprocess_env(
            PATH=os.pathsep.join([str(shims), str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            CURL_HOME=str(shims),
        )

    def text(self, block: Block) -> str:
        port = self.servers.port
        return block.text.replace(f"127.0.0.1:{DOCS_PORT}", f"127.0.0.1:{port}").replace(
            f"--port {DOCS_PORT}", f"--port {port}"
        )

    def run(self, block: Block) -> None:
        text = self.text(block)
        if block.marker.startswith("file:"):
            target = self.folder / block.marker.split(":", 1)[1].strip()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, "utf-8")
        elif block.marker == "run: background":
            self.servers.start(block, text, self.folder, self.env)
        elif block.where.rpartition(":")[0] != self.name:
            return  # an included example: it runs on its own page
        elif block.lang == "python":
            exec(compile(text, block.where, "exec"), {"__name__": "__docs__"})
        else:
            proc = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", text],
                cwd=self.folder,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=BLOCK_TIMEOUT,
            )
            assert proc.returncode == 0, f"{block.where}: exit {proc.returncode}\n{(proc.stdout + proc.stderr)[-3000:]}"


@pytest.mark.integration
@pytest.mark.parametrize("path", RUN_PAGES, ids=_page_id)
def test_runnable_blocks(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, servers: Servers):
    folder = tmp_path / "page"
    folder.mkdir()
    found = blocks(path)
    if shutil.which("curl") is None and any("curl " in b.text for b in found):
        pytest.skip("the page's examples call curl, which is not installed")
    page = Page(path, folder, servers)
    monkeypatch.chdir(folder)  # python blocks run here, as a reader's would in their own folder
    for block in found:
        page.run(block)


def test_mkdocs_build_strict(tmp_path: Path):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed: pip install -e '.[docs]'")
    pytest.importorskip("material", reason="mkdocs-material is not installed: pip install -e '.[docs]'")
    pytest.importorskip("mkdocstrings_handlers.python", reason="mkdocstrings[python] is not installed")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml")]
        + ["--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=subprocess_env(NO_MKDOCS_2_WARNING="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").is_file()
