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

Then, unless ``--no-ranking``, bf16 judged by what training uses (issue 12): the demo's candidates
of qa, icl, chat and lrlm (``data build-demo --size quick`` in a temporary folder, or ``--demo DIR``;
qa/icl negatives mined by BM25 over ranks 0-30 as the demo recipe does, capped at ``--cap`` candidates
per query as its score stage does), ``--queries`` queries per task, scored in float32 and in bfloat16.
Printed per task: Kendall's tau-b within each query (mean, min), top-1 agreement, and the KL between
the teacher distributions at the task's teacher temperature (mean, max), beside the speed ratio.
Decision rule: top-1 agreement >= 0.95 and mean tau >= 0.9 on every task -> bf16 is the scoring
default on CPUs with bf16 units (``rewards/score.py: default_scoring_dtype``).

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
from figures import check_out, write_figures  # noqa: E402

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


RANK_TASKS = ("qa", "icl", "chat", "lrlm")


def demo_records(demo: Path, per_task: int, cap: int, work: Path) -> dict[str, tuple[Path, list[dict]]]:
    """``per_task`` evenly spaced training records of each task, with mined negatives where the data has
    none (BM25, ranks 0-30, 7 each: the demo recipe), capped as the pipeline's score stage caps them."""
    from llm_embedder.data.layout import key_template
    from llm_embedder.fileio import read_jsonl, write_jsonl
    from llm_embedder.retrieval.corpus import Corpus
    from llm_embedder.rewards.cap import cap_candidates
    from llm_embedder.rewards.mine import MineSettings, mine_corpus

    out = {}
    for task in RANK_TASKS:
        rows = read_jsonl(demo / "train" / f"{task}.json")
        rows = [rows[i] for i in np.linspace(0, len(rows) - 1, min(per_task, len(rows))).round().astype(int)]
        path = work / f"{task}.json"
        write_jsonl(path, rows)
        if not any(r.get("neg") or r.get("history") for r in rows):
            corpus = Corpus.from_jsonl(demo / "corpus-train" / f"{task}.jsonl", key_template(task))
            mine_corpus(corpus, path, path.with_suffix(".mined"), MineSettings(0, 30, 7), task=task)
            path = path.with_suffix(".mined")
        capped = [cap_candidates(r, cap) for r in read_jsonl(path)]
        write_jsonl(path, capped)
        out[task] = (path, capped)
    return out


def demo_label(args: argparse.Namespace) -> str:
    """Which demo data the candidates came from: a folder given with ``--demo``, or the size built."""
    return f"{args.demo} (given)" if args.demo else f"{args.demo_size} size, built"


def ranking_report(args: argparse.Namespace, settings: ScoreSettings) -> None:
    """float32 against bfloat16 rewards on the demo's candidates: order, top-1, teacher KL, speed."""
    import tempfile

    from encode import build_demo

    from llm_embedder.evaluation.stats import Sample, bootstrap_interval
    from llm_embedder.models.loading import cpu_has_bf16
    from llm_embedder.rewards.agreement import agreement
    from llm_embedder.rewards.score import _aggregate, default_scoring_dtype

    with tempfile.TemporaryDirectory() as tmp:
        demo = args.demo or build_demo(Path(tmp) / "demo", size=args.demo_size)
        records = demo_records(demo, args.queries, args.cap, Path(tmp))
        lm32 = CausalLM.from_pretrained(MODEL, device="cpu", dtype="float32")
        lm16 = CausalLM.from_pretrained(MODEL, device="cpu", dtype="bfloat16")
        jobs = {
            task: [prepare_job(lm32, DEFAULT_TASKS, r, path, i + 1, settings) for i, r in enumerate(rows)]
            for task, (path, rows) in records.items()
        }
    spans = [s for task_jobs in jobs.values() for job in task_jobs for s in job.spans]
    warm = spans[:: max(1, len(spans) // 8)][:8]
    our_scores(lm32, warm, settings), our_scores(lm16, warm, settings)
    runs = {"float32": lambda: our_scores(lm32, spans, settings), "bfloat16": lambda: our_scores(lm16, spans, settings)}
    best = {name: (float("inf"), []) for name in runs}
    for repeat in range(args.repeats):
        for name in list(runs)[:: 1 if repeat % 2 == 0 else -1]:
            best[name] = min(best[name], timed(runs[name]), key=lambda result: result[0])
    print(
        f"\nrewards float32 vs bfloat16 on demo candidates ({demo_label(args)}, {args.queries} queries per task, "
        f"every positive and at most {args.cap} others each; {len(spans)} spans): "
        f"float32 {len(spans) / best['float32'][0]:.2f}/s, "
        f"bfloat16 {len(spans) / best['bfloat16'][0]:.2f}/s, "
        f"speed ratio {best['float32'][0] / best['bfloat16'][0]:.2f}x"
    )
    print(
        f"{'task':<6} {'T':>5} {'queries':>7} {'cands':>5} {'tau mean [95% CI]':>21} {'tau min':>8} "
        f"{'top-1 [95% CI]':>21} {'KL mean':>9} {'KL max':>9}"
    )
    position, holds, per_task = 0, True, {}
    for task, task_jobs in jobs.items():
        temperature = DEFAULT_TASKS[task].training.teacher_temperature
        found = []
        for job in task_jobs:
            n = len(job.spans)
            a32 = _aggregate(best["float32"][1][position : position + n], job.num_candidates, job.num_answers, "mean")
            a16 = _aggregate(best["bfloat16"][1][position : position + n], job.num_candidates, job.num_answers, "mean")
            position += n
            found.append(agreement(a32, a16, temperature))
        taus = np.array([f.tau for f in found if not np.isnan(f.tau)])
        top1 = float(np.mean([f.top1 for f in found]))
        kls = np.array([f.kl for f in found])
        # bootstrap over queries (each query one unit): how sure the point estimates are
        tau_ci = bootstrap_interval(Sample.of(taus.tolist()))
        top1_ci = bootstrap_interval(Sample.of([float(f.top1) for f in found]))
        holds &= top1 >= 0.95 and taus.mean() >= 0.9
        per_task[task] = {
            "queries": len(found),
            "candidates_mean": float(np.mean([j.num_candidates for j in task_jobs])),
            "tau_mean": float(taus.mean()),
            "tau_interval": list(tau_ci),
            "tau_min": float(taus.min()),
            "top1": top1,
            "top1_interval": list(top1_ci),
            "kl_mean": float(kls.mean()),
            "kl_max": float(kls.max()),
            "passes": bool(top1 >= 0.95 and taus.mean() >= 0.9),
        }
        print(
            f"{task:<6} {temperature:5.2f} {len(found):7d} {np.mean([j.num_candidates for j in task_jobs]):5.1f} "
            f"{taus.mean():6.3f} [{tau_ci[0]:.3f}, {tau_ci[1]:.3f}] {taus.min():8.3f} "
            f"{top1:6.3f} [{top1_ci[0]:.3f}, {top1_ci[1]:.3f}] {kls.mean():9.2e} {kls.max():9.2e}"
        )
    print(
        f"decision rule (top-1 >= 0.95 and mean tau >= 0.9 on every task): {'holds' if holds else 'fails'}; "
        f"bf16 units: {cpu_has_bf16()}; scoring default here: {default_scoring_dtype()}"
    )
    if args.out:
        figures = {
            "benchmark": "score --ranking",
            "demo_size": demo_label(args),
            "queries_per_task": args.queries,
            "cap": args.cap,
            "spans": len(spans),
            "float32_per_s": len(spans) / best["float32"][0],
            "bfloat16_per_s": len(spans) / best["bfloat16"][0],
            "speed_ratio": best["float32"][0] / best["bfloat16"][0],
            "tasks": per_task,
            "rule_holds": bool(holds),
            "bf16_units": bool(cpu_has_bf16()),
            "threads": torch.get_num_threads(),
            "load_before": list(args.load_before),
            "load_after": list(os.getloadavg()),
        }
        write_figures(args.out, figures)


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
    parser.add_argument("--no-ranking", action="store_true", help="skip float32 vs bfloat16 on demo candidates")
    parser.add_argument("--demo", type=Path, default=None, help="demo data folder (default: build one, quick size)")
    parser.add_argument("--queries", type=int, default=16, help="ranking: queries per task (default 16)")
    parser.add_argument("--cap", type=int, default=8, help="ranking: candidates per query (default 8)")
    parser.add_argument("--demo-size", default="quick", help="ranking: size of the demo data built (default quick)")
    parser.add_argument("--ranking-only", action="store_true", help="only float32 vs bfloat16 on demo candidates")
    parser.add_argument("--out", type=Path, default=None, help="ranking: also write its figures as JSON here")
    args = parser.parse_args()
    check_out(args.out, "score --ranking")
    args.load_before = os.getloadavg()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in args.load_before)}")
    if args.threads:
        torch.set_num_threads(args.threads)

    settings = ScoreSettings()
    if args.ranking_only:
        ranking_report(args, settings)
        return
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
    if not args.no_ranking:
        ranking_report(args, settings)


if __name__ == "__main__":
    main()
