"""A user's own files (corpus, tools, chats, long documents, examples) made into training and dev data."""
