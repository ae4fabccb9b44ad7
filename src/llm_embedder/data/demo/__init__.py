"""A small six-task LLM-Embedder dataset built from real public text that installs offline from pip.

``llm-embedder data build-demo --out DIR [--seed 0] [--size small|quick]`` writes::

    DIR/train/<task>.json          training records in the released format (JSON lines)
    DIR/eval/...                   test: the evaluation layout `llm-embedder eval --data DIR/eval` reads
    DIR/dev/...                    dev, the same layout (for every choice the pipeline makes)
    DIR/ood-dev/...                out of domain, the same layout: the half model selection checks
    DIR/ood-test/...               the other half, reported once (ood: a topic, tool family, prompt or
                                   task set of the same sources that no other split has, halved by
                                   whole cluster; never used in training)
    DIR/corpus-train/<task>.jsonl  the corpus negatives are mined from and the LLM scores for training
                                   (qa, icl, tool, convsearch): no dev, test or ood gold key is in it
    DIR/SOURCES.md                 every source, its version and licence, a data card per task and how
                                   each task was derived
    DIR/manifest.json              seed, size, source versions and record counts

One module per source or task (``wikipedia``, ``qa``, ``convsearch``, ``lrlm``, ``icl_sets``,
``chitchat``, ``bfcl``), ``sources`` for the packages, ``cards`` for the data cards and ``build``
to assemble them.

Sources (none is imported; their data files are read from the installed packages):

- ``gensim`` wheel test data: a 106-article English Wikipedia sample (XML, CC BY-SA), the word2vec
  analogy questions and the Pang & Lee sentence-polarity sample;
- ``bfcl-eval``: Berkeley Function Calling Leaderboard requests and function documents;
- ``chitchat-dataset``: 7,168 open-domain chat conversations;
- ``chatterbot-corpus``: trivia questions with answers and topic-labelled chat openers.

Every random choice comes from a generator seeded by ``(seed, task)``, and nothing depends on set or
hash order, so the same seed and source versions give the same bytes.  Train, dev, test, ood-dev and
ood-test are disjoint: no query text (case- and space-insensitive) is in two of them, the Wikipedia
tasks split whole articles, tool splits by gold function and chat by conversation (ood-dev and
ood-test: by conversation starter).  The output folder
appears in one rename when everything is written.
"""

from llm_embedder.data.demo.build import build_demo
from llm_embedder.data.demo.common import LAYOUT_VERSION, SIZES, DemoSize
from llm_embedder.data.demo.sources import SOURCES, MissingSourceError, locate_sources, source_versions


def builder_digest() -> str:
    """A digest of this package's code: what a cached build depends on besides seed, size and sources."""
    from llm_embedder.fingerprint import code_digest

    return code_digest(__name__)


__all__ = [
    "LAYOUT_VERSION",
    "builder_digest",
    "SIZES",
    "SOURCES",
    "DemoSize",
    "MissingSourceError",
    "build_demo",
    "locate_sources",
    "source_versions",
]
