"""One place that hashes what a result depends on.

A cache, checkpoint, index, served collection or evaluation cell is reused only when the
fingerprint of everything it was made from matches. The pieces:

- :func:`settings_digest` — any JSON-able settings (canonical JSON, sorted keys);
- :func:`text_digest` / :func:`parts_digest` — sequences of strings;
- :func:`file_digest` / :func:`files_digest` — the bytes of data files (content, not names or dates);
- :func:`weights_digest` — every tensor of a model (names, shapes, dtypes and all values);
- :func:`code_digest` — the source of the modules that made a result, and the torch and
  transformers versions it ran on (a fixed evaluator or loss must not meet its old results);
- :func:`embedder_fingerprint` — an Embedder as a retriever: weights + instructions + token budgets
  + pooling + normalisation, i.e. everything that decides the vector a text gets.

Digests are hex strings; :data:`SHORT` characters are plenty to tell versions apart.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

SHORT = 16
_CHUNK = 1 << 20


def _hasher() -> Any:
    return hashlib.blake2b(digest_size=20)


def settings_digest(settings: Any, length: int = SHORT) -> str:
    """A digest of JSON-able settings; dict order does not matter, tuples equal lists."""
    text = json.dumps(settings, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def text_digest(texts: Iterable[str], length: int = SHORT) -> str:
    """A digest of a sequence of strings (order matters; no two sequences collide by concatenation)."""
    digest = _hasher()
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()[:length]


def parts_digest(parts: Iterable[str], length: int = SHORT) -> str:
    """SHA-1 of strings each ended by a NUL byte (at most 40 characters).

    The key of the evaluation's corpus-embedding cache files (``evaluation/retrievers.py``), kept as it
    was so that caches already on disk stay valid; new keys use :func:`text_digest`, which no string can
    make collide by containing a NUL.
    """
    digest = hashlib.sha1()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:length]


def file_digest(path: str | os.PathLike, length: int = SHORT) -> str:
    """A digest of a file's bytes, or of a folder's files (relative names and bytes, sorted)."""
    path = Path(path)
    digest = _hasher()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if file != path:
            digest.update(file.relative_to(path).as_posix().encode("utf-8") + b"\0")
        with file.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        digest.update(b"\1")
    return digest.hexdigest()[:length]


def files_digest(paths: Iterable[str | os.PathLike], length: int = SHORT) -> str:
    """A digest of several files in the given order (each by content)."""
    return settings_digest([file_digest(p, length=40) for p in paths], length=length)


def code_digest(*modules: str, length: int = SHORT) -> str:
    """A digest of the named modules' source (a package: every ``.py`` file under it) and of the
    torch and transformers versions."""
    import importlib.metadata
    import importlib.util

    files: list[Path] = []
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ValueError(f"no module named {name!r}")
        origin = Path(spec.origin)
        files += sorted(origin.parent.rglob("*.py")) if spec.submodule_search_locations else [origin]
    versions = {lib: importlib.metadata.version(lib) for lib in ("torch", "transformers")}
    return settings_digest({"source": files_digest(files, length=40), **versions}, length=length)


def weights_digest(module: torch.nn.Module, length: int = SHORT) -> str:
    """A digest of every parameter and buffer: name, shape, dtype and all values.

    Hashes the full tensors (about 0.1 s for MiniLM): any training step, merge or replaced folder
    changes it, so no result made with other weights is ever reused.
    """
    digest = _hasher()
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}".encode())
        # bf16 has no numpy dtype: hash its raw bytes through a same-size integer view.
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.view(torch.int16)
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()[:length]


def embedder_fingerprint(embedder: Any, length: int = SHORT) -> str:
    """What decides an Embedder's vectors: weights, the task table (instructions, budgets), pooling, normalisation.

    Not cached: weights can change in place (training), and hashing MiniLM takes ~0.1 s. Callers
    that serve one fixed model compute it once.
    """
    tasks = {
        name: {
            "query_instruction": task.query_instruction,
            "key_instruction": task.key_instruction,
            "query_max_length": task.query_max_length,
            "key_max_length": task.key_max_length,
        }
        for name, task in embedder.tasks.items()
    }
    settings = {
        "weights": weights_digest(embedder.model, length=40),
        "tasks": tasks,
        "pooling": embedder.pooling,
        "normalize": bool(embedder.normalize),
    }
    return settings_digest({**settings, **_runtime(embedder)}, length=length)


def encoder_fingerprint(embedder: Any, length: int = SHORT) -> str:
    """What makes query vectors comparable with saved key vectors: weights, pooling, normalisation.

    Instructions are left out on purpose: the keys are already encoded, and an index restores the
    query instruction it was built with (a user may also pick another one deliberately)."""
    settings = {
        "weights": weights_digest(embedder.model, length=40),
        "pooling": embedder.pooling,
        "normalize": bool(embedder.normalize),
    }
    return settings_digest({**settings, **_runtime(embedder)}, length=length)


def _runtime(embedder: Any) -> dict[str, str]:
    """An ONNX runtime (int8 above all) gives other vectors from the same torch weights."""
    if getattr(embedder, "runtime", None) is not None:
        return {"runtime": f"onnx-{embedder.runtime_dtype}"}
    return {}
