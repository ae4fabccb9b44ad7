"""The LangChain and LlamaIndex adapters, with the real packages, in-process and against a live server."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from serving_helpers import API_KEY, TEXTS, min_cosine, reference


@pytest.fixture(params=["in-process", "server"])
def source(request, tiny_embedder):
    if request.param == "in-process":
        return {"embedder": tiny_embedder}
    server = request.getfixturevalue("server")
    return {"base_url": server.url, "api_key": API_KEY}


def test_langchain_embeddings(source, tiny_embedder):
    pytest.importorskip("langchain_core")
    from langchain_core.embeddings import Embeddings

    from llm_embedder.adapters.langchain import LLMEmbedderEmbeddings

    emb = LLMEmbedderEmbeddings(task="chat", **source)
    assert isinstance(emb, Embeddings)
    docs = np.array(emb.embed_documents(TEXTS))
    query = np.array([emb.embed_query("what about cats")])
    assert min_cosine(docs, reference(tiny_embedder, TEXTS, "chat", "key")) >= 1 - 1e-6
    assert min_cosine(query, reference(tiny_embedder, ["what about cats"], "chat", "query")) >= 1 - 1e-6
    async_query = np.array([asyncio.run(emb.aembed_query("what about cats"))])
    assert min_cosine(async_query, query) >= 1 - 1e-6


def test_llamaindex_embedding(source, tiny_embedder):
    pytest.importorskip("llama_index.core")
    from llama_index.core.base.embeddings.base import BaseEmbedding

    from llm_embedder.adapters.llamaindex import LLMEmbedderEmbedding

    emb = LLMEmbedderEmbedding(task="tool", **source)
    assert isinstance(emb, BaseEmbedding)
    texts = np.array(emb.get_text_embedding_batch(TEXTS))
    query = np.array([emb.get_query_embedding("weather in paris")])
    assert min_cosine(texts, reference(tiny_embedder, TEXTS, "tool", "key")) >= 1 - 1e-6
    assert min_cosine(query, reference(tiny_embedder, ["weather in paris"], "tool", "query")) >= 1 - 1e-6
    async_query = np.array([asyncio.run(emb.aget_query_embedding("weather in paris"))])
    assert min_cosine(async_query, query) >= 1 - 1e-6


def test_adapters_need_one_source(tiny_embedder):
    from llm_embedder.adapters.backends import backend

    with pytest.raises(ValueError, match="either an embedder"):
        backend(tiny_embedder, "http://127.0.0.1:1")
    with pytest.raises(ValueError, match="either an embedder"):
        backend()
