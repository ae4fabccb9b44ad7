"""The Embedder: a Hugging Face encoder, a pooling rule, normalisation and a task table.

``encode_queries(texts, task)`` and ``encode_keys(texts, task)`` prefix the task's instruction,
truncate to the task's token budget, batch texts of similar length together (less padding, less
work), and return float32 arrays in the input order.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from llm_embedder.fileio import read_json, write_json
from llm_embedder.models import zoo
from llm_embedder.models.loading import (
    dtype_name,
    quiet_hf_loading,
    resolve_device,
    resolve_dtype,
    resolve_encoding,
)
from llm_embedder.models.onnx_backend import OnnxEncoder, ensure_onnx
from llm_embedder.tasks import DEFAULT_TASKS, TaskTable

SETTINGS_FILE = "llm_embedder.json"
POOLINGS = ("cls", "mean", "last")
# Below this many texts a progress bar is more noise than help.
PROGRESS_MIN_TEXTS = 512
# encode() fills batches of short texts with more rows, up to this many tokens (padding included).
MERGE_MAX_TOKENS = 8192


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, method: str) -> torch.Tensor:
    """Pool token states ``[n, L, d]`` into one vector per text (right padding assumed)."""
    if method == "cls":
        return hidden[:, 0]
    if method == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
    if method == "last":
        last = attention_mask.sum(1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"unknown pooling {method!r}; known: {', '.join(POOLINGS)}")


class Embedder(torch.nn.Module):
    """One encoder serving every task through per-task instructions."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        pooling: str = "cls",
        normalize: bool = True,
        tasks: TaskTable = DEFAULT_TASKS,
        batch_size: int = 64,
        runtime: OnnxEncoder | None = None,
        runtime_dtype: str | None = None,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; known: {', '.join(POOLINGS)}")
        self.model = model
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "right"  # pooling assumes it
        self.pooling = pooling
        self.normalize = normalize
        self.tasks = tasks
        self.batch_size = _check_batch_size(batch_size)
        # backend onnx: encode() runs the transformer in onnxruntime (same pooling, normalisation and
        # instructions); the torch model stays for training, fingerprints and export.
        self.runtime = runtime
        self.runtime_dtype = runtime_dtype

    # ----------------------------------------------------------------- loading and saving
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike | None = None,
        *,
        pooling: str | None = None,
        normalize: bool | None = None,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype | None = None,
        tasks: TaskTable | str | os.PathLike | Mapping[str, Any] | None = None,
        instructions: str | bool | None = None,
        batch_size: int = 64,
        backend: str = "torch",
    ) -> Embedder:
        """Load an encoder: a zoo name (default ``minilm``), a local folder or a hub id.

        Settings come from, in order: the arguments; the folder's own ``llm_embedder.json``
        (written by :meth:`save_pretrained`); the known settings of zoo and hub models (for
        ``BAAI/llm-embedder``: CLS pooling and its own instructions); a sentence-transformers
        pooling config; and finally CLS pooling without instructions.

        ``tasks`` is a :class:`TaskTable`, a YAML file, or a dict of task overrides.
        ``instructions`` picks an instruction set (``llm-embedder``, ``none``, ``bge``, ``e5``;
        ``True``/``False`` mean ``llm-embedder``/``none``).

        ``backend``: ``torch`` (``dtype`` float32, bfloat16, float16) or ``onnx`` (``dtype`` float32 or
        int8, onnxruntime on the CPU; the exported file is cached under a fingerprint of the weights);
        ``auto`` on a CPU takes the fastest encoding that passed the fidelity rule on this machine for a
        model of this architecture (``benchmarks/encode.py --fidelity`` records it), else onnx float32
        (:func:`default_encoding`).
        """
        from transformers import AutoModel, AutoTokenizer

        name = str(name_or_path or zoo.DEFAULT_ENCODER)
        path = zoo.locate(name)
        saved = _read_saved_settings(path)
        known = zoo.encoder_settings(name)

        pooling = pooling or saved.get("pooling") or (known and known.pooling) or _st_pooling(path) or "cls"
        normalize = normalize if normalize is not None else saved.get("normalize", True)
        table = TaskTable.from_dict(saved["tasks"]) if "tasks" in saved else DEFAULT_TASKS
        if "tasks" not in saved:
            table = table.with_instructions(known.instructions if known else "none")
        table = _apply_tasks(table, tasks)
        if instructions is not None:
            if isinstance(instructions, bool):
                instructions = "llm-embedder" if instructions else "none"
            table = table.with_instructions(instructions)

        torch_device = resolve_device(device)
        arch = None
        if backend == "auto" and dtype in (None, "auto") and torch_device.type == "cpu":
            from transformers import AutoConfig

            from llm_embedder.models.verdicts import architecture

            with quiet_hf_loading():
                arch = architecture(AutoConfig.from_pretrained(path))
        backend, dtype = resolve_encoding(backend, dtype, torch_device, arch)
        with quiet_hf_loading():
            tokenizer = AutoTokenizer.from_pretrained(path)
            torch_dtype = torch.float32 if backend == "onnx" else resolve_dtype(dtype, torch_device)
            model = AutoModel.from_pretrained(path, dtype=torch_dtype)
        # The pooler head is never used; dropping it avoids unused-parameter errors under DDP.
        if getattr(model, "pooler", None) is not None:
            model.pooler = None
        model.to(torch_device).eval()
        runtime = OnnxEncoder(ensure_onnx(model, path, dtype)) if backend == "onnx" else None
        return cls(
            model,
            tokenizer,
            pooling=pooling,
            normalize=normalize,
            tasks=table,
            batch_size=batch_size,
            runtime=runtime,
            runtime_dtype=dtype if runtime else None,
        )

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write the encoder, tokenizer and our settings (pooling, normalisation, task table)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with quiet_hf_loading():
            self.model.save_pretrained(directory)
            self.tokenizer.save_pretrained(directory)
        write_json(directory / SETTINGS_FILE, self.settings())

    def settings(self) -> dict[str, Any]:
        return {
            "format_version": 1,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "tasks": self.tasks.to_dict(),
        }

    def export_sentence_transformers(self, directory: str | os.PathLike) -> None:
        """Write a folder that ``SentenceTransformer(directory)`` loads, with one prompt per task and
        side (``qa_query``, ``qa_key``, ...), also under MTEB-style names (``qa-query``,
        ``qa-document``).  sentence-transformers has a single token budget, so the largest of the
        task table's budgets is used."""
        from sentence_transformers import SentenceTransformer

        try:
            from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
        except ImportError:  # sentence-transformers < 6
            from sentence_transformers.models import Normalize, Pooling, Transformer

        directory = Path(directory)
        self.save_pretrained(directory)
        max_length = max(max(t.query_max_length, t.key_max_length) for t in self.tasks.values())
        modules = [
            Transformer(str(directory), max_seq_length=max_length),
            Pooling(self.dim, pooling_mode={"last": "lasttoken"}.get(self.pooling, self.pooling)),
        ]
        if self.normalize:
            modules.append(Normalize())
        prompts = {}
        for name, task in self.tasks.items():
            prompts[f"{name}_query"] = prompts[f"{name}-query"] = task.query_instruction
            prompts[f"{name}_key"] = prompts[f"{name}-document"] = task.key_instruction
        st = SentenceTransformer(
            modules=modules,
            device=str(self.device),
            prompts=prompts,
            similarity_fn_name="cosine" if self.normalize else "dot",
        )
        st.save(str(directory))

    # ----------------------------------------------------------------- encoding
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def encode_queries(
        self, texts: Sequence[str], task: str, max_length: int | None = None, **kwargs: Any
    ) -> np.ndarray:
        """Queries of ``task`` with its query instruction, cut to ``max_length`` tokens (default: the task's)."""
        _check_texts(texts)
        spec = self.tasks.get_task(task)
        texts = [spec.query_text(t) for t in texts]
        return self.encode(texts, max_length=max_length or spec.query_max_length, **kwargs)

    def encode_keys(self, texts: Sequence[str], task: str, max_length: int | None = None, **kwargs: Any) -> np.ndarray:
        """Keys of ``task`` with its key instruction, cut to ``max_length`` tokens (default: the task's)."""
        _check_texts(texts)
        spec = self.tasks.get_task(task)
        return self.encode([spec.key_text(t) for t in texts], max_length=max_length or spec.key_max_length, **kwargs)

    def tokenize(self, texts: Sequence[str], max_length: int) -> dict[str, list[list[int]]]:
        """Token ids without padding, truncated to ``max_length``."""
        return self.tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)

    def collate(self, features: dict[str, list[list[int]]], rows: Sequence[int]) -> dict[str, torch.Tensor]:
        """Pad the given rows of tokenised features into one batch on the model's device."""
        batch = {k: [v[i] for i in rows] for k, v in features.items()}
        padded = self.tokenizer.pad(batch, return_tensors="pt")
        return {k: v.to(self.device) for k, v in padded.items()}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        """Pooled (and normalised) embeddings, with gradients: the training entry point."""
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        return self._pool(hidden, attention_mask)

    def _pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        emb = pool(hidden, attention_mask, self.pooling)
        return torch.nn.functional.normalize(emb, dim=-1) if self.normalize else emb

    @torch.inference_mode()
    def encode(
        self,
        texts: Sequence[str],
        max_length: int,
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> np.ndarray:
        """Embed texts as given (no instruction added); float32 ``[len(texts), dim]``.

        ``batch_size`` rows make a batch of the longest texts; a batch of shorter texts takes more
        rows, up to the same number of tokens (and at most ``MERGE_MAX_TOKENS``)."""
        _check_texts(texts)
        batch_size = _check_batch_size(self.batch_size if batch_size is None else batch_size)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not len(texts):
            return out
        features = self.tokenize(texts, max_length)
        lengths = np.fromiter(map(len, features["input_ids"]), dtype=np.int64, count=len(texts))
        # Longest first: similar lengths share a batch, and an out-of-memory error shows at once.
        order = np.argsort(-lengths, kind="stable")
        # Token budget: the first (longest) batch's padded size, at most MERGE_MAX_TOKENS.  A batch of
        # shorter texts takes more than ``batch_size`` rows while it stays within that budget, so
        # short texts run in fewer, fuller forward passes; no batch holds more tokens than the first.
        budget = min(batch_size * max(int(lengths[order[0]]), 1), MERGE_MAX_TOKENS)
        if show_progress is None:
            show_progress = len(texts) >= PROGRESS_MIN_TEXTS
        was_training = self.model.training
        self.model.eval()
        with tqdm(total=len(texts), desc="encode", unit="text", disable=not show_progress) as bar:
            start = 0
            while start < len(order):
                size = max(batch_size, budget // max(int(lengths[order[start]]), 1))
                rows = order[start : start + size]
                batch = self.collate(features, rows)
                if self.runtime is None:
                    emb = self(**batch)
                else:
                    emb = self._pool(self.runtime(**batch), batch["attention_mask"])
                out[rows] = emb.float().cpu().numpy()
                bar.update(len(rows))
                start += size
        self.model.train(was_training)
        return out

    @property
    def backend(self) -> str:
        return "torch" if self.runtime is None else "onnx"

    @property
    def encoding_dtype(self) -> str:
        """The dtype vectors are computed in: the torch weights', or the ONNX file's (float32, int8)."""
        return self.runtime_dtype or dtype_name(next(self.model.parameters()).dtype)

    def __repr__(self) -> str:
        return (
            f"Embedder({type(self.model).__name__}, dim={self.dim}, pooling={self.pooling}, "
            f"normalize={self.normalize}, backend={self.backend}, dtype={self.encoding_dtype}, "
            f"tasks={list(self.tasks)})"
        )


def _check_texts(texts: Any) -> None:
    if isinstance(texts, str):
        raise TypeError("expected a list of texts, not a single string (wrap it: [text])")
    if not (hasattr(texts, "__len__") and hasattr(texts, "__getitem__")) or isinstance(texts, Mapping):
        raise TypeError(f"expected a list of texts, got {type(texts).__name__}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__} ({text!r:.40}), expected a string")


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


def _read_saved_settings(path: str) -> dict[str, Any]:
    file = Path(path) / SETTINGS_FILE
    if not file.is_file():
        return {}
    return read_json(file, "model settings file")


def _st_pooling(path: str) -> str | None:
    """The pooling a sentence-transformers folder declares, mapped to our names."""
    config = Path(path) / "1_Pooling" / "config.json"
    if not config.is_file():
        return None
    data = read_json(config, "pooling settings file")
    for key, ours in (
        ("pooling_mode_cls_token", "cls"),
        ("pooling_mode_mean_tokens", "mean"),
        ("pooling_mode_lasttoken", "last"),
    ):
        if data.get(key):
            return ours
    return None


def _apply_tasks(table: TaskTable, tasks: Any) -> TaskTable:
    if tasks is None:
        return table
    if isinstance(tasks, TaskTable):
        return tasks
    if isinstance(tasks, Mapping):
        return table.updated(tasks)
    return TaskTable.from_yaml(tasks, base=table)
