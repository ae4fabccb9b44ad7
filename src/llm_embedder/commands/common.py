"""What several command handlers do alike: claim an output, show progress, name a model, join torchrun."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def claim(args: argparse.Namespace, path: str, command: str, inputs: dict, settings: dict | None = None, **kw):
    """The output rules of :mod:`llm_embedder.outputs`, with the command's ``--overwrite``."""
    from llm_embedder.outputs import claim

    if settings is None:
        settings = {k: v for k, v in vars(args).items() if k not in ("func", "io") and not k.startswith("_")}
    return claim(path, command, inputs=inputs, settings=settings, overwrite=getattr(args, "overwrite", False), **kw)


def progress(args: argparse.Namespace) -> bool | None:
    """``show_progress`` for the library: off with ``--quiet``, else its own choice (a terminal)."""
    return False if args.quiet else None


def model_reference(name: str | None) -> str:
    """How an index remembers its model: a folder by its absolute path, a name as given."""
    from llm_embedder.models.zoo import DEFAULT_ENCODER

    if name and Path(name).is_dir():
        return str(Path(name).resolve())
    return name or DEFAULT_ENCODER


def init_distributed(device: str) -> str:
    """Join the process group torchrun describes (if any); each rank gets its own GPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    import torch
    import torch.distributed as dist

    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if use_cuda else "cpu"


def json_object(file: Path) -> dict:
    """A JSON file's object, or ``{}`` when it is missing, unreadable or no object: for telling an
    output of this library from a user's folder (never an error)."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
