"""Fixtures for the evaluation tests: a tiny random causal LM on the real SmolLM2 tokenizer.

``eval_lm_dir``
    A folder with a tiny *random* Llama (hidden 32, 2 layers, window 512) saved with the
    SmolLM2-135M-Instruct tokenizer; loadable by ``CausalLM.from_pretrained(folder)`` and by
    ``llm-embedder eval --lm FOLDER``.  Session-scoped: never write into it.
``eval_lm``
    ``CausalLM.from_pretrained(eval_lm_dir)`` (float32, CPU).  Session-scoped: do not mutate it
    (wrap it, or use ``monkeypatch``, which undoes itself).
``smollm2``
    The real SmolLM2-135M-Instruct (integration tests only; loaded once per session).
"""

from __future__ import annotations

from pathlib import Path

import pytest

EVAL_LM_WINDOW = 512


def _lm_tokenizer():
    from transformers import AutoTokenizer

    from llm_embedder.models.zoo import MissingModelPackage, resolve

    try:
        return AutoTokenizer.from_pretrained(resolve("smollm2-135m"))
    except MissingModelPackage as exc:  # the converted SmolLM2 folder comes with the test setup
        pytest.skip(f"SmolLM2 tokenizer unavailable: {exc}")


def build_eval_lm(directory: Path, tokenizer, seed: int = 0, window: int = EVAL_LM_WINDOW) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=window,
        initializer_range=0.3,  # wide enough that log-probabilities differ between texts
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def eval_lm_dir(tmp_path_factory) -> Path:
    return build_eval_lm(tmp_path_factory.mktemp("eval-lm"), _lm_tokenizer())


@pytest.fixture(scope="session")
def eval_lm(eval_lm_dir):
    from llm_embedder.models.lm import CausalLM

    return CausalLM.from_pretrained(eval_lm_dir, device="cpu")


@pytest.fixture(scope="session")
def smollm2():
    from llm_embedder.models.lm import CausalLM

    return CausalLM.from_pretrained("smollm2-135m", device="cpu")
