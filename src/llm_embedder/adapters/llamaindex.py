"""LlamaIndex ``BaseEmbedding``: query embeddings on the task's query side, text embeddings on its key side.

from llm_embedder.adapters.llamaindex import LLMEmbedderEmbedding
emb = LLMEmbedderEmbedding(task="qa", embedder=Embedder.from_pretrained("minilm"))   # in-process
emb = LLMEmbedderEmbedding(task="qa", base_url="http://127.0.0.1:8000")             # a server
"""

from __future__ import annotations

import asyncio
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

from llm_embedder.adapters.backends import backend


class LLMEmbedderEmbedding(BaseEmbedding):
    task: str = "qa"
    _backend: Any = PrivateAttr()

    def __init__(
        self,
        task: str = "qa",
        *,
        embedder: Any = None,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str = "llm-embedder",
        **kwargs: Any,
    ):
        super().__init__(task=task, model_name=model, **kwargs)
        self._backend = backend(embedder, base_url, api_key, model)

    @classmethod
    def class_name(cls) -> str:
        return "LLMEmbedderEmbedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._backend.embed([query], self.task, "query")[0].tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._backend.embed([text], self.task, "key")[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._backend.embed(texts, self.task, "key").tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await asyncio.to_thread(self._get_text_embedding, text)
