"""llm-embedder: one embedding model for every retrieval need of a large language model."""

from llm_embedder.errors import InputError
from llm_embedder.models.embedder import Embedder
from llm_embedder.models.lm import CausalLM
from llm_embedder.retrieval.corpus import Corpus
from llm_embedder.retrieval.searcher import Hit, Searcher
from llm_embedder.tasks import DEFAULT_TASKS, Task, TaskTable, TrainingSettings
from llm_embedder.version import __version__

__all__ = [
    "DEFAULT_TASKS",
    "CausalLM",
    "Corpus",
    "Embedder",
    "Hit",
    "InputError",
    "Searcher",
    "Task",
    "TaskTable",
    "TrainingSettings",
    "__version__",
]
