"""Helpers for loading models: device and dtype names as users write them, and quiet loads."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from llm_embedder.models.cpu import cpu_bf16_flags, cpu_bf16_pays

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def bf16_pays(device: torch.device) -> bool:
    """Whether ``device`` computes faster in bfloat16 than in float32: a GPU that supports it, or a CPU
    where the measured probe says so (``models.cpu.cpu_bf16_pays``)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_bf16_pays()


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; e.g. cpu, cuda, cuda:1, auto") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (resolved.index or 0) >= count:
            raise ValueError(f"device {device!r} is not available ({count} CUDA devices here)")
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None`` / ``"auto"``: float32 on CPU (exact), bfloat16 on a GPU that supports it.
    ``"fast"``: bfloat16 wherever it is faster than float32 (:func:`bf16_pays`), else float32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "fast":
        return torch.bfloat16 if bf16_pays(device) else torch.float32
    if dtype in (None, "auto"):
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(_DTYPES)}") from None


BACKENDS = ("auto", "torch", "onnx")
ONNX_DTYPES = ("float32", "int8")
TORCH_DTYPES = ("float32", "bfloat16", "float16")


def cpu_has_bf16() -> bool:
    """Whether the CPU has bfloat16 instructions (AVX512-BF16 or AMX); without them bf16 is emulated and slow.
    Having them does not make bf16 faster: :func:`bf16_pays` measures that."""
    return bool(cpu_bf16_flags())


def default_encoding(device: torch.device, architecture: dict[str, Any] | None = None) -> tuple[str, str]:
    """Backend and dtype for encoding when the user asks for ``auto``.

    On a CPU: the fastest encoding that passed the fidelity rule on this machine for a model of this
    ``architecture`` (``models/verdicts.py``, written by ``benchmarks/encode.py --fidelity``); without
    such a verdict, onnx float32 where onnxruntime is installed (float32 numerics, faster than torch's),
    else torch float32.  On a GPU: torch in its default dtype."""
    if device.type != "cpu":
        return "torch", dtype_name(resolve_dtype(None, device))
    import importlib.util

    has_onnx = importlib.util.find_spec("onnxruntime") is not None
    if architecture is not None:
        from llm_embedder.models import verdicts

        chosen = verdicts.choose(verdicts.read_verdicts(), architecture, has_onnx)
        if chosen is not None and chosen[1] in (ONNX_DTYPES if chosen[0] == "onnx" else TORCH_DTYPES):
            return chosen
    return ("onnx", "float32") if has_onnx else ("torch", "float32")


def resolve_encoding(
    backend: str | None,
    dtype: str | torch.dtype | None,
    device: torch.device,
    architecture: dict[str, Any] | None = None,
) -> tuple[str, Any]:
    """Check a backend/dtype pair; ``auto`` backend: int8 means onnx, no dtype means :func:`default_encoding`
    (for a model of ``architecture``, when given)."""
    backend = backend or "torch"
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    name = dtype if isinstance(dtype, str) or dtype is None else dtype_name(dtype)
    name = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}.get(name, name)  # type: ignore[arg-type]
    if backend == "auto":
        if name in (None, "auto"):
            return default_encoding(device, architecture)
        backend = "onnx" if name == "int8" else "torch"
    if backend == "onnx":
        if device.type != "cpu":
            raise ValueError("the onnx backend runs on the CPU; use backend torch on a GPU")
        name = "float32" if name in (None, "auto") else name
        if name not in ONNX_DTYPES:
            raise ValueError(f"the onnx backend runs {' or '.join(ONNX_DTYPES)}, not {name}; bfloat16 runs on torch")
        return backend, name
    if name == "int8":
        raise ValueError("int8 runs on the onnx backend (onnxruntime dynamic quantisation): add --backend onnx")
    return backend, dtype


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@contextlib.contextmanager
def quiet_hf_loading() -> Iterator[None]:
    """Silence transformers' per-load progress bars and load reports (we drop the unused pooler,
    which it would otherwise report as missing on every reload)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
