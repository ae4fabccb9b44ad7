"""The task table: everything the library knows about each retrieval task, in one place.

A task has a query instruction and a key instruction (prefixed to the text before encoding),
default token budgets for queries and keys, a template that puts a candidate key in front of the
LLM when its reward is scored, and default training settings.  Six tasks ship with the library
(the ones LLM-Embedder was trained on); users add or override tasks from a dict or a YAML file.

Instruction strings and per-task training settings follow the released ``llm-embedder`` recipe
(Zhang et al., 2023, Table 10 and the per-task training overrides of the original code).
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_embedder.errors import InputError

DEFAULT_MAX_LENGTH = 256

LOSS_NAMES = ("contrastive", "kl_distill", "stable_distill")
POSITIVE_SELECTIONS = ("first", "random", "teacher")
NEGATIVE_SELECTIONS = ("random", "teacher")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class TrainingSettings:
    """How one task is trained: which candidates form a group and which loss sees them."""

    losses: Mapping[str, float] = field(default_factory=lambda: {"contrastive": 1.0})
    """Loss name -> weight.  Names: contrastive, kl_distill, stable_distill."""
    group_size: int = 8
    """Keys per query: one positive and ``group_size - 1`` negatives."""
    select_positive: str = "first"
    """``first`` labelled positive, a ``random`` one, or the ``teacher``'s best candidate."""
    select_negative: str = "random"
    """``random`` negatives, or the ``teacher``'s highest-scored ones."""
    teacher_temperature: float = 1.0
    student_temperature: float = 1.0
    teacher_scores_margin: float | None = None
    """Drop a query whose best and worst teacher scores differ by less than this."""
    teacher_scores_min: float | None = None
    """Drop a query whose best teacher score is below this."""
    max_samples: int | None = None
    """Keep at most this many queries of a dataset."""

    def __post_init__(self) -> None:
        # Types first: a temperature of "hot" must fail when the table is loaded, not at step 1.
        if not isinstance(self.losses, Mapping) or not all(_is_number(w) for w in self.losses.values()):
            raise ValueError(f"losses must map loss names to numbers, got {self.losses!r}")
        for name in ("teacher_temperature", "student_temperature", "teacher_scores_margin", "teacher_scores_min"):
            value = getattr(self, name)
            if not (_is_number(value) or (value is None and name.startswith("teacher_scores"))):
                raise ValueError(f"{name} must be a number, got {value!r}")
        for name in ("group_size", "max_samples"):
            value = getattr(self, name)
            is_int = isinstance(value, int) and not isinstance(value, bool)
            if not (is_int or (value is None and name == "max_samples")):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        for name in ("select_positive", "select_negative"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, got {getattr(self, name)!r}")
        if self.teacher_temperature <= 0 or self.student_temperature <= 0:
            raise ValueError("temperatures must be positive")
        unknown = set(self.losses) - set(LOSS_NAMES)
        if unknown:
            raise ValueError(f"unknown loss {sorted(unknown)}; known: {', '.join(LOSS_NAMES)}")
        if not self.losses or all(w <= 0 for w in self.losses.values()):
            raise ValueError("a task needs at least one loss with a positive weight")
        if self.select_positive not in POSITIVE_SELECTIONS:
            raise ValueError(f"select_positive={self.select_positive!r}; expected one of {POSITIVE_SELECTIONS}")
        if self.select_negative not in NEGATIVE_SELECTIONS:
            raise ValueError(f"select_negative={self.select_negative!r}; expected one of {NEGATIVE_SELECTIONS}")
        if self.group_size < 2:
            raise ValueError("group_size must be at least 2 (one positive and one negative)")
        object.__setattr__(self, "losses", dict(self.losses))

    @property
    def uses_teacher(self) -> bool:
        return any(name.endswith("distill") for name, w in self.losses.items() if w > 0)


@dataclass(frozen=True)
class Task:
    """One retrieval task: its instructions, token budgets, LLM template and training defaults."""

    name: str
    query_instruction: str = ""
    key_instruction: str = ""
    query_max_length: int = DEFAULT_MAX_LENGTH
    key_max_length: int = DEFAULT_MAX_LENGTH
    lm_template: str | None = None
    """Format string with ``{key}``, ``{query}`` and ``{answer}``: the text whose answer part the
    LLM scores.  ``None`` means the task has no LLM reward (tool retrieval, for instance)."""
    lm_strip: bool = True
    """Strip whitespace around the fields before filling the template (off for text chunks, whose
    edges are mid-text)."""
    training: TrainingSettings = field(default_factory=TrainingSettings)

    def __post_init__(self) -> None:
        for name in ("query_max_length", "key_max_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("query_instruction", "key_instruction"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string")
        if self.lm_template is not None:
            if not isinstance(self.lm_template, str):
                raise ValueError(f"lm_template must be a string, got {self.lm_template!r}")
            try:
                fields = [f for _, f, _, _ in string.Formatter().parse(self.lm_template) if f is not None]
            except ValueError as exc:
                raise ValueError(f"lm_template {self.lm_template!r}: {exc}") from None
            if not all(f.isidentifier() for f in fields):
                raise ValueError(f"lm_template {self.lm_template!r}: fields are names such as {{key}} and {{answer}}")
        if isinstance(self.training, Mapping):
            object.__setattr__(self, "training", TrainingSettings(**self.training))

    def query_text(self, text: str) -> str:
        return self.query_instruction + text

    def key_text(self, text: str) -> str:
        return self.key_instruction + text

    def without_instructions(self) -> Task:
        return dataclasses.replace(self, query_instruction="", key_instruction="")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Templates of the original LLM scorer, written as format strings.  lrlm works on text chunks: its
# template concatenates the candidate chunk, the running context, the current chunk and the next one.
_KNOWLEDGE_TEMPLATE = "Knowledge: {key}\n\nQuestion: {query}\n\nAnswer: {answer}"

_BUILTIN = {
    "qa": Task(
        "qa",
        "Represent this query for retrieving relevant documents: ",
        "Represent this document for retrieval: ",
        lm_template=_KNOWLEDGE_TEMPLATE,
        training=TrainingSettings(losses={"stable_distill": 1.0}),
    ),
    "icl": Task(
        "icl",
        "Convert this example into vector to look for useful examples: ",
        "Convert this example into vector for retrieval: ",
        lm_template="{key}\n{query}\n{answer}",
        training=TrainingSettings(losses={"stable_distill": 1.0}, select_positive="random"),
    ),
    "chat": Task(
        "chat",
        "Embed this dialogue to find useful historical dialogues: ",
        "Embed this historical dialogue for retrieval: ",
        lm_template="{key}\nSpeaker 1: {query}\nSpeaker 2: {answer}",
        training=TrainingSettings(losses={"kl_distill": 1.0}, select_positive="teacher", teacher_temperature=0.1),
    ),
    "lrlm": Task(
        "lrlm",
        "Embed this text chunk for finding useful historical chunks: ",
        "Embed this historical text chunk for retrieval: ",
        lm_template="{key}{context}{query}{answer}",
        lm_strip=False,
        training=TrainingSettings(
            losses={"kl_distill": 1.0},
            select_positive="teacher",
            teacher_temperature=0.1,
            teacher_scores_margin=0.1,
            max_samples=10000,
        ),
    ),
    "tool": Task(
        "tool",
        "Transform this user request for fetching helpful tool descriptions: ",
        "Transform this tool description for retrieval: ",
        training=TrainingSettings(losses={"contrastive": 1.0}),
    ),
    "convsearch": Task(
        "convsearch",
        "Encode this query and context for searching relevant passages: ",
        "Encode this passage for retrieval: ",
        lm_template=_KNOWLEDGE_TEMPLATE,
        training=TrainingSettings(losses={"contrastive": 1.0}),
    ),
}

# Instruction sets of other embedders, for baselines: name -> (query, key) used for every task.
# "llm-embedder" keeps each task's own strings; "none" switches instructions off.
UNIFORM_INSTRUCTIONS = {
    "bge": ("Represent this sentence for searching relevant passages: ", ""),
    "e5": ("query: ", "passage: "),
}
INSTRUCTION_SETS = ("llm-embedder", "none", *UNIFORM_INSTRUCTIONS)


class TaskTable(Mapping[str, Task]):
    """An immutable mapping from task name to :class:`Task`."""

    def __init__(self, tasks: Mapping[str, Task] | None = None):
        self._tasks = dict(_BUILTIN if tasks is None else tasks)

    def __getitem__(self, name: str) -> Task:
        try:
            return self._tasks[name]
        except KeyError:
            raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(self._tasks)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def __repr__(self) -> str:
        return f"TaskTable({', '.join(self._tasks)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskTable) and self._tasks == other._tasks

    def get_task(self, name: str) -> Task:
        """Like ``table[name]`` but raises ``ValueError`` (a user error) for an unknown name."""
        if name not in self._tasks:
            raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(self._tasks)}")
        return self._tasks[name]

    def with_instructions(self, instruction_set: str) -> TaskTable:
        """The same tasks with another instruction set (see ``INSTRUCTION_SETS``)."""
        if instruction_set == "llm-embedder":
            return TaskTable(
                {
                    n: dataclasses.replace(
                        t,
                        query_instruction=_BUILTIN[n].query_instruction,
                        key_instruction=_BUILTIN[n].key_instruction,
                    )
                    if n in _BUILTIN
                    else t
                    for n, t in self._tasks.items()
                }
            )
        if instruction_set == "none":
            return TaskTable({n: t.without_instructions() for n, t in self._tasks.items()})
        if instruction_set in UNIFORM_INSTRUCTIONS:
            q, k = UNIFORM_INSTRUCTIONS[instruction_set]
            return TaskTable(
                {n: dataclasses.replace(t, query_instruction=q, key_instruction=k) for n, t in self._tasks.items()}
            )
        raise ValueError(f"unknown instruction set {instruction_set!r}; known: {', '.join(INSTRUCTION_SETS)}")

    def updated(self, overrides: Mapping[str, Mapping[str, Any]], source: str = "<dict>") -> TaskTable:
        """A new table with tasks added or overridden.

        ``overrides`` maps a task name to fields of :class:`Task`; ``training`` is itself a dict of
        :class:`TrainingSettings` fields.  Fields not given keep the existing task's value (or the
        defaults for a new task).
        """
        tasks = dict(self._tasks)
        for name, fields in overrides.items():
            if not isinstance(fields, Mapping):
                raise InputError(source, None, name, "expected a mapping of task fields")
            base = tasks.get(name, Task(name))
            fields = dict(fields)
            unknown = set(fields) - {f.name for f in dataclasses.fields(Task)} - {"name"}
            if unknown:
                raise InputError(source, None, f"{name}.{sorted(unknown)[0]}", "unknown task field")
            training = fields.pop("training", None)
            try:
                if training is not None:
                    fields["training"] = dataclasses.replace(base.training, **training)
                tasks[name] = dataclasses.replace(base, **{**fields, "name": name})
            except (TypeError, ValueError) as exc:
                raise InputError(source, None, name, str(exc)) from None
            _check_template(tasks[name], source)
        return TaskTable(tasks)

    @classmethod
    def from_yaml(cls, path: str | Path, base: TaskTable | None = None) -> TaskTable:
        """Load task overrides from a YAML file shaped ``{tasks: {name: {field: value}}}``
        (or the task mapping at top level)."""
        from llm_embedder.fileio import read_yaml

        path = Path(path)
        data = read_yaml(path, "tasks file") or {}
        if not isinstance(data, Mapping):
            raise InputError(path, None, None, "expected a mapping of tasks")
        tasks = data.get("tasks", data) if "tasks" in data else data
        if tasks is None:
            tasks = {}
        if not isinstance(tasks, Mapping):
            raise InputError(path, None, "tasks", "expected a mapping of task names to fields")
        return (base or cls()).updated(tasks, source=str(path))

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {n: {k: v for k, v in t.to_dict().items() if k != "name"} for n, t in self._tasks.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Any]]) -> TaskTable:
        """Rebuild a table saved with :meth:`to_dict` (no built-in tasks are implied)."""
        return cls({}).updated(data, source="<saved task table>")


def _check_template(task: Task, source: str) -> None:
    if task.lm_template is None:
        return
    fields = {f for _, f, _, _ in string.Formatter().parse(task.lm_template) if f}
    if not {"key", "answer"} <= fields:
        raise InputError(
            source, None, f"{task.name}.lm_template", f"must contain {{key}} and {{answer}}, has {sorted(fields)}"
        )


DEFAULT_TASKS = TaskTable()
