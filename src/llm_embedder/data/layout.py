"""The data folder the pipeline's stages read, whoever made it (the demo builder or ``adapt``).

train/<task>.json           training queries (released format)
corpus-train/<task>.jsonl   the corpus negatives are mined from: no dev, test or ood key is in it
dev/, eval/                 evaluation folders in the layout ``llm-embedder eval --data`` reads
ood-dev/, ood-test/         out of domain, the same layout: ood-dev for choices, ood-test reported once
"""

TRAIN_DIR = "train"
TRAIN_CORPUS_DIR = "corpus-train"
"""What negatives are mined from and the LLM scores for training: no key labelled relevant for a dev,
test or ood query, so that no held-out answer is trained on as a negative (or, through the rewards, as
a positive)."""


def train_corpus_path(task: str) -> str:
    return f"{TRAIN_CORPUS_DIR}/{task}.jsonl"


KEY_TEMPLATES = {"qa": "{title} {text}", "icl": "{contents}", "tool": "{text}", "convsearch": "{text}"}
"""How each task's corpus row becomes text (the evaluators read the same files the same way)."""


def key_template(task: str) -> str:
    """The key template of ``task``'s corpus rows (``{text}`` for a task not listed)."""
    return KEY_TEMPLATES.get(task, "{text}")
