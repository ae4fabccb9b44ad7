"""What the CPU can do, read from Linux ``/proc/cpuinfo`` (detected, never assumed)."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

# The flags that give torch native bf16 arithmetic on a CPU; without them bf16 is emulated (slow).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# A flag alone does not say bf16 pays: with avx512_bf16 and no AMX, MiniLM encoding ran slower in bf16
# than in float32 on one host and faster on another (docs: experiments/speed). So it is measured: bf16 is
# chosen where a BERT-sized feed-forward block runs at least this much faster in bf16 than in float32.
BF16_MIN_SPEEDUP = 1.2


@functools.cache
def cpu_bf16_flags(cpuinfo: str = "/proc/cpuinfo") -> tuple[str, ...]:
    """The bf16 flags among the CPU's (Linux ``/proc/cpuinfo``); empty where they cannot be read."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return tuple(f for f in BF16_CPU_FLAGS if f in flags)


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else what :mod:`platform` says."""
    try:
        for line in Path(cpuinfo).read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bf16_speedup(tokens: int = 1024, hidden: int = 384, repeats: int = 3) -> float:
    """float32 time over bfloat16 time of a feed-forward block (linear, GELU, linear; MiniLM's shape by
    default) on ``tokens`` rows, best of ``repeats`` after one warm-up call each, on torch's threads."""
    import time

    import torch

    generator = torch.Generator().manual_seed(0)
    block = torch.nn.Sequential(
        torch.nn.Linear(hidden, 4 * hidden), torch.nn.GELU(), torch.nn.Linear(4 * hidden, hidden)
    ).eval()
    x = torch.randn(tokens, hidden, generator=generator)
    best = {}
    with torch.inference_mode():
        for dtype in (torch.float32, torch.bfloat16):
            model, inputs = block.to(dtype), x.to(dtype)
            model(inputs)
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                model(inputs)
                times.append(time.perf_counter() - started)
            best[dtype] = min(times)
    return best[torch.float32] / best[torch.bfloat16]


@functools.cache
def cpu_bf16_pays() -> bool:
    """Whether bf16 is worth computing in on this CPU: it has bf16 instructions and, measured once per
    process (a fraction of a second), runs the probe of :func:`bf16_speedup` at least
    ``BF16_MIN_SPEEDUP`` times faster than float32."""
    return bool(cpu_bf16_flags()) and bf16_speedup() >= BF16_MIN_SPEEDUP
