"""LangChain ``Embeddings``: ``embed_query`` embeds on the task's query side, ``embed_documents`` on its key side.

from llm_embedder.adapters.langchain import LLMEmbedderEmbeddings
emb = LLMEmbedderEmbeddings(task="qa", embedder=Embedder.from_pretrained("minilm"))   # in-process
emb = LLMEmbedderEmbeddings(task="chat", base_url="http://127.0.0.1:8000")            # a server
"""

from __future__ import annotations

from typing import Any

from langchain_core.embeddings import Embeddings

from llm_embedder.adapters.backends import backend


class LLMEmbedderEmbeddings(Embeddings):
    def __init__(
        self,
        task: str = "qa",
        *,
        embedder: Any = None,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str = "llm-embedder",
    ):
        self.task = task
        self.backend = backend(embedder, base_url, api_key, model)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.backend.embed(texts, self.task, "key").tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.backend.embed([text], self.task, "query")[0].tolist()
