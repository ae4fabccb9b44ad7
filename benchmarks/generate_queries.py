"""Query writing for ``adapt``: batched generation that stops at the end of a question, against a naive loop.

Run from the repository root (offline)::

    .venv/bin/python benchmarks/generate_queries.py                 # the shipped example corpus
    .venv/bin/python benchmarks/generate_queries.py --corpus runs/adapt-eval/corpus.jsonl --limit 64

Both sides write the same question prompts (:func:`llm_embedder.userdata.generate.question_prompt`, two per
passage) with SmolLM2-135M in ``--dtype`` (default ``fast``: bf16 where the hardware has bf16 units):

* **ours**: :func:`llm_embedder.userdata.generate.write_queries`' path, :meth:`CausalLM.generate` on the
  prompts in batches of 16 that end once every row holds a newline;
* **naive**: one prompt at a time, every ``max_new_tokens`` generated, then cut at the first newline
  (what a first script writes).

Printed: questions per second of both, the ratio ours/naive, the load average before and after, and how
many questions differ (greedy in batches pads rows, which can flip a near tie; the count says how often).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from figures import check_out, write_figures  # noqa: E402

from llm_embedder.models.lm import CausalLM  # noqa: E402
from llm_embedder.userdata.generate import GenerationSettings, question_prompt  # noqa: E402
from llm_embedder.userdata.readers import read_corpus  # noqa: E402

EXAMPLE = Path(__file__).parents[1] / "data" / "adapt-example" / "corpus"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=EXAMPLE, help="a corpus adapt reads (default: the example)")
    parser.add_argument("--limit", type=int, default=32, help="passages (default 32)")
    parser.add_argument("--dtype", default="fast", help="LM dtype: fast, float32, bfloat16 (default fast)")
    parser.add_argument("--lm", default="smollm2-135m", help="the writer: zoo name, folder or .gguf")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    check_out(args.out, "generate_queries")

    passages = read_corpus(args.corpus)[: args.limit]
    prompts = [question_prompt(f"{p.title} {p.text}".strip(), v) for p in passages for v in range(2)]
    settings = GenerationSettings()
    lm = CausalLM.from_pretrained(args.lm, device="cpu", dtype=args.dtype)
    dtype = str(next(lm.model.parameters()).dtype).removeprefix("torch.")
    print(f"corpus {args.corpus}: {len(prompts)} prompts; LM {args.lm}, {dtype}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    load_before = os.getloadavg()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load_before)}")
    lm.generate(["Q: warm up A:"], max_new_tokens=4)

    start = time.perf_counter()
    naive = [lm.generate([p], max_new_tokens=settings.max_new_tokens, stop="")[0].split("\n")[0] for p in prompts]
    naive_s = time.perf_counter() - start
    start = time.perf_counter()
    ours = lm.generate(prompts, max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size)
    ours_s = time.perf_counter() - start

    differ = sum(a.strip() != b.strip() for a, b in zip(naive, ours, strict=True))
    print(f"\n  {'':<8} {'seconds':>8} {'questions/s':>12}")
    print(f"  {'naive':<8} {naive_s:8.1f} {len(prompts) / naive_s:12.2f}")
    print(f"  {'ours':<8} {ours_s:8.1f} {len(prompts) / ours_s:12.2f}")
    print(f"  ratio ours/naive: {naive_s / ours_s:.2f}x; questions that differ: {differ} of {len(prompts)}")
    load_after = os.getloadavg()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in load_after)}")
    if args.out:
        figures = {
            "benchmark": "generate_queries",
            "lm": args.lm,
            "dtype": dtype,
            "prompts": len(prompts),
            "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            "naive_questions_per_s": len(prompts) / naive_s,
            "ours_questions_per_s": len(prompts) / ours_s,
            "ratio": naive_s / ours_s,
            "differ": differ,
            "load_before": list(load_before),
            "load_after": list(load_after),
        }
        write_figures(args.out, figures)


if __name__ == "__main__":
    main()
