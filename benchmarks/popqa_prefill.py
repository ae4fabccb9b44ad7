"""PopQA speed: one prefill per prompt against generating and scoring in two passes.

Run from the repository root (offline)::

    .venv/bin/python benchmarks/popqa_prefill.py
    .venv/bin/python benchmarks/popqa_prefill.py --questions 80 --dtype bfloat16

PopQA-shaped questions are built from the toy records (``data/flagembedding-toy/qa.json``): question
``i`` asks toy query ``i mod 8`` and its gold answers are the first 1 to 5 words of that query's
answer (short, entity-like answers of different token lengths).  Each prompt holds ``--top-k``
passages of the toy pool (random retrieval, seeded per question) cut to ``--knowledge-tokens``, three
few-shot demonstrations from the other questions and the question: about 600 tokens with the
defaults.  Both sides run :class:`~llm_embedder.evaluation.qa.OpenQA` end to end with SmolLM2-135M:

* **ours**: ``OpenQA.run(lm, ...)``: ``CausalLM.generate_and_score`` prefills each prompt once, scores
  the first gold answer from that cache and generates from it;
* **two passes**: the same evaluator with ``generate`` and then ``span_log_probs`` over the same
  prompts (the evaluator's code before one prefill).

Each side is warmed up on two questions, then run once.  Printed: mean prompt tokens; per side the
wall and CPU seconds (the process's, steadier on a shared machine) and the tokens the LM was fed
(rows x positions of every forward pass, padding included: the work saved, independent of the
machine); the wall-time ratio two-pass/ours, how many generations differ (must be 0) and the
largest difference of ``answer_loglik`` (float32: below 1e-4; bf16 rounds the two differently).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from figures import check_out, write_figures  # noqa: E402

from llm_embedder.evaluation.qa import OpenQA  # noqa: E402
from llm_embedder.evaluation.retrievers import make_retriever  # noqa: E402
from llm_embedder.models.lm import CausalLM  # noqa: E402

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "flagembedding-toy"


class TwoPassLM:
    """The LM with generation and answer scoring as two separate passes over the prompts."""

    def __init__(self, lm: CausalLM):
        self.lm = lm

    def __getattr__(self, name):
        return getattr(self.lm, name)

    def generate_and_score(self, prompts, spans, **kwargs):
        return self.lm.generate(prompts, **kwargs), self.lm.span_log_probs(spans)


class PromptLengths:
    """Records the prompts' token counts in a dry run that generates and scores nothing."""

    def __init__(self, lm: CausalLM):
        self.lm, self.lengths = lm, []

    def __getattr__(self, name):
        return getattr(self.lm, name)

    def generate_and_score(self, prompts, spans, **kwargs):
        self.lengths += [len(self.lm.tokenizer(p)["input_ids"]) for p in prompts]
        return [""] * len(prompts), [(0.0, 1)] * len(spans)


def write_data(source: Path, directory: Path, questions: int) -> tuple[Path, Path]:
    """PopQA-shaped questions and the toy passage pool as a corpus (see the module docstring)."""
    records = [json.loads(line) for line in (source / "qa.json").read_text(encoding="utf-8").splitlines() if line]
    passages = list(dict.fromkeys(p for r in records for p in r["pos"] + r["neg"]))
    rows = []
    for i in range(questions):
        record = records[i % len(records)]
        words = record["answers"][0].split()
        answer = " ".join(words[: 1 + (i // len(records)) % 5])
        rows.append({"query": record["query"], "possible_answers": [answer, words[0]]})
    test, corpus = directory / "popqa.json", directory / "corpus.json"
    test.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    corpus.write_text("".join(json.dumps({"text": p}) + "\n" for p in passages), encoding="utf-8")
    return test, corpus


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=40, help="PopQA-shaped questions (default 40)")
    parser.add_argument("--top-k", type=int, default=10, help="retrieved passages per question (default 10)")
    parser.add_argument("--knowledge-tokens", type=int, default=512, help="knowledge budget (default 512)")
    parser.add_argument("--lm", default="smollm2-135m", help="causal LM (default smollm2-135m)")
    parser.add_argument("--dtype", default="float32", help="LM dtype: float32, bfloat16, fast (default float32)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ... (default cpu)")
    parser.add_argument("--data", type=Path, default=DATA_DIR, help=f"toy records folder (default {DATA_DIR})")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    check_out(args.out, "popqa_prefill")
    load_before = os.getloadavg()

    lm = CausalLM.from_pretrained(args.lm, device=args.device, dtype=args.dtype)
    retriever = make_retriever("random")
    test, corpus = write_data(args.data, Path(tempfile.mkdtemp(prefix="popqa-bench-")), args.questions)
    settings = {"key_template": "{text}", "top_k": args.top_k, "knowledge_tokens": args.knowledge_tokens}
    evaluator = OpenQA(test, corpus, **settings)
    dry = PromptLengths(lm)
    evaluator.run(dry, retriever)
    print(
        f"{args.questions} PopQA-shaped questions, {sum(dry.lengths) / len(dry.lengths):.0f} prompt tokens on "
        f"average ({min(dry.lengths)}-{max(dry.lengths)}); LM {args.lm}, {next(lm.model.parameters()).dtype}, "
        f"{args.device}"
    )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    warm = OpenQA(test, corpus, limit=2, **settings)
    warm.run(lm, retriever)
    warm.run(TwoPassLM(lm), retriever)

    fed = []  # tokens (rows x positions, padding included) through the LM per forward pass
    embeddings = lm.model.get_input_embeddings()
    handle = embeddings.register_forward_hook(lambda module, args, out: fed.append(out.shape[0] * out.shape[1]))
    runs = {}
    for label, model in [("two-pass", TwoPassLM(lm)), ("ours", lm)]:
        fed.clear()
        start, cpu = time.perf_counter(), time.process_time()
        result = evaluator.run(model, retriever)
        runs[label] = (result, time.perf_counter() - start, time.process_time() - cpu, sum(fed))
    handle.remove()
    (old, old_s, _, _), (new, new_s, _, _) = runs["two-pass"], runs["ours"]

    differ = sum(a["generation"] != b["generation"] for a, b in zip(new.details, old.details, strict=True))
    loglik = max(abs(a["answer_loglik"] - b["answer_loglik"]) for a, b in zip(new.details, old.details, strict=True))
    print(f"\n  {'':<10} {'wall s':>8} {'CPU s':>8} {'LM tokens':>10} {'accuracy':>9} {'answer_loglik':>14}")
    for label, (result, seconds, cpu, tokens) in runs.items():
        m = result.metrics
        print(f"  {label:<10} {seconds:8.2f} {cpu:8.2f} {tokens:10d} {m['accuracy']:9.3f} {m['answer_loglik']:14.6f}")
    print(f"  speed ratio two-pass/ours: {old_s / new_s:.2f}x")
    print(f"  generations that differ: {differ}; largest answer_loglik difference: {loglik:.2e}")
    load_after = os.getloadavg()
    print("load average before", *(f"{x:.2f}" for x in load_before), "after", *(f"{x:.2f}" for x in load_after))
    if args.out:
        figures = {
            "benchmark": "popqa_prefill",
            "questions": args.questions,
            "lm": args.lm,
            "dtype": str(next(lm.model.parameters()).dtype).removeprefix("torch."),
            "prompt_tokens_mean": sum(dry.lengths) / len(dry.lengths),
            "threads": torch.get_num_threads(),
            "runs": {
                label: {"seconds": seconds, "cpu_seconds": cpu, "lm_tokens": tokens, **result.metrics}
                for label, (result, seconds, cpu, tokens) in runs.items()
            },
            "ratio": old_s / new_s,
            "differ": differ,
            "max_loglik_difference": loglik,
            "load_before": list(load_before),
            "load_after": list(load_after),
        }
        write_figures(args.out, figures)


if __name__ == "__main__":
    main()
