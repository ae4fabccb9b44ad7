"""Child processes for the tests: the command line, and two processes under torch.distributed.run.

Importable from any test (``from processes import ...``): pytest puts this folder on ``sys.path``
because it holds the root ``conftest.py``.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def subprocess_env(**extra: str) -> dict[str, str]:
    """One thread per process (same kernels, same bits as a one-thread reference), offline, ``src`` importable."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    return {**env, **extra}


# ``llm-embedder -q`` as a module to run: after ``python`` or after torchrun's options
CLI_MODULE = ["-m", "llm_embedder.cli", "-q"]


def cli(*args: str) -> list[str]:
    """``llm-embedder -q ARGS`` as a command for ``subprocess``."""
    return [sys.executable, *CLI_MODULE, *args]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(nproc: int, args: list[str], env: dict[str, str], timeout: int) -> subprocess.CompletedProcess:
    """``torch.distributed.run`` on one node with ``nproc`` processes running ``args`` (a script or
    ``-m module`` and its arguments); a new port when another process took ours in between."""
    for _ in range(3):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc)]
        cmd += ["--master_addr", "127.0.0.1", "--master_port", str(_free_port()), *args]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode == 0 or not re.search(r"address already in use|EADDRINUSE", proc.stdout + proc.stderr, re.I):
            break
    return proc
