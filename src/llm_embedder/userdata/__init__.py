"""A user's own files (corpus, tools, chats, long documents, examples) made into training and dev data.

Above ``models`` and ``retrieval`` (the LLM writes queries, BM25 filters them), below ``pipeline``
and ``adapt``, which run the stages after this one.
"""
