"""Fixtures for the reliability tests (helpers are in ``checks.py``).

``corpus_file``: a 10-document JSON-lines corpus; ``run_cli(*argv)`` -> (exit code, stderr lines),
in process; ``other_encoder_dir``: the tiny encoder with other weights of the same shape.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from checks import CORPUS_ROWS, write_jsonl

from llm_embedder.cli import main as cli_main


@pytest.fixture
def corpus_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "corpus.jsonl", CORPUS_ROWS)


@pytest.fixture
def run_cli(capsys):
    def run(*argv: str) -> tuple[int, list[str]]:
        capsys.readouterr()
        code = cli_main(["-q", *map(str, argv)])
        return code, capsys.readouterr().err.strip().splitlines()

    return run


@pytest.fixture(scope="session")
def other_encoder_dir(tiny_encoder_dir, tmp_path_factory) -> Path:
    import torch
    from transformers import AutoModel

    folder = tmp_path_factory.mktemp("other-encoder")
    shutil.copytree(tiny_encoder_dir, folder, dirs_exist_ok=True)
    model = AutoModel.from_pretrained(tiny_encoder_dir)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.01)
    model.save_pretrained(folder)
    return folder
