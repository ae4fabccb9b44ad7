"""A small six-task LLM-Embedder dataset built from real public text that installs offline from pip.

``llm-embedder data build-demo --out DIR [--seed 0] [--size small|quick]`` writes::

    DIR/train/<task>.json          training records in the released format (JSON lines)
    DIR/eval/...                   the evaluation layout `llm-embedder eval --data DIR/eval` reads
    DIR/corpus/<task>.jsonl        the corpus negatives are mined from (qa, icl, tool, convsearch);
                                   the same file as the task's eval corpus (a hard link, else a copy)
    DIR/SOURCES.md                 every source, its version and licence, and how each task was derived
    DIR/manifest.json              seed, size, source versions and record counts

One module per source (``wikipedia``, ``qa``, ``lrlm``, ``icl_sets``, ``chitchat``, ``bfcl``), ``sources``
for the packages and ``build`` to assemble them.

Sources (none is imported; their data files are read from the installed packages):

- ``gensim`` wheel test data: a 106-article English Wikipedia sample (XML, CC BY-SA), the word2vec
  analogy questions and the Pang & Lee sentence-polarity sample;
- ``bfcl-eval``: Berkeley Function Calling Leaderboard requests and function documents;
- ``chitchat-dataset``: 7,168 open-domain chat conversations;
- ``chatterbot-corpus``: trivia questions with answers and topic-labelled chat openers.

Every random choice comes from a generator seeded by ``(seed, task)``, and nothing depends on set or
hash order, so the same seed and source versions give the same bytes.  Train and test are disjoint:
no query text (case- and space-insensitive) is in both, lrlm uses different documents, and qa
test questions come from passages no training question was made from.  The output folder appears
in one rename when everything is written.
"""

from llm_embedder.data.demo.build import build_demo
from llm_embedder.data.demo.common import SIZES, DemoSize
from llm_embedder.data.demo.sources import SOURCES, MissingSourceError, locate_sources, source_versions

__all__ = ["SIZES", "SOURCES", "DemoSize", "MissingSourceError", "build_demo", "locate_sources", "source_versions"]
