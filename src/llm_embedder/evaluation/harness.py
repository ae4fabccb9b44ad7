"""The evaluation grid: every (evaluator, retriever) cell, cached so a killed run resumes, then a leaderboard.

Data follow the released LLM-Embedder evaluation layout under one folder (only the files present
are evaluated):

    qa/mmlu/test.json + qa/msmarco/corpus.json        qa/popqa/test.json + qa/nq/corpus.json
                                                      (+ qa/popqa/demos.json: few-shot demonstrations)
    (qa-retrieval: qa/retrieval/test.json + corpus.json, else the popqa questions whose records carry
    ``pos_index``, ranked over qa/nq/corpus.json)
    icl/icl/test.json + icl/icl/corpus.json           chat/msc/test.json
    lrlm/<name>/test.json (any number of names)       tool/toolbench/test.json + corpus.json
    convsearch/qrecc/test.concat.json + corpus.json

Outputs under ``out``: ``cells/<evaluator>__<retriever>.json`` (metrics, and the key of what they
were made from: data files' bytes, limit and evaluator options, the LM's weights, the retriever's
model fingerprint, the evaluation code and library versions; a cell is run again unless its key
matches), ``details/...jsonl`` (per example),
``cache/`` (corpus embeddings per model and task), and ``leaderboard.{md,json,png}``.

Each number comes with a 95% bootstrap interval over the test examples (over whole clusters, e.g.
articles, where the eval records carry a ``cluster``), and each row is compared with a reference row
(``--reference``, default ``base``) by a paired test on the same examples: ▲ / ▼ mark a row
significantly better / worse (lower perplexity is better) after Holm's correction over all the
table's comparisons, = not significantly different (see ``stats.py``); the markdown also gives each
paired difference with its interval.  ``llm-embedder eval compare RESULTS_DIR --rows A,B`` prints
the paired comparison of any two rows.
"""

# The public entry of the evaluation, and its description (``llm-embedder eval --help`` shows this
# docstring).  The work is done in: registry (which evaluators, from which files), grid (the cached
# cells), cells (a results folder's files and rows), leaderboard and compare (paired tests).

from __future__ import annotations

from llm_embedder.evaluation.base import EvalResult, Evaluator
from llm_embedder.evaluation.cells import cell_stem, find_row, reference_row
from llm_embedder.evaluation.compare import compare_rows, format_comparison
from llm_embedder.evaluation.grid import GRID_MEMBERS, run_grid
from llm_embedder.evaluation.leaderboard import write_leaderboard
from llm_embedder.evaluation.registry import EVALUATORS, build_evaluators

__all__ = [
    "EVALUATORS",
    "GRID_MEMBERS",
    "EvalResult",
    "Evaluator",
    "build_evaluators",
    "cell_stem",
    "compare_rows",
    "find_row",
    "format_comparison",
    "reference_row",
    "run_grid",
    "write_leaderboard",
]
