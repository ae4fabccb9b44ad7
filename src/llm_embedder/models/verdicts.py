"""Per-machine verdicts of the fidelity rule, and the encoding ``auto`` takes from them.

``benchmarks/encode.py --fidelity`` judges every backend and dtype against float32 on this machine
(the rule: ``evaluation/fidelity.py``) and records, per encoding, whether it passed and how fast it
was, in ``cache_dir()/encoding-verdicts/<machine>.json``.  The machine is named by a digest of what
changes either speed or numerics: the CPU model and count, its bf16 units, and the versions of
torch, onnxruntime and transformers; another machine or an upgrade finds no file.

``auto`` on a CPU then uses the fastest encoding that passed here, for a model of the architecture
it was measured on (model type, width, depth: a fine-tuned copy shares it), and otherwise the
built-in default of :func:`llm_embedder.models.loading.default_encoding`.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llm_embedder.errors import InputError
from llm_embedder.fileio import cache_dir, read_json, write_json
from llm_embedder.fingerprint import settings_digest
from llm_embedder.models.cpu import cpu_bf16_flags, cpu_model

log = logging.getLogger(__name__)

FOLDER = "encoding-verdicts"
FORMAT_VERSION = 1
KIND = "llm-embedder encoding verdicts"


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """What a verdict holds for: the CPU and the libraries that compute the vectors."""
    return {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "arch": platform.machine(),
        "bf16_units": list(cpu_bf16_flags()),
        "torch": _version("torch"),
        "onnxruntime": _version("onnxruntime"),
        "transformers": _version("transformers"),
    }


def verdict_path(info: Mapping[str, Any] | None = None) -> Path:
    """This machine's verdict file (it need not exist)."""
    return cache_dir() / FOLDER / f"{settings_digest(dict(info or machine()))}.json"


def architecture(config: Any) -> dict[str, Any]:
    """What a verdict carries over between models: a Hugging Face config's type, width and depth."""
    get = config.get if isinstance(config, Mapping) else lambda k: getattr(config, k, None)
    return {"model_type": get("model_type"), "hidden_size": get("hidden_size"), "layers": get("num_hidden_layers")}


def write_verdicts(record: Mapping[str, Any], path: Path | None = None) -> Path:
    """Write ``record`` (``architecture`` and ``encodings``: backend, dtype, passed, texts_per_s) as this
    machine's verdicts, atomically; returns the file."""
    path = path or verdict_path()
    write_json(path, {"kind": KIND, "format_version": FORMAT_VERSION, "machine": machine(), **record})
    return path


def read_verdicts(path: Path | None = None) -> dict[str, Any] | None:
    """This machine's verdicts, or None when there are none; a damaged file is reported and ignored
    (``auto`` then falls back to its default)."""
    path = path or verdict_path()
    if not path.is_file():
        return None
    try:
        record = read_json(path, "encoding verdicts")
    except InputError as exc:
        log.warning("ignoring the encoding verdicts: %s", exc)
        return None
    if not isinstance(record, dict) or record.get("kind") != KIND or record.get("format_version") != FORMAT_VERSION:
        log.warning("ignoring %s: not encoding verdicts of format %d", path, FORMAT_VERSION)
        return None
    return record


def choose(record: Mapping[str, Any] | None, arch: Mapping[str, Any], has_onnx: bool) -> tuple[str, str] | None:
    """The fastest passing encoding of ``record`` for a model of architecture ``arch``, or None."""
    if not record or record.get("architecture") != dict(arch):
        return None
    best: tuple[float, str, str] | None = None
    for entry in record.get("encodings") or ():
        if not isinstance(entry, Mapping) or entry.get("passed") is not True:
            continue
        backend, dtype, speed = entry.get("backend"), entry.get("dtype"), entry.get("texts_per_s")
        if backend not in ("torch", "onnx") or not isinstance(dtype, str) or not isinstance(speed, int | float):
            continue
        if backend == "onnx" and not has_onnx:
            continue
        if best is None or speed > best[0]:
            best = (float(speed), backend, dtype)
    return None if best is None else (best[1], best[2])
