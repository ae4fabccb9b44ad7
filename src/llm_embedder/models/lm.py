"""The one place causal LMs are loaded: a small wrapper that the reward scorer and evaluators share."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llm_embedder.models import zoo
from llm_embedder.models.loading import quiet_hf_loading, resolve_device, resolve_dtype


@dataclass
class CausalLM:
    """A causal LM with its tokenizer, ready for inference (eval mode, no gradients)."""

    model: Any
    tokenizer: Any
    name: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def context_window(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 2048))

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike | None = None,
        device: str = "auto",
        dtype: str | torch.dtype | None = None,
    ) -> CausalLM:
        """Load a zoo name (``smollm2-135m``), a local folder, a hub id, or a ``.gguf`` file."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        name = str(name_or_path or zoo.DEFAULT_LM)
        kwargs: dict[str, Any] = {}
        if name.endswith(".gguf") and Path(name).is_file():
            path, kwargs["gguf_file"] = str(Path(name).parent), Path(name).name
        else:
            path = zoo.locate(name)
        torch_device = resolve_device(device)
        with quiet_hf_loading():
            tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(dtype, torch_device), **kwargs)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.to(torch_device).eval().requires_grad_(False)
        return cls(model=model, tokenizer=tokenizer, name=name)
