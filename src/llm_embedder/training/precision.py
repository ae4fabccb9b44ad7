"""Which precision training computes in: bf16 autocast only where the hardware has bf16 units.

``bf16: auto`` turns autocast on for a CUDA device that supports bfloat16 and for CPUs whose flags
show AMX bf16 tiles (``amx_bf16``); elsewhere bf16 is emulated or (``avx512_bf16`` dot products alone)
still slower than float32, so ``auto`` stays in float32.  The weights and the optimizer stay float32 either way, and
the losses score in float32 (``training.losses``).
"""

from __future__ import annotations

import torch

from llm_embedder.models.cpu import BF16_CPU_FLAGS, cpu_bf16_flags

__all__ = ["BF16_CPU_FLAGS", "cpu_bf16_flags", "resolve_mixed_precision"]


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
