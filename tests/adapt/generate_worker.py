"""torchrun worker for test_generate.py: query writing sharded over gloo ranks, results saved per rank.

Run as ``python -m torch.distributed.run --nproc_per_node 2 generate_worker.py OUTDIR``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist

from llm_embedder.userdata.generate import GenerationSettings, write_queries

KEYS = [f"Passage number {i} tells about topic{i} and subject{i} in some detail." for i in range(7)]


class RecordingLM:
    """Deterministic stand-in for greedy generation; records the prompts this rank wrote for."""

    def __init__(self):
        self.seen: list[str] = []

    def generate(self, prompts, max_new_tokens=32, stop="\n", batch_size=8):
        self.seen += list(prompts)
        return [f" What does topic{p.rsplit('topic', 1)[-1].split()[0]} say, variant {len(p) % 3}?" for p in prompts]


def run(lm) -> dict:
    made = write_queries(lm, KEYS, GenerationSettings(per_key=2, filter_top_k=2), "question")
    return {"queries": made.queries, "sources": made.sources, "counts": dict(made.counts)}


if __name__ == "__main__":
    dist.init_process_group("gloo")
    lm = RecordingLM()
    result = run(lm) | {"seen": lm.seen}
    Path(sys.argv[1], f"rank{dist.get_rank()}.json").write_text(json.dumps(result))
    dist.destroy_process_group()
