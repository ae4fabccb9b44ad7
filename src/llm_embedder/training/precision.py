"""Which precision training computes in: bf16 autocast only where bf16 is faster than float32.

``bf16: auto`` turns autocast on for a CUDA device that supports bfloat16 and for CPUs where bf16 is
measured faster than float32 (``models.cpu.cpu_bf16_pays``: bf16 instructions, and a probe at least
``BF16_MIN_SPEEDUP`` times faster); elsewhere ``auto`` stays in float32.  The weights and the optimizer
stay float32 either way, and the losses score in float32 (``training.losses``).
"""

from __future__ import annotations

import torch

from llm_embedder.models.cpu import cpu_bf16_pays

__all__ = ["resolve_mixed_precision"]


def resolve_mixed_precision(bf16: bool | str, mixed_precision: str, on_cpu: bool) -> str:
    """The ``mixed_precision`` handed to accelerate: ``bf16`` when ``bf16`` is true, or ``auto`` and the
    device computes faster in bf16; otherwise ``mixed_precision`` as given."""
    if bf16 is False:
        return mixed_precision
    if mixed_precision == "fp16":
        raise ValueError(f"bf16={bf16!r} and mixed_precision=fp16 contradict each other; choose one")
    if bf16 is True:
        return "bf16"
    units = cpu_bf16_pays() if on_cpu else torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return "bf16" if units else mixed_precision
