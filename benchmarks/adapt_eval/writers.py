"""Which LLM writes better training questions for ``adapt``: the same passages, each writer, the same filters.

Run from the repository root after ``build_data.py`` (offline)::

    .venv/bin/python benchmarks/adapt_eval/writers.py --writers smollm2-135m path/to/qwen2.5-coder-0.5b.gguf \\
        --out results/adapt-eval/writers.json

For a seeded sample of ``--keys`` passages of the real-query corpus (the FAQ answers, chunked as
``adapt`` chunks them), every writer writes ``--per-key`` questions per passage with
:func:`llm_embedder.userdata.generate.write_queries`: the same prompts, cleaning, deduplication and
BM25 consistency filter (over all passages) that ``adapt`` applies.  Printed per writer: what was
written, dropped by each filter and kept, the seconds it took, and a few kept questions.  The share
kept is the training data a writer gives per prompt; the real queries are never read.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/figures.py

from figures import check_out, write_figures  # noqa: E402

from llm_embedder.models.lm import CausalLM  # noqa: E402
from llm_embedder.userdata.generate import GenerationSettings, write_queries  # noqa: E402
from llm_embedder.userdata.readers import read_corpus  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("runs/adapt-eval/corpus.jsonl"))
    parser.add_argument("--writers", nargs="+", default=["smollm2-135m"], help="zoo names, folders or .gguf files")
    parser.add_argument("--keys", type=int, default=32, help="passages sampled (default 32)")
    parser.add_argument("--per-key", type=int, default=1, help="questions per passage (default 1)")
    parser.add_argument("--dtype", default="fast")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    check_out(args.out, "adapt writers")

    passages = read_corpus(args.corpus)
    keys = [f"{p.title} {p.text}".strip() for p in passages]
    settings = GenerationSettings(per_key=args.per_key, max_keys=args.keys)
    load_before = os.getloadavg()
    runs = {}
    for writer in args.writers:
        lm = CausalLM.from_pretrained(writer, device="cpu", dtype=args.dtype)
        start = time.perf_counter()
        made = write_queries(lm, keys, settings, "question", show_progress=True)
        seconds = time.perf_counter() - start
        name = Path(writer).name if writer.endswith(".gguf") else writer
        runs[name] = {"seconds": seconds, "counts": dict(made.counts), "kept_samples": made.queries[:6]}
        print(f"\n{name}: {dict(made.counts)} in {seconds:.0f} s")
        for query in made.queries[:6]:
            print(f"  {query}")
        del lm
    figures = {
        "benchmark": "adapt writers",
        "passages": len(keys),
        "keys": args.keys,
        "per_key": args.per_key,
        "filter_top_k": settings.filter_top_k,
        "writers": runs,
        "load_before": list(load_before),
        "load_after": list(os.getloadavg()),
    }
    if args.out:
        write_figures(args.out, figures)


if __name__ == "__main__":
    main()
