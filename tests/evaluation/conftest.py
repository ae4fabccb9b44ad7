"""Fixtures for the evaluation tests: a tiny random causal LM on the real SmolLM2 tokenizer.

``eval_lm_dir``, ``eval_lm``
    The root conftest's tiny random Llama (``tiny_lm_dir``, ``tiny_lm``; window 512).
    Session-scoped: do not mutate them (wrap them, or use ``monkeypatch``).
``smollm2``
    The real SmolLM2-135M-Instruct (integration tests only; loaded once per session).
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def eval_lm_dir(tiny_lm_dir) -> Path:
    return tiny_lm_dir


@pytest.fixture(scope="session")
def eval_lm(tiny_lm):
    return tiny_lm


@pytest.fixture(scope="session")
def smollm2():
    from llm_embedder.models.lm import CausalLM

    return CausalLM.from_pretrained("smollm2-135m", device="cpu")
