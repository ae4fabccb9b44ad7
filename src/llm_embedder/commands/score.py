"""``llm-embedder score``: the parser and the handler."""

from __future__ import annotations

import argparse

from llm_embedder.commands.common import init_distributed
from llm_embedder.commands.options import COUNT, TASKS, add_overwrite
from llm_embedder.outputs import FILE, Port, Spec

SCORE = Spec(
    "score",
    (Port("--input", "records"), Port("--lm", "lm"), TASKS, Port("--output", "records", FILE)),
    (("--input", "{records}", "--lm", "{lm}", "--device", "cpu"),),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score candidates with a causal LM (teacher_scores); resumable; torchrun shards it",
        description="Reward = mean log-likelihood per token of the answers given each candidate. "
        "Many processes: torchrun --nproc_per_node N -m llm_embedder.cli score ...",
    )
    p.add_argument("--lm", default=None, help="causal LM: zoo name, folder, hub id or .gguf (default smollm2-135m)")
    p.add_argument("--input", required=True, help="JSON-lines records with query, task, answers and candidates")
    p.add_argument("--output", required=True, help="output records with teacher_scores; rerun to resume")
    p.add_argument("--aggregate", choices=("mean", "max"), default="mean", help="combine several answers' rewards")
    p.add_argument("--max-key-tokens", type=COUNT, default=512, help="cut candidates to this many LLM tokens")
    p.add_argument("--token-budget", type=COUNT, default=16384, help="padded tokens per forward pass")
    p.add_argument("--chunk-records", type=COUNT, default=64, help="records written (and redone after a kill) at once")
    p.add_argument("--tasks-file", default=None, help="YAML file adding or overriding tasks (templates)")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--dtype",
        default=None,
        help="float32 (CPU default: bf16 rewards picked another best candidate for 11 of 100 ICL queries, "
        "docs/experiments/speed.md), bfloat16 (GPU default), float16",
    )
    add_overwrite(p, restart=True)
    p.set_defaults(func=run, io=SCORE)


def run(args: argparse.Namespace) -> int:
    from llm_embedder.models.lm import CausalLM
    from llm_embedder.rewards.score import ScoreSettings, default_scoring_dtype, score_file
    from llm_embedder.tasks import DEFAULT_TASKS, TaskTable

    device = init_distributed(args.device)
    tasks = TaskTable.from_yaml(args.tasks_file) if args.tasks_file else DEFAULT_TASKS
    settings = ScoreSettings(
        max_key_tokens=args.max_key_tokens,
        aggregate=args.aggregate,
        token_budget=args.token_budget,
        chunk_records=args.chunk_records,
    )
    lm = CausalLM.from_pretrained(args.lm, device=device, dtype=args.dtype or default_scoring_dtype(device))
    n = score_file(
        lm,
        args.input,
        args.output,
        tasks=tasks,
        settings=settings,
        show_progress=not args.quiet,
        overwrite=args.overwrite,
        restart=args.restart,
    )
    print(f"scored {n} records into {args.output}" if n else f"{args.output} is complete and current; nothing to do")
    return 0
