"""Evaluation speed: one memory evaluator as implemented against the original's per-example loop.

Run from the repository root (offline)::

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python benchmarks/eval.py
    .venv/bin/python benchmarks/eval.py --task lrlm --retriever dense:minilm
    .venv/bin/python benchmarks/eval.py --task chat --retriever recency --top-k 3 --profile

Both sides evaluate the same examples of the real toy records (``data/flagembedding-toy``) with the
zoo LM ``smollm2-135m`` (SmolLM2-135M-Instruct, float32) and the same retriever:

* ``--task chat``: :class:`~llm_embedder.evaluation.memory.Conversation` on ``chat.json`` (MSC
  style: each record's ``top_k`` best earlier turns, then the last utterance; perplexity of the reply);
* ``--task lrlm``: :class:`~llm_embedder.evaluation.memory.LongText` on documents rebuilt from
  ``lrlm.json`` (each record's 64 history chunks, its chunk and the next one, joined), with chunk
  sizes small enough for a CPU (``--chunk-size``, ``--window-chunks``, ``--target-chunks``);
* ``--task mmlu``: :class:`~llm_embedder.evaluation.qa.MultipleChoiceQA` on the quick demo data
  (``llm-embedder data build-demo --size quick``, built into a temporary folder; needs
  ``requirements-demo.txt``): retrieved knowledge, the question and its four options.

* **ours**: ``evaluator.run(lm, retriever)``: retrieval for all examples at once, spans sorted by
  length and batched to a token budget, the LM head only at the scored positions, targets of a
  document that retrieved the same chunks scored in one pass, the options of one question scored
  in one pass;
* **original**: the loop of ``eval_msc`` / ``eval_lrlm`` written out here: one example (one target
  chunk) at a time, retrieval per example, batch size 1, in file order, the full logits over the
  vocabulary at every position and Hugging Face's loss (mean NLL over the labelled tokens, -100
  elsewhere).  For ``eval_mmlu``, one such pass per option (the prompt ending in ``Answer: X``);
  its prompts are the ones our evaluator builds, recorded in an untimed dry run, so only the LM
  work is timed.  The prompts and scored tokens are the same as ours, so the metrics must agree.

Each side is warmed up on a short text, then run once.  Printed: wall time and LM tokens/second
(real input tokens the LM processed) of both, the speed ratio original/ours, and the largest
differences of the metric and of the per-example NLL (mmlu: per-option mean log-likelihood).
Target: ratio >= 3, differences < 1e-4.
``--profile`` adds the top operators of each side (torch profiler).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from llm_embedder.evaluation.memory import Conversation, LongText, perplexities  # noqa: E402
from llm_embedder.evaluation.qa import MultipleChoiceQA  # noqa: E402
from llm_embedder.evaluation.retrievers import make_retriever  # noqa: E402
from llm_embedder.models.lm import CausalLM, Span  # noqa: E402

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "flagembedding-toy"


class CountingLM:
    """Passes through to the LM and counts the input tokens it feeds: a span's tokens up to its last
    scored one, once per distinct context (the options of one question share theirs)."""

    def __init__(self, lm: CausalLM):
        self.lm, self.tokens = lm, 0

    def __getattr__(self, name):
        return getattr(self.lm, name)

    def span_log_probs(self, spans, **kwargs):
        fed = {(tuple(s.ids[: (s.end or len(s.ids)) - 1]), s.start) for s in spans}
        self.tokens += sum(len(ids) for ids, _ in fed)
        return self.lm.span_log_probs(spans, **kwargs)


@torch.inference_mode()
def original_nll(lm: CausalLM, span: Span) -> float:
    """One example as the original scored it: batch of 1, full logits, HF's mean loss over the labels."""
    ids = torch.tensor([list(span.ids)], device=lm.device)
    labels = torch.full_like(ids, -100)
    labels[0, span.start : span.end] = ids[0, span.start : span.end]
    return float(lm.model(input_ids=ids, labels=labels).loss)


# ---------------------------------------------------------------------------- chat
def original_chat(lm: CausalLM, retriever, file: Path, top_k: int, limit: int | None) -> tuple[dict, list, int]:
    """``eval_msc``: per record, retrieve from its own history, then score the reply alone."""
    nlls, tokens = [], 0
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines()):
        if limit is not None and number >= limit:
            break
        record = json.loads(line)
        pool = [h for h in record["history"] if isinstance(h, str) and h.strip()]
        (chosen,) = retriever.rank("chat", [record["query"].strip()], [pool], top_k)
        memory = "".join(pool[j].strip() + "\n" for j in sorted(chosen))
        prompt = f"{memory}Speaker 1: {record['query'].strip()}\nSpeaker 2: "
        span = lm.make_span(prompt, record["answers"][0].strip())
        nlls.append(original_nll(lm, span))
        tokens += len(span.ids)
    return {"perplexity": math.exp(sum(nlls) / len(nlls))}, nlls, tokens


# ---------------------------------------------------------------------------- lrlm
def lrlm_file(data: Path, directory: Path, limit: int | None) -> Path:
    """Long documents from the toy lrlm records (history chunks, the chunk, the next chunk)."""
    rows = []
    for line in (data / "lrlm.json").read_text(encoding="utf-8").splitlines()[:limit]:
        record = json.loads(line)
        rows.append({"text": "\n".join([*record["neg"], record["query"], *record["answers"]])})
    path = directory / "toy" / "test.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def original_lrlm(lm: CausalLM, retriever, evaluator: LongText) -> tuple[dict, list, int]:
    """``eval_lrlm``: per document, retrieve for every target chunk, then one forward per target
    chunk (its retrieved chunk pairs in document order, then the whole local window)."""
    size, doc_sums, nlls, tokens = evaluator.chunk_size, [], [], 0
    (path,) = evaluator.eval_files
    for line in path.read_text(encoding="utf-8").splitlines()[: evaluator.limit]:
        ids = lm.tokenizer(json.loads(line)["text"][: evaluator.max_chars], add_special_tokens=False)["input_ids"]
        n = len(ids) // size
        if n < evaluator.window_chunks + 2:
            continue
        ids = ids[len(ids) - n * size :]
        chunks = [ids[i * size : (i + 1) * size] for i in range(n)]
        start = n - evaluator.window_chunks
        texts = [lm.tokenizer.decode(c) for c in chunks]
        targets = range(n - evaluator.target_chunks, n)
        pool = texts[: start - 1]
        picks = retriever.rank("lrlm", [texts[t - 1] for t in targets], [pool] * len(targets), evaluator.top_k)
        window = [tok for c in chunks[start:] for tok in c]
        total = 0.0
        for t, chosen in zip(targets, picks, strict=True):
            memory = [tok for j in sorted(chosen) for tok in chunks[j] + chunks[j + 1]]
            offset = len(memory) + (t - start) * size
            span = Span(memory + window, offset, offset + size)
            total += original_nll(lm, span) * size
            tokens += len(span.ids)
        count = evaluator.target_chunks * size
        doc_sums.append((-total, count))
        nlls.append(total / count)
    return perplexities(doc_sums), nlls, tokens


# ---------------------------------------------------------------------------- mmlu
class RecordingLM:
    """Records the spans an evaluator asks for and answers with zeros: a dry run costs no LM time."""

    def __init__(self, lm: CausalLM):
        self.lm, self.spans = lm, []

    def __getattr__(self, name):
        return getattr(self.lm, name)

    def span_log_probs(self, spans, **kwargs):
        self.spans += spans
        return [(0.0, 1)] * len(spans)


def original_mmlu(lm: CausalLM, spans: list[Span], questions: list[dict]) -> tuple[dict, list, int]:
    """``eval_mmlu``: one full prompt per option, batch size 1; argmax of the mean log-likelihood.

    ``questions``: the dry run's details (``gold`` and one entry per option in ``option_scores``)."""
    scores = [-original_nll(lm, span) for span in spans]
    correct, at = [], 0
    for question in questions:
        n = len(question["option_scores"])
        option_scores = scores[at : at + n]
        correct.append(float(max(range(n), key=option_scores.__getitem__) == question["gold"]))
        at += n
    return {"accuracy_micro": sum(correct) / len(correct)}, scores, sum(len(s.ids) for s in spans)


# ---------------------------------------------------------------------------- driver
def timed(label: str, fn: Callable[[], tuple], profile: bool) -> tuple[tuple, float]:
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            out = fn()
            seconds = time.perf_counter() - start
        print(f"\n{label}: top operators by self CPU time")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))
        return out, seconds
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=("chat", "lrlm", "mmlu"), default="chat", help="evaluator (default chat)")
    parser.add_argument("--retriever", default="dense:minilm", help="none, random, recency, bm25, dense:<model>")
    parser.add_argument("--top-k", type=int, default=None, help="retrieved turns / chunk pairs (default 2 / 4)")
    parser.add_argument(
        "--limit", type=int, default=None, help="first N records (default all 8 chat / 2 lrlm / 16 mmlu)"
    )
    parser.add_argument("--chunk-size", type=int, default=64, help="lrlm chunk tokens (default 64; original 128)")
    parser.add_argument("--window-chunks", type=int, default=8, help="lrlm local window in chunks (default 8)")
    parser.add_argument("--target-chunks", type=int, default=4, help="lrlm predicted chunks (default 4)")
    parser.add_argument("--lm", default="smollm2-135m", help="causal LM (default smollm2-135m)")
    parser.add_argument("--data", type=Path, default=DATA_DIR, help=f"toy records folder (default {DATA_DIR})")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ... (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--profile", action="store_true", help="print the top operators of both sides")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    lm = CausalLM.from_pretrained(args.lm, device=args.device)
    retriever = make_retriever(args.retriever, device=args.device)
    workdir = Path(tempfile.mkdtemp(prefix="eval-bench-"))
    if args.task == "chat":
        top_k = args.top_k or 2
        file = args.data / "chat.json"
        evaluator = Conversation(file, top_k=top_k, limit=args.limit)
        original = lambda: original_chat(lm, retriever, file, top_k, args.limit)  # noqa: E731
        setting = f"{file}, top {top_k} turns"
    elif args.task == "mmlu":
        from llm_embedder.data.demo import build_demo

        build_demo(workdir / "demo", size="quick", progress=False)
        evaluator = MultipleChoiceQA(
            workdir / "demo/eval/qa/mmlu/test.json",
            workdir / "demo/eval/qa/msmarco/corpus.json",
            top_k=args.top_k or 3,
            limit=args.limit or 16,
        )
        recorder = RecordingLM(lm)
        dry = evaluator.run(recorder, retriever)  # the prompts the original scores, option by option
        original = lambda: original_mmlu(lm, recorder.spans, dry.details)  # noqa: E731
        setting = f"quick demo MMLU, {evaluator.limit} questions x 4 options, top {evaluator.top_k} passages"
    else:
        top_k = args.top_k or 4
        evaluator = LongText(
            [lrlm_file(args.data, workdir, args.limit or 2)],
            chunk_size=args.chunk_size,
            window_chunks=args.window_chunks,
            target_chunks=args.target_chunks,
            top_k=top_k,
        )
        original = lambda: original_lrlm(lm, retriever, evaluator)  # noqa: E731
        window = (2 * top_k + args.window_chunks) * args.chunk_size
        setting = (
            f"toy lrlm documents, chunks of {args.chunk_size}, window {args.window_chunks}, "
            f"{args.target_chunks} targets, top {top_k} pairs ({window}-token inputs)"
        )
    counting = CountingLM(lm)
    ours = lambda: evaluator.run(counting, retriever)  # noqa: E731

    print(f"task {args.task}: {setting}; retriever {args.retriever}; LM {args.lm} on {args.device}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    warm = lm.make_span("Speaker 1: hello there\nSpeaker 2: ", "hi, how are you?")
    lm.span_log_probs([warm])
    original_nll(lm, warm)
    retriever.rank(args.task, ["hello"], [["hi there", "good morning"]], 1)

    (base_metrics, base_values, base_tokens), base_s = timed("original", original, args.profile)
    result, ours_s = timed("ours", ours, args.profile)
    if args.task == "mmlu":
        ours_values = [s for d in result.details for s in d["option_scores"]]
    else:
        ours_values = [d["nll"] for d in result.details]
    metric = "accuracy_micro" if args.task == "mmlu" else "perplexity"

    print(f"\n  {'':<10} {'wall s':>9} {'LM tokens':>10} {'tokens/s':>10} {metric:>14}")
    for label, seconds, tokens, value in [
        ("original", base_s, base_tokens, base_metrics[metric]),
        ("ours", ours_s, counting.tokens, result.metrics[metric]),
    ]:
        print(f"  {label:<10} {seconds:9.2f} {tokens:10d} {tokens / seconds:10.1f} {value:14.6f}")
    print(f"  speed ratio original/ours: {base_s / ours_s:.2f}x (target >= 3)")
    diff = max(abs(result.metrics[k] - v) for k, v in base_metrics.items())
    value_diff = max(abs(a - b) for a, b in zip(ours_values, base_values, strict=True))
    print(f"  largest metric difference: {diff:.2e} ({metric}); largest per-example difference: {value_diff:.2e}")


if __name__ == "__main__":
    main()
