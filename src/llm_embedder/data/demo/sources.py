"""The pip packages the demo data is read from: where they are, their versions and licences."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path


class MissingSourceError(RuntimeError):
    """A package the demo data is read from is not installed (the message says how to install it)."""


@dataclass(frozen=True)
class Source:
    module: str
    """Import name, used only to locate the package folder (never imported)."""
    dist: str
    """The pip distribution name."""
    install: str
    licence: str
    files: tuple[str, ...]
    """Data files inside the package folder."""
    content: str


SOURCES: dict[str, Source] = {
    "gensim": Source(
        "gensim",
        "gensim",
        "pip install --no-deps gensim",
        "package LGPL-2.1-only; Wikipedia text CC BY-SA 3.0 (revisions up to May 2016); word2vec analogy "
        "questions Apache-2.0 (word2vec project); Pang & Lee sentence-polarity sample: no explicit licence, "
        "research data redistributed in the gensim wheel",
        (
            "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
            "test/test_data/questions-words.txt",
            "test/test_data/pang_lee_polarity.cor",
        ),
        "wheel test data: a 206-page English Wikipedia XML sample (106 articles, the rest redirects), "
        "the word2vec analogy questions (19,544), 200 movie-review sentences labelled positive/negative",
    ),
    "bfcl": Source(
        "bfcl_eval",
        "bfcl-eval",
        # Its dependencies pin numpy==1.26.4 and faiss-cpu==1.11.0 (and pull in openai, anthropic,
        # ...); only its data files are read, so it is installed without them.
        "pip install --no-deps bfcl-eval",
        "Apache-2.0",
        ("data/BFCL_v4_simple_python.json", "data/possible_answer/BFCL_v4_live_multiple.json"),
        "Berkeley Function Calling Leaderboard v4: user requests with their gold function call and JSON-schema "
        "function documents",
    ),
    "chitchat": Source(
        "chitchat_dataset",
        "chitchat-dataset",
        "pip install --no-deps chitchat-dataset",
        "MIT",
        ("dataset.json",),
        "7,168 open-domain chat conversations between two people (BYU PCC lab)",
    ),
    "chatterbot": Source(
        "chatterbot_corpus",
        "chatterbot-corpus",
        "pip install --no-deps chatterbot-corpus",
        "BSD-3-Clause",
        ("data/english/trivia.yml", "data/english/tech_support.yml"),
        "English dialog snippets in topic files; trivia.yml holds 261 question -> answer pairs",
    ),
}


def locate_sources(names: Iterable[str] | None = None) -> dict[str, Path]:
    """The package folder of each source; one error listing every missing package and its install line."""
    names = list(SOURCES) if names is None else list(names)
    found, missing = {}, []
    for name in names:
        source = SOURCES[name]
        spec = find_spec(source.module)
        folder = Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None
        absent = [] if folder is None else [f for f in source.files if not (folder / f).is_file()]
        if folder is None or absent:
            why = "not installed" if folder is None else f"installed but lacks {absent[0]}"
            missing.append(f"{source.dist} ({why}), install with: {source.install}")
        else:
            found[name] = folder
    if missing:
        raise MissingSourceError(
            "the demo data needs pip packages that are missing: "
            + "; ".join(missing)
            + " (or all of them, pinned: pip install --no-deps -r requirements-demo.txt)"
        )
    return found


def source_versions(names: Iterable[str] | None = None) -> dict[str, str]:
    out = {}
    for name in SOURCES if names is None else names:
        try:
            out[SOURCES[name].dist] = importlib.metadata.version(SOURCES[name].dist)
        except importlib.metadata.PackageNotFoundError:
            out[SOURCES[name].dist] = "unknown"
    return out
