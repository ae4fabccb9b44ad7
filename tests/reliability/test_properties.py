"""Property tests (hypothesis): random bytes, random JSON values and random field types given to the
JSON-lines readers, the task-file loader and the recipe loader end in a result or in one clear
:class:`ValueError` (``InputError`` names the file) -- never in another exception, never in a partial output."""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_embedder.cli import main as cli_main
from llm_embedder.errors import InputError
from llm_embedder.fileio import iter_jsonl
from llm_embedder.retrieval.corpus import Corpus
from llm_embedder.tasks import TaskTable
from llm_embedder.training.config import TrainConfig

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def _file(data: bytes, suffix: str = ".jsonl") -> Path:
    fd, name = tempfile.mkstemp(suffix=suffix)
    with open(fd, "wb") as handle:
        handle.write(data)
    return Path(name)


@FAST
@given(st.binary(max_size=200))
def test_jsonl_reader_on_random_bytes(data):
    path = _file(data)
    try:
        for line, record in iter_jsonl(path):
            assert isinstance(record, dict) and line >= 1
    except InputError as exc:
        assert exc.path == str(path) and str(exc).startswith(str(path))
    finally:
        path.unlink()


@FAST
@given(st.lists(st.dictionaries(st.sampled_from(["title", "text", "id"]), json_values, max_size=3), max_size=4))
def test_corpus_reader_on_random_field_types(rows):
    path = _file("".join(json.dumps(r) + "\n" for r in rows).encode())
    try:
        corpus = Corpus.from_jsonl(path, key_template="{title} {text}", id_field="id")
        assert all(isinstance(t, str) for t in corpus.texts) and len(set(corpus.ids)) == len(corpus.ids)
    except InputError as exc:
        assert exc.path == str(path)
    finally:
        path.unlink()


task_fields = st.sampled_from(
    ["query_instruction", "key_instruction", "query_max_length", "lm_template", "lm_strip", "training", "nonsense"]
)
training_fields = st.sampled_from(["group_size", "teacher_temperature", "losses", "select_positive", "max_samples"])


@FAST
@given(
    st.dictionaries(
        st.sampled_from(["qa", "icl", "mine"]),
        st.dictionaries(
            task_fields, json_values | st.dictionaries(training_fields, json_values, max_size=2), max_size=3
        ),
        max_size=2,
    )
)
def test_task_file_loader_on_random_values(tasks):
    path = _file(yaml.safe_dump({"tasks": tasks}).encode(), ".yaml")
    try:
        table = TaskTable.from_yaml(path)
        for task in table.values():
            assert isinstance(task.query_instruction, str) and task.query_max_length >= 1
            assert isinstance(task.training.teacher_temperature, int | float)
    except ValueError:
        pass  # InputError or a ValueError with the setting's name: both are one line in the CLI
    finally:
        path.unlink()


@FAST
@given(st.binary(max_size=120))
def test_yaml_loaders_on_random_bytes(data):
    path = _file(data, ".yaml")
    try:
        for load in (TaskTable.from_yaml, TrainConfig.from_yaml):
            with contextlib.suppress(ValueError):
                load(path)
    finally:
        path.unlink()


recipe_keys = st.sampled_from(
    ["model", "datasets", "data_root", "max_steps", "batch_size", "learning_rate", "techniques", "tasks", "seed"]
)


@FAST
@given(st.dictionaries(recipe_keys, json_values, max_size=4))
def test_recipe_loader_on_random_values(recipe):
    path = _file(yaml.safe_dump(recipe).encode(), ".yaml")
    try:
        config = TrainConfig.from_yaml(path)
        assert isinstance(config.max_steps, int) and isinstance(config.learning_rate, float)
    except ValueError:
        pass
    finally:
        path.unlink()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=160))
def test_index_build_on_random_bytes_writes_all_or_nothing(data):
    with tempfile.TemporaryDirectory() as tmp:
        corpus, out = _file(data), Path(tmp) / "index"
        try:
            code = cli_main(["-q", "index", "build", "--method", "bm25", "--corpus", str(corpus), "--out", str(out)])
        finally:
            corpus.unlink()
        assert code in (0, 2)
        if code == 2:
            assert not out.exists()  # no half-built index
        else:
            assert (out / "CURRENT").is_file()
