"""Every table of the docs from the committed results: ``make tables`` (``tests/test_tables.py`` checks them).

Each run of a benchmark or an experiment that the docs quote leaves a small JSON under ``results/``
(copied there from ``runs/`` by the command that made it, or with ``--out``).  This script renders each
JSON into the Markdown table beside it (``X.json`` -> ``X.md``), and the docs include those files, so a
table in the docs is always what the committed numbers say:

* ``leaderboard.json`` (the evaluation harness): the leaderboard with intervals, marks and the
  difference table, by :func:`llm_embedder.evaluation.leaderboard.leaderboard_markdown`;
* a benchmark's JSON (its ``benchmark`` field names it): the renderer of that benchmark below.

Run from the repository root::

    .venv/bin/python benchmarks/tables.py            # rewrite every table
    .venv/bin/python benchmarks/tables.py --check    # exit 1 if a committed table differs
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_embedder.evaluation.stats import MARKS
from llm_embedder.fileio import atomic_path
from llm_embedder.selection import worst_check

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _load(values: list[float]) -> str:
    return " / ".join(f"{x:.2f}" for x in values)


def _machine(figures: dict[str, Any]) -> str:
    threads = f"{figures['threads']} torch threads, " if "threads" in figures else ""
    return (
        f"{threads}load average (1, 5, 15 min) before {_load(figures['load_before'])}, "
        f"after {_load(figures['load_after'])}"
    )


def score_ranking(figures: dict[str, Any]) -> str:
    """``benchmarks/score.py --ranking-only``: float32 against bfloat16 rewards, per task."""
    lines = [
        "| task | queries | candidates | mean Kendall tau [95% CI] | min tau | top-1 agreement [95% CI] "
        "| mean KL | max KL | rule |",
        "|---|---:|---:|---|---:|---|---:|---:|---|",
    ]
    for task, t in figures["tasks"].items():
        lines.append(
            f"| {task} | {t['queries']} | {t['candidates_mean']:.1f} "
            f"| {t['tau_mean']:.3f} [{t['tau_interval'][0]:.3f}, {t['tau_interval'][1]:.3f}] | {t['tau_min']:.3f} "
            f"| {t['top1']:.3f} [{t['top1_interval'][0]:.3f}, {t['top1_interval'][1]:.3f}] "
            f"| {t['kl_mean']:.1e} | {t['kl_max']:.1e} | {'holds' if t['passes'] else 'fails'} |"
        )
    lines += [
        "",
        f"{figures['spans']} spans of the demo's training queries ({figures['demo_size']}, "
        f"{figures['queries_per_task']} per task, every positive and at most {figures['cap']} other candidates "
        "each): float32 "
        f"{figures['float32_per_s']:.2f}/s, bfloat16 {figures['bfloat16_per_s']:.2f}/s "
        f"(**{figures['speed_ratio']:.2f}x**); {_machine(figures)}. Rule (top-1 >= 0.95 and mean tau >= 0.9 "
        f"on every task): **{'holds' if figures['rule_holds'] else 'fails'}**.",
    ]
    return "\n".join(lines)


def generate_queries(figures: dict[str, Any]) -> str:
    """``benchmarks/generate_queries.py``: batched query writing against a one-prompt-at-a-time loop."""
    return "\n".join(
        [
            "| writer | dtype | prompts | naive questions/s | ours questions/s | ours / naive | differ |",
            "|---|---|---:|---:|---:|---:|---:|",
            f"| {figures['lm']} | {figures['dtype']} | {figures['prompts']} "
            f"| {figures['naive_questions_per_s']:.2f} | {figures['ours_questions_per_s']:.2f} "
            f"| **{figures['ratio']:.2f}x** | {figures['differ']} |",
            "",
            f"{figures['cpu']}; {_machine(figures)}.",
        ]
    )


def encode_fidelity(figures: dict[str, Any]) -> str:
    """``benchmarks/encode.py --fidelity``: each encoding's speed and its verdict by the fidelity rule."""
    columns = [c["name"] for c in next(iter(figures["variants"].values()))["verdict"]["columns"]]
    lines = [
        "| encoding | texts/s | x ST fp32 | mean cos | top-10 overlap | "
        + " | ".join(f"{c} difference [95% CI]" for c in columns)
        + " | rule |",
        "|---|---:|---:|---:|---:|" + "---|" * len(columns) + "---|",
    ]
    for name, v in figures["variants"].items():
        verdict = v["verdict"]
        diffs = [
            f"{c['difference']:+.4f} [{c['interval'][0]:+.4f}, {c['interval'][1]:+.4f}]" for c in verdict["columns"]
        ]
        rule = "passes" if verdict["passed"] else "fails: " + "; ".join(verdict["reasons"])
        lines.append(
            f"| {name} | {v['texts_per_s']:.1f} | {v['ratio_to_st_float32']:.2f} | {verdict['mean_cosine']:.5f} "
            f"| {verdict['overlap']:.3f} | " + " | ".join(diffs) + f" | {rule} |"
        )
    load = figures["load_average"]
    lines += [
        "",
        f"{figures['queries']} queries and {figures['keys']} keys ({', '.join(figures['splits'])}), batch "
        f"{figures['batch_size']}, against {figures['reference']}; {figures['machine']['cpu']}, "
        + (f"bf16 probe {figures['bf16_probe']:.2f}x float32, " if "bf16_probe" in figures else "")
        + f"{figures['threads']} torch threads, load average "
        f"(1, 5, 15 min) before {_load(load['before'])}, after {_load(load['after'])}. `auto` here: "
        f"{figures['auto']['backend']} {figures['auto']['dtype']}.",
    ]
    return "\n".join(lines)


def serve(figures: dict[str, Any]) -> str:
    """``benchmarks/serve.py``: the server against a one-forward-per-request server and in-process encoding."""
    config = figures["config"]
    lines = [
        "| workload | backend | in-process texts/s | server req/s | naive req/s | server p50 / p99 ms "
        "| naive p50 / p99 ms | server / naive | server / in-process | inputs a batch | batching gain in-process |",
        "|---|---|---:|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for name, w in figures["workloads"].items():
        server, naive, gain = w["server"], w["naive"], w.get("batching", {}).get("gain")
        lines.append(
            f"| {name} | {config['backend']} {config['dtype']} | {w['in_process']['throughput']:.1f} "
            f"| {server['throughput']:.1f} | {naive['throughput']:.1f} "
            f"| {server['p50_ms']:.0f} / {server['p99_ms']:.0f} | {naive['p50_ms']:.0f} / {naive['p99_ms']:.0f} "
            f"| **{w['server_over_naive']:.2f}x** | {w['server_over_in_process']:.2f} "
            f"| {server['batches']['inputs_per_batch']:.1f} | {'' if gain is None else f'{gain:.2f}x'} |"
        )
    lines += [
        "",
        f"{config['clients']} clients, {config['model']}, {config['model_threads']} model thread(s), "
        + (f"{figures['machine']['cpu']}, " if "cpu" in figures["machine"] else "")
        + f"{figures['machine']['cores']} cores; load average (1, 5, 15 min) at start "
        f"{_load(figures['load_at_start'])}, at end {_load(figures['load_at_end'])}.",
    ]
    return "\n".join(lines)


def popqa_prefill(figures: dict[str, Any]) -> str:
    """``benchmarks/popqa_prefill.py``: PopQA with one prefill per prompt against generate-then-score."""
    lines = [
        "| path | wall s | CPU s | LM tokens | accuracy | answer log-likelihood |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, run in figures["runs"].items():
        lines.append(
            f"| {label} | {run['seconds']:.1f} | {run['cpu_seconds']:.1f} | {run['lm_tokens']} "
            f"| {run['accuracy']:.3f} | {run['answer_loglik']:.6f} |"
        )
    lines += [
        "",
        f"{figures['questions']} questions of {figures['prompt_tokens_mean']:.0f} prompt tokens on average, "
        f"{figures['lm']} in {figures['dtype']}: **{figures['ratio']:.2f}x**; generations that differ: "
        f"{figures['differ']}; largest answer log-likelihood difference {figures['max_loglik_difference']:.1e}; "
        f"{_machine(figures)}.",
    ]
    return "\n".join(lines)


def adapt_writers(figures: dict[str, Any]) -> str:
    """``benchmarks/adapt_eval/writers.py``: what each LLM's questions keep through adapt's filters."""
    reasons = sorted({k for run in figures["writers"].values() for k in run["counts"] if k.startswith("dropped")})
    lines = [
        "| writer | written | " + " | ".join(reasons) + " | kept | share kept | seconds |",
        "|---|---:|" + "---:|" * len(reasons) + "---:|---:|---:|",
    ]
    for name, run in figures["writers"].items():
        counts = run["counts"]
        dropped = " | ".join(str(counts.get(k, 0)) for k in reasons)
        share = counts.get("kept", 0) / max(1, counts.get("written", 0))
        lines.append(
            f"| {name} | {counts.get('written', 0)} | {dropped} | {counts.get('kept', 0)} | {share:.0%} "
            f"| {run['seconds']:.0f} |"
        )
    lines += [
        "",
        f"{figures['keys']} of {figures['passages']} passages (seeded sample), {figures['per_key']} question(s) "
        f"each, consistency filter top-{figures['filter_top_k']}; {_machine(figures)}.",
    ]
    return "\n".join(lines)


def adapt_runs(figures: dict[str, Any]) -> str:
    """``benchmarks/adapt_eval/evaluate.py``: what each ``adapt`` run generated, chose and took."""
    lines = [
        "| run | what differs | qa questions kept of written | tool requests kept of written | train / dev (qa, tool) "
        "| chosen | its check | minutes |",
        "|---|---|---:|---:|---|---|---:|---:|",
    ]
    for name, run in figures["runs"].items():
        qa, tool = run["generated"].get("qa") or {}, run["generated"].get("tool") or {}
        check = run["candidates"].get(run["chosen"], {}).get("ood") if run["chosen"] else None
        lines.append(
            f"| {name} | {run.get('differs', '')} | {qa.get('kept', 0)} of {qa.get('written', 0)} "
            f"| {tool.get('kept', 0)} of {tool.get('written', 0)} "
            f"| {qa.get('train', 0)} / {qa.get('dev', 0)}, {tool.get('train', 0)} / {tool.get('dev', 0)} "
            f"| {run['chosen'] or 'base (kept)'} | {'—' if check is None else f'{check:.3f}'} "
            f"| {sum(run['seconds'].values()) / 60:.0f} |"
        )
    written = figures["test queries the LLM also wrote"]
    found = "; ".join(f"{task}: " + ", ".join(f'"{q}"' for q in qs) for task, qs in written.items() if qs)
    lines += [
        "",
        "Its check: the chosen model's mean score relative to the base on the generality check (the demo data's "
        "dev split; >= 1.0 is required).",
        f"Test queries that an LLM also wrote, word for word: {found or 'none'}.",
    ]
    return "\n".join(lines)


def adapt_looks(figures: dict[str, Any]) -> str:
    """``benchmarks/adapt_eval/looks.py``: each run's chosen model against the base, Holm over every look."""
    lines = ["| run | chosen | column | difference [95% CI] | raw p | Holm p | |", "|---|---|---|---|---:|---:|---|"]
    for c in figures["comparisons"]:
        low, high = c["interval"]
        lines.append(
            f"| {c['run']} | {c['model']} | {c['column']} | {c['difference']:+.3f} [{low:+.3f}, {high:+.3f}] "
            f"| {c['p_value']:.4f} | {c['p_holm']:.3f} | {MARKS[c['verdict']]} |"
        )
    tables = sorted({c["table"] for c in figures["comparisons"]})
    lines += [
        "",
        f"Holm's correction over all {len(figures['comparisons'])} comparisons (alpha {figures['alpha']}); "
        f"from {', '.join(f'`{t}`' for t in tables)}.",
    ]
    return "\n".join(lines)


def selection(figures: dict[str, Any]) -> str:
    """``llm-embedder run --select``'s ``selection.json``: each model's mean score relative to the base per
    split, the worst out-of-domain check (what the rule's floor reads) and the pick."""
    splits = [s for s in next(iter(figures["scores"].values())) if s != "dev"]
    head = " | ".join(f"{s} ({'/'.join(Path(figures['checks'][s]).parts[-2:])})" for s in splits)
    lines = [f"| model | dev | {head} | worst check | |", "|---|---:|" + "---:|" * len(splits) + "---:|---|"]

    def cell(value: float | None) -> str:
        return "—" if value is None else f"{value:.3f}"

    for name, scores in figures["scores"].items():
        checks = [scores[s] for s in splits]
        worst = worst_check(scores)
        mark = "**chosen**" if name == figures["chosen"] else "reference" if name == "base" else ""
        row = [name, cell(scores["dev"]), *map(cell, checks), cell(worst), mark]
        lines.append("| " + " | ".join(row) + " |")
    checks = "; ".join(f"{s}: `{folder}`" for s, folder in figures["checks"].items())
    lines += ["", f"Rule: {figures['rule']}. Checks: {checks}."]
    return "\n".join(lines)


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "llm-embedder selection": selection,
    "adapt runs": adapt_runs,
    "adapt looks": adapt_looks,
    "adapt writers": adapt_writers,
    "serve": serve,
    "popqa_prefill": popqa_prefill,
    "llm-embedder benchmark: encode --fidelity": encode_fidelity,
    "score --ranking": score_ranking,
    "generate_queries": generate_queries,
}


def render(path: Path) -> str | None:
    """The Markdown table of one results JSON; None for a JSON no renderer knows."""
    figures = json.loads(path.read_text(encoding="utf-8"))
    if path.name == "leaderboard.json":
        from llm_embedder.evaluation.leaderboard import leaderboard_markdown

        return leaderboard_markdown(figures)
    kind = (figures.get("benchmark") or figures.get("kind")) if isinstance(figures, dict) else None
    renderer = RENDERERS.get(kind)
    return None if renderer is None else renderer(figures) + "\n"


README_BLOCKS = {
    "test-table": Path("demo") / "test" / "leaderboard.md",
    "adapt-table": Path("adapt-eval") / "unwritten" / "leaderboard.md",
}
"""README blocks (between ``<!-- --8<-- [start:NAME] -->`` and its end marker) that hold a rendered table:
the README is read where snippets are not expanded, so the table is written into it."""


def _readme_with_blocks(readme: Path, rendered: dict[Path, str], root: Path) -> str | None:
    if not readme.is_file():
        return None
    text = readme.read_text(encoding="utf-8")
    for name, source in README_BLOCKS.items():
        table = rendered.get(root / source)
        start, end = f"<!-- --8<-- [start:{name}] -->\n", f"<!-- --8<-- [end:{name}] -->"
        if table is None or start not in text or end not in text:
            continue
        head, rest = text.split(start, 1)
        text = head + start + table + end + rest.split(end, 1)[1]
    return text


def tables(root: Path = RESULTS) -> dict[Path, str]:
    """``{markdown path: its text}`` for every results JSON that has a renderer, and the README with the
    tables of :data:`README_BLOCKS` written into it (when ``root`` is the repository's results folder)."""
    rendered = {path.with_suffix(".md"): text for path in sorted(root.rglob("*.json")) if (text := render(path))}
    readme = root.parent / "README.md"
    if root.resolve() == RESULTS and (text := _readme_with_blocks(readme, rendered, root)) is not None:
        rendered[readme] = text
    return rendered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--check", action="store_true", help="compare with the committed tables; write nothing")
    args = parser.parse_args(argv)
    stale = []
    for path, text in tables(args.results).items():
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            with atomic_path(path) as tmp:
                tmp.write_text(text, encoding="utf-8")
    verb = "differ from their results (run `make tables`)" if args.check else "rewritten"
    for path in stale:
        print(f"{path}: {verb}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
