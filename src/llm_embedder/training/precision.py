"""Which precision training computes in: bf16 autocast only where the hardware has bf16 units.

``bf16: auto`` turns autocast on for a CUDA device that supports bfloat16 and for CPUs whose flags
show bf16 arithmetic (``avx512_bf16`` or ``amx_bf16``); elsewhere bf16 is emulated and slower than
float32, so ``auto`` stays in float32.  The weights and the optimizer stay float32 either way, and
the losses score in float32 (``training.losses``).
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


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


def resolve_mixed_precision(bf16: bool | str, mixed_precision: str, on_cpu: bool) -> str:
    """The ``mixed_precision`` handed to accelerate: ``bf16`` when ``bf16`` is true, or ``auto`` and the
    device has bf16 units; otherwise ``mixed_precision`` as given."""
    if bf16 is False:
        return mixed_precision
    if mixed_precision == "fp16":
        raise ValueError(f"bf16={bf16!r} and mixed_precision=fp16 contradict each other; choose one")
    if bf16 is True:
        return "bf16"
    units = bool(cpu_bf16_flags()) if on_cpu else torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return "bf16" if units else mixed_precision
