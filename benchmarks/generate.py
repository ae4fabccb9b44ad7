"""Generation speed: greedy answers stopped at the first newline against running every new token.

Run from the repository root (offline)::

    .venv/bin/python benchmarks/generate.py                      # quick demo data, built in a temp folder
    .venv/bin/python benchmarks/generate.py --data runs/demo/data/eval --limit 100

The prompts are the ones the evaluators generate from (PopQA: retrieved knowledge, few-shot
questions, the question; ICL generation tasks: retrieved demonstrations, the query), recorded in an
untimed dry run with BM25 retrieval.  Both sides run :meth:`CausalLM.generate` on them, SmolLM2-135M
in the demo's dtype (``--dtype``, default ``fast``: bf16 where the hardware has bf16 units):

* **ours**: ``stop="\\n"``: a batch ends once every row's continuation holds a newline;
* **baseline** (the evaluators until 2026-12-02): all ``max_new_tokens`` generated, then cut at the
  first newline.

Printed: wall time of both, the ratio baseline/ours, and how many answers differ (must be 0).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from llm_embedder.evaluation.icl import InContextLearning  # noqa: E402
from llm_embedder.evaluation.qa import OpenQA  # noqa: E402
from llm_embedder.evaluation.retrievers import make_retriever  # noqa: E402
from llm_embedder.models.lm import CausalLM  # noqa: E402


class PromptRecorder:
    """Stands in for the LM in a dry run: records the generation prompts, scores nothing."""

    def __init__(self, lm: CausalLM):
        self.lm, self.prompts = lm, []

    def __getattr__(self, name):
        return getattr(self.lm, name)

    def generate(self, prompts, **kwargs):
        self.prompts.append((list(prompts), kwargs.get("max_new_tokens", 32)))
        return [""] * len(prompts)

    def span_log_probs(self, spans, **kwargs):
        return [(0.0, 1)] * len(spans)

    def generate_and_score(self, prompts, spans, **kwargs):
        return self.generate(prompts, **kwargs), self.span_log_probs(spans)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="an eval data folder (default: quick demo data)")
    parser.add_argument("--limit", type=int, default=None, help="first N records per evaluator (default all)")
    parser.add_argument("--dtype", default="fast", help="LM dtype: fast, float32, bfloat16 (default fast)")
    args = parser.parse_args(argv)

    data = args.data
    if data is None:
        from llm_embedder.data.demo import build_demo

        data = Path(tempfile.mkdtemp(prefix="generate-bench-")) / "demo"
        build_demo(data, size="quick", progress=False)
        data = data / "eval"
    lm = CausalLM.from_pretrained("smollm2-135m", device="cpu", dtype=args.dtype)
    retriever = make_retriever("bm25")
    recorder = PromptRecorder(lm)
    evaluators = [
        OpenQA(data / "qa/popqa/test.json", data / "qa/nq/corpus.json", limit=args.limit),
        InContextLearning(data / "icl/icl/test.json", data / "icl/icl/corpus.json", limit=args.limit),
    ]
    for evaluator in evaluators:
        evaluator.run(recorder, retriever)
    print(f"data {data}; LM smollm2-135m, {next(lm.model.parameters()).dtype}, cpu")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    lm.generate(["Q: warm up A:"], max_new_tokens=4)
    print(f"\n  {'prompts':<24} {'n':>4} {'baseline s':>11} {'ours s':>8} {'ratio':>6} {'differ':>7}")
    totals = [0.0, 0.0]
    for evaluator, (prompts, max_new) in zip(evaluators, recorder.prompts, strict=True):
        if not prompts:  # e.g. --limit keeps only ICL's classification records
            print(f"  {evaluator.name:<24} no generation prompts")
            continue
        start = time.perf_counter()
        full = [t.split("\n")[0] for t in lm.generate(prompts, max_new_tokens=max_new, stop="")]
        base_s = time.perf_counter() - start
        start = time.perf_counter()
        ours = lm.generate(prompts, max_new_tokens=max_new, stop="\n")
        ours_s = time.perf_counter() - start
        totals[0] += base_s
        totals[1] += ours_s
        differ = sum(a != b for a, b in zip(full, ours, strict=True))
        label = f"{evaluator.name} ({max_new} new tokens)"
        print(f"  {label:<24} {len(prompts):4d} {base_s:11.2f} {ours_s:8.2f} {base_s / ours_s:6.2f} {differ:7d}")
    print(f"  {'all':<24} {'':>4} {totals[0]:11.2f} {totals[1]:8.2f} {totals[0] / totals[1]:6.2f}")


if __name__ == "__main__":
    main()
