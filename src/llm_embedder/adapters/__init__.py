"""Thin adapters for LLM frameworks (optional extras): LangChain ``Embeddings``, LlamaIndex ``BaseEmbedding``.

Each works in-process (an :class:`~llm_embedder.Embedder`) or against a running ``llm-embedder serve``.
"""
