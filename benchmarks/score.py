"""LLM reward scoring speed: our scorer against a naive scorer written the way the original one works.

Run from the repository root (offline)::

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python benchmarks/score.py
    .venv/bin/python benchmarks/score.py --limit 120 --no-bf16

Both sides score the same spans: every candidate (``pos + neg`` or ``history``) of the real toy
``qa`` and ``chat`` records (``data/flagembedding-toy``), each filled into its task's template and
tokenized once by ``prepare_job``, with the zoo LM ``smollm2-135m`` (SmolLM2-135M-Instruct, float32).
``--limit`` keeps an evenly spaced subset of the candidates so that a run takes minutes, not hours.

* **ours**: ``CausalLM.span_log_probs`` with the ``ScoreSettings`` defaults (spans sorted by length,
  right padding, batches filled to a token budget, the LM head only at the answer positions);
* **naive** (the original ``run_lm_score.py``): input order, batches of 4, LEFT padding, the full
  logits over the whole vocabulary at every position, then a per-token cross-entropy over the
  labels (-100 everywhere but the answer tokens) summed and divided by the answer length.  The
  answer tokens are our spans' (so that both compute the same quantity).

Each side runs once on a few spans as a warm-up, then once timed (``--repeats N``: N times, taking
turns to go first, the best time kept; worth it on a machine shared with other jobs).  Printed: candidates/second for
both, the ratio ours/naive and the largest absolute difference of the scores (mean log-likelihood
per answer token); then ours in bfloat16 (AMX on recent Xeons): its rate and its largest score
difference to float32.  Target: ratio >= 3 with scores equal to 1e-3.

Threads matter on a loaded machine: every multi-threaded op waits until all its threads are
scheduled, which costs the naive scorer (many small forward passes) far more than ours; ``--threads 1``
measures the arithmetic alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from llm_embedder.models.lm import CausalLM, Span  # noqa: E402
from llm_embedder.rewards.score import ScoreSettings, prepare_job  # noqa: E402
from llm_embedder.tasks import DEFAULT_TASKS  # noqa: E402

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "flagembedding-toy"
TASKS = ("qa", "chat")
MODEL = "smollm2-135m"
NAIVE_BATCH_SIZE = 4


def load_spans(lm: CausalLM, data_dir: Path, limit: int | None, settings: ScoreSettings) -> list[Span]:
    """Every candidate of the toy qa and chat records as a span (file order), then an evenly spaced
    subset of ``limit`` of them (keeping the mix of tasks and lengths)."""
    spans: list[Span] = []
    for task in TASKS:
        path = data_dir / f"{task}.json"
        for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if text.strip():
                spans += prepare_job(lm, DEFAULT_TASKS, json.loads(text), path, line, settings).spans
    if limit and limit < len(spans):
        spans = [spans[i] for i in np.linspace(0, len(spans) - 1, limit).round().astype(int)]
    return spans


@torch.inference_mode()
def naive_scores(lm: CausalLM, spans: list[Span], batch_size: int = NAIVE_BATCH_SIZE) -> list[float]:
    """The original scorer: input order, fixed batches, left padding, full logits, masked CE."""
    pad = lm.tokenizer.pad_token_id or 0
    out: list[float] = []
    for b in range(0, len(spans), batch_size):
        batch = spans[b : b + batch_size]
        longest = max(len(s.ids) for s in batch)
        ids = torch.full((len(batch), longest), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for row, span in enumerate(batch):
            n, end = len(span.ids), len(span.ids) if span.end is None else span.end
            ids[row, longest - n :] = torch.as_tensor(list(span.ids))
            mask[row, longest - n :] = 1
            labels[row, longest - n + span.start : longest - n + end] = ids[
                row, longest - n + span.start : longest - n + end
            ]
        ids, mask, labels = ids.to(lm.device), mask.to(lm.device), labels.to(lm.device)
        logits = lm.model(input_ids=ids, attention_mask=mask).logits
        # compute_nlls: logits[:, :-1] against labels[:, 1:], per-token CE summed, / label count
        logits, labels = logits[:, :-1].float(), labels[:, 1:]
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none").sum(-1)
        out += (-nll / (labels != -100).sum(-1)).tolist()
    return out


def our_scores(lm: CausalLM, spans: list[Span], settings: ScoreSettings) -> list[float]:
    sums = lm.span_log_probs(spans, settings.token_budget, settings.max_batch_size, settings.full_logits)
    return [s / n for s, n in sums]


def timed(fn, *args) -> tuple[float, list[float]]:
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="folder with qa.json and chat.json")
    parser.add_argument("--limit", type=int, default=160, help="candidates to score (evenly spaced; 0 = all)")
    parser.add_argument("--token-budget", type=int, default=None, help="ours: padded tokens per forward pass")
    parser.add_argument("--max-batch-size", type=int, default=None, help="ours: rows per forward pass")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per side, best kept (default 1)")
    parser.add_argument("--no-bf16", action="store_true", help="skip the bfloat16 run of ours")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    settings = ScoreSettings()
    if args.token_budget:
        settings.token_budget = args.token_budget
    if args.max_batch_size:
        settings.max_batch_size = args.max_batch_size
    lm = CausalLM.from_pretrained(MODEL, device="cpu", dtype="float32")
    spans = load_spans(lm, args.data, args.limit or None, settings)
    lengths = np.array([len(s.ids) for s in spans])
    answers = np.array([(len(s.ids) if s.end is None else s.end) - s.start for s in spans])
    print(f"{MODEL} float32 on {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print(
        f"{len(spans)} candidates of {'+'.join(TASKS)}: {lengths.sum()} tokens "
        f"(min {lengths.min()}, median {int(np.median(lengths))}, max {lengths.max()}), "
        f"{answers.sum()} answer tokens; ours: token_budget={settings.token_budget}, "
        f"max_batch_size={settings.max_batch_size}; naive: batch {NAIVE_BATCH_SIZE}, left padding, full logits"
    )

    warm = spans[:: max(1, len(spans) // 8)][:8]
    naive_scores(lm, warm)
    our_scores(lm, warm, settings)
    runs = {"naive": lambda: naive_scores(lm, spans), "ours": lambda: our_scores(lm, spans, settings)}
    best = {name: (float("inf"), []) for name in runs}  # (seconds, scores) of the fastest run
    for repeat in range(args.repeats):
        for name in list(runs)[:: 1 if repeat % 2 == 0 else -1]:
            best[name] = min(best[name], timed(runs[name]), key=lambda result: result[0])
    (t_naive, naive), (t_ours, ours) = best["naive"], best["ours"]
    diff = float(np.max(np.abs(np.array(ours) - np.array(naive))))
    print(f"naive : {len(spans) / t_naive:8.2f} candidates/s  ({t_naive:.1f} s)")
    print(f"ours  : {len(spans) / t_ours:8.2f} candidates/s  ({t_ours:.1f} s)")
    print(f"ratio ours/naive: {t_naive / t_ours:.2f}x   max |score difference|: {diff:.2e}")

    if not args.no_bf16:
        del lm
        lm16 = CausalLM.from_pretrained(MODEL, device="cpu", dtype="bfloat16")
        our_scores(lm16, warm, settings)
        runs16 = [timed(our_scores, lm16, spans, settings) for _ in range(args.repeats)]
        t16, ours16 = min(t for t, _ in runs16), runs16[0][1]
        diff16 = float(np.max(np.abs(np.array(ours16) - np.array(ours))))
        print(
            f"ours bfloat16: {len(spans) / t16:8.2f} candidates/s  ({t16:.1f} s), "
            f"{t_ours / t16:.2f}x ours float32, {t_naive / t16:.2f}x naive; "
            f"max |score difference| to float32: {diff16:.2e}"
        )


if __name__ == "__main__":
    main()
