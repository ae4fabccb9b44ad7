"""Serving: embeddings per task and collections for the six needs, over HTTP or in-process.

Serving sits on top of the library: it imports ``models``, ``retrieval`` and ``tasks``; nothing below
imports it.  :mod:`~llm_embedder.serving.engine` owns the model, :mod:`~llm_embedder.serving.collections`
holds the collections, :mod:`~llm_embedder.serving.stores` their storage, and
:mod:`~llm_embedder.serving.app` the HTTP routes (``llm-embedder serve``).
"""
