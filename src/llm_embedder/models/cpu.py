"""What the CPU can do, read from Linux ``/proc/cpuinfo`` (detected, never assumed)."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

# Only AMX tiles make torch's bf16 faster than float32 on a CPU: with avx512_bf16 alone (dot-product
# instructions) bf16 encoding, scoring and generation ran 0.8x float32 (docs: experiments/speed).
BF16_CPU_FLAGS = ("amx_bf16",)


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
