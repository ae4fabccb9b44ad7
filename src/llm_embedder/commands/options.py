"""Option groups shared by several commands, each defined once with the one place that maps it to the library."""

from __future__ import annotations

import argparse
import math
from typing import Any

from llm_embedder.outputs import Port


def number(kind: type = int, low: float | None = None, high: float | None = None):
    """The one check of every numeric option: its type and range, the option named in the message."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"expected at least {low:g}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"expected at most {high:g}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


COUNT = number(int, 1)
"""A positive integer: batch sizes, -k, limits, --ef-search, --nprobe, token budgets ..."""
SEED = number(int, 0, 2**32 - 1)


def task_names() -> str:
    """The built-in tasks, for help texts."""
    from llm_embedder.tasks import DEFAULT_TASKS

    return ", ".join(DEFAULT_TASKS)


# ---------------------------------------------------------------------------- the embedder
MODEL = Port("--model", "encoder")
TASKS = Port("--tasks-file", "tasks-file")
"""The path options of :func:`add_embedder`, for a command's ``io=Spec``."""


def add_embedder(p: argparse.ArgumentParser) -> None:
    """The options of :meth:`Embedder.from_pretrained` (read back by :func:`embedder_options`)."""
    p.add_argument("--model", default=None, help="zoo name (minilm), local folder or hub id; default: minilm")
    p.add_argument(
        "--instructions", default=None, help="instruction set: llm-embedder, none, bge, e5 (default: the model's own)"
    )
    p.add_argument("--tasks-file", default=None, help="YAML file adding or overriding tasks")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: auto)")
    p.add_argument(
        "--backend",
        choices=("auto", "torch", "onnx"),
        default="auto",
        help="torch, or onnx (onnxruntime, CPU; pip install llm-embedder[onnx]); auto: the fastest "
        "encoding that passed the fidelity rule on this machine, else onnx float32 (docs: scale out)",
    )
    p.add_argument(
        "--dtype", default=None, help="torch: float32, bfloat16, float16; onnx: float32, int8 (default: auto)"
    )
    p.add_argument("--batch-size", type=COUNT, default=64)


def embedder_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :meth:`Embedder.from_pretrained` (less the model) that the options give.

    ``instructions`` and ``tasks`` only when given: a searcher then keeps the query instruction its
    index was built with (:meth:`Searcher.load`).
    """
    options: dict[str, Any] = {
        "device": args.device,
        "dtype": args.dtype,
        "batch_size": args.batch_size,
        "backend": args.backend,
    }
    if args.instructions is not None:
        options["instructions"] = args.instructions
    if args.tasks_file is not None:
        options["tasks"] = args.tasks_file
    return options


def load_embedder(args: argparse.Namespace):
    """The :class:`Embedder` the options of :func:`add_embedder` name."""
    from llm_embedder.models.embedder import Embedder

    return Embedder.from_pretrained(args.model, **embedder_options(args))


# ---------------------------------------------------------------------------- approximate search
def add_search_params(p: argparse.ArgumentParser, default: str) -> None:
    """faiss's search breadth; ``default`` says where it comes from when not given."""
    p.add_argument("--nprobe", type=COUNT, default=None, help=f"IVF lists searched ({default})")
    p.add_argument("--ef-search", type=COUNT, default=None, help=f"HNSW search breadth ({default})")


def search_params(args: argparse.Namespace) -> dict[str, int]:
    """The faiss parameters given (``nprobe``, ``efSearch``), for :class:`DenseIndex.set_search_params`."""
    return {k: v for k, v in (("nprobe", args.nprobe), ("efSearch", args.ef_search)) if v is not None}


# ---------------------------------------------------------------------------- outputs
def add_overwrite(p: argparse.ArgumentParser, restart: bool = False) -> None:
    p.add_argument("--overwrite", action="store_true", help="replace an existing output this command did not write")
    if restart:
        p.add_argument("--restart", action="store_true", help="start over when the earlier run used other settings")
