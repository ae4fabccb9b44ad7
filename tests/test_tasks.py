"""The task table: released instructions, budgets, training defaults, overrides and their errors."""

from __future__ import annotations

import pytest

from llm_embedder.errors import InputError
from llm_embedder.tasks import (
    DEFAULT_MAX_LENGTH,
    DEFAULT_TASKS,
    INSTRUCTION_SETS,
    Task,
    TaskTable,
    TrainingSettings,
)

# Reference §1.3, version "llm-embedder" (README and paper Table 10): task -> (query prefix, key prefix).
RELEASED_INSTRUCTIONS = {
    "qa": (
        "Represent this query for retrieving relevant documents: ",
        "Represent this document for retrieval: ",
    ),
    "convsearch": (
        "Encode this query and context for searching relevant passages: ",
        "Encode this passage for retrieval: ",
    ),
    "chat": (
        "Embed this dialogue to find useful historical dialogues: ",
        "Embed this historical dialogue for retrieval: ",
    ),
    "lrlm": (
        "Embed this text chunk for finding useful historical chunks: ",
        "Embed this historical text chunk for retrieval: ",
    ),
    "icl": (
        "Convert this example into vector to look for useful examples: ",
        "Convert this example into vector for retrieval: ",
    ),
    "tool": (
        "Transform this user request for fetching helpful tool descriptions: ",
        "Transform this tool description for retrieval: ",
    ),
}
BGE_QUERY = "Represent this sentence for searching relevant passages: "


# ----------------------------------------------------------------------------- built-in table
def test_six_builtin_tasks():
    assert set(DEFAULT_TASKS) == set(RELEASED_INSTRUCTIONS)
    assert len(DEFAULT_TASKS) == 6
    for name, task in DEFAULT_TASKS.items():
        assert isinstance(task, Task)
        assert task.name == name


@pytest.mark.parametrize("name", sorted(RELEASED_INSTRUCTIONS))
def test_released_instruction_strings_exact(name):
    query, key = RELEASED_INSTRUCTIONS[name]
    task = DEFAULT_TASKS[name]
    assert task.query_instruction == query
    assert task.key_instruction == key
    # plain concatenation, the trailing space inside the prefix is the only separator
    assert task.query_text("what is x?") == query + "what is x?"
    assert task.key_text("x is y.") == key + "x is y."


@pytest.mark.parametrize("name", sorted(RELEASED_INSTRUCTIONS))
def test_max_lengths_256(name):
    assert DEFAULT_MAX_LENGTH == 256
    assert DEFAULT_TASKS[name].query_max_length == 256
    assert DEFAULT_TASKS[name].key_max_length == 256


def test_training_defaults_follow_the_recipe():
    """Reference §2.3 / §3.4: the loss each task is actually trained with."""
    tr = {name: DEFAULT_TASKS[name].training for name in DEFAULT_TASKS}

    for name in ("qa", "icl"):
        assert set(tr[name].losses) == {"stable_distill"}, name
        assert tr[name].uses_teacher
    assert tr["qa"].select_positive == "first"
    assert tr["icl"].select_positive == "random"

    for name in ("chat", "lrlm"):
        assert set(tr[name].losses) == {"kl_distill"}, name
        assert tr[name].teacher_temperature == pytest.approx(0.1)
        assert tr[name].select_positive == "teacher"
        assert tr[name].uses_teacher
    assert tr["lrlm"].teacher_scores_margin == pytest.approx(0.1)
    assert tr["lrlm"].max_samples == 10000
    assert tr["chat"].teacher_scores_margin is None
    assert tr["chat"].max_samples is None

    for name in ("tool", "convsearch"):
        assert set(tr[name].losses) == {"contrastive"}, name
        assert not tr[name].uses_teacher
        assert tr[name].select_positive == "first"

    for name, settings in tr.items():
        assert settings.select_negative == "random", name
        assert settings.student_temperature == 1.0, name
        assert settings.group_size == 8, name
        assert settings.teacher_scores_min is None, name
        assert all(w > 0 for w in settings.losses.values()), name
    for name in ("qa", "icl", "tool", "convsearch"):
        assert tr[name].teacher_temperature == 1.0, name


def test_lm_templates():
    for name in ("qa", "convsearch", "icl", "chat"):
        template = DEFAULT_TASKS[name].lm_template
        assert template is not None, name
        assert "{key}" in template and "{answer}" in template and "{query}" in template, name
    assert DEFAULT_TASKS["tool"].lm_template is None
    filled = DEFAULT_TASKS["qa"].lm_template.format(key="K", query="Q", answer="A")
    assert filled == "Knowledge: K\n\nQuestion: Q\n\nAnswer: A"
    assert DEFAULT_TASKS["convsearch"].lm_template == DEFAULT_TASKS["qa"].lm_template
    chat = DEFAULT_TASKS["chat"].lm_template.format(key="K", query="Q", answer="A")
    assert chat == "K\nSpeaker 1: Q\nSpeaker 2: A"
    assert DEFAULT_TASKS["icl"].lm_template.format(key="K", query="Q", answer="A") == "K\nQ\nA"


def test_training_settings_validation():
    with pytest.raises(ValueError, match="unknown loss"):
        TrainingSettings(losses={"triplet": 1.0})
    with pytest.raises(ValueError, match="positive weight"):
        TrainingSettings(losses={"contrastive": 0.0})
    with pytest.raises(ValueError, match="select_positive"):
        TrainingSettings(select_positive="best")
    with pytest.raises(ValueError, match="select_negative"):
        TrainingSettings(select_negative="hard")
    with pytest.raises(ValueError, match="group_size"):
        TrainingSettings(group_size=1)


# ----------------------------------------------------------------------------- lookups
def test_unknown_task_lists_known_tasks():
    with pytest.raises(ValueError) as err:
        DEFAULT_TASKS.get_task("summarise")
    for name in RELEASED_INSTRUCTIONS:
        assert name in str(err.value)
    assert "summarise" in str(err.value)
    with pytest.raises(KeyError, match="known tasks: .*qa"):
        DEFAULT_TASKS["summarise"]
    assert DEFAULT_TASKS.get_task("tool") is DEFAULT_TASKS["tool"]


# ----------------------------------------------------------------------------- instruction sets
def test_instruction_sets():
    assert set(INSTRUCTION_SETS) == {"llm-embedder", "none", "bge", "e5"}

    none = DEFAULT_TASKS.with_instructions("none")
    assert set(none) == set(DEFAULT_TASKS)
    for name, task in none.items():
        assert task.query_instruction == "" and task.key_instruction == "", name
        # only the instructions change
        assert task.training == DEFAULT_TASKS[name].training
        assert task.lm_template == DEFAULT_TASKS[name].lm_template

    for name, task in DEFAULT_TASKS.with_instructions("bge").items():
        assert (task.query_instruction, task.key_instruction) == (BGE_QUERY, ""), name
    for name, task in DEFAULT_TASKS.with_instructions("e5").items():
        assert (task.query_instruction, task.key_instruction) == ("query: ", "passage: "), name

    # back to the released strings from any other set
    restored = DEFAULT_TASKS.with_instructions("none").with_instructions("llm-embedder")
    assert restored == DEFAULT_TASKS

    with pytest.raises(ValueError, match="unknown instruction set"):
        DEFAULT_TASKS.with_instructions("instructor-xl")


def test_llm_embedder_instructions_keep_user_task_strings():
    table = DEFAULT_TASKS.updated({"mine": {"query_instruction": "Q: ", "key_instruction": "K: "}})
    again = table.with_instructions("llm-embedder")
    assert again["mine"].query_instruction == "Q: "
    assert again["mine"].key_instruction == "K: "
    assert table.with_instructions("none")["mine"].query_instruction == ""
    assert table.with_instructions("e5")["mine"].key_instruction == "passage: "


# ----------------------------------------------------------------------------- overrides
def test_override_one_field_keeps_the_rest():
    table = DEFAULT_TASKS.updated({"qa": {"key_max_length": 128}})
    qa = table["qa"]
    assert qa.key_max_length == 128
    assert qa.query_max_length == 256
    assert qa.query_instruction == RELEASED_INSTRUCTIONS["qa"][0]
    assert qa.key_instruction == RELEASED_INSTRUCTIONS["qa"][1]
    assert qa.training == DEFAULT_TASKS["qa"].training
    assert qa.lm_template == DEFAULT_TASKS["qa"].lm_template
    # other tasks and the original table are untouched
    assert table["tool"] == DEFAULT_TASKS["tool"]
    assert DEFAULT_TASKS["qa"].key_max_length == 256


def test_override_one_training_field_keeps_the_rest():
    table = DEFAULT_TASKS.updated({"lrlm": {"training": {"teacher_temperature": 0.5}}})
    lrlm = table["lrlm"].training
    assert lrlm.teacher_temperature == 0.5
    assert lrlm.losses == {"kl_distill": 1.0}
    assert lrlm.teacher_scores_margin == pytest.approx(0.1)
    assert lrlm.max_samples == 10000
    assert lrlm.select_positive == "teacher"


def test_new_task_from_dict_gets_defaults():
    table = DEFAULT_TASKS.updated(
        {
            "legal": {
                "query_instruction": "Find the statute for: ",
                "key_instruction": "Statute: ",
                "training": {"losses": {"contrastive": 1.0, "kl_distill": 0.5}},
            }
        }
    )
    legal = table.get_task("legal")
    assert legal.name == "legal"
    assert legal.query_text("theft") == "Find the statute for: theft"
    assert legal.query_max_length == DEFAULT_MAX_LENGTH
    assert legal.lm_template is None
    assert legal.training.losses == {"contrastive": 1.0, "kl_distill": 0.5}
    assert legal.training.group_size == 8
    assert list(table)[:6] == list(DEFAULT_TASKS)  # built-ins stay, new task appended


def test_new_task_from_yaml_in_german(tmp_path):
    file = tmp_path / "tasks.yaml"
    file.write_text(
        "tasks:\n"
        "  recht:\n"
        '    query_instruction: "Finde die passenden Gesetzestexte für diese Frage: "\n'
        '    key_instruction: "Gesetzestext für die Suche: "\n'
        "    query_max_length: 64\n"
        '    lm_template: "Wissen: {key}\\nFrage: {query}\\nAntwort: {answer}"\n'
        "    training:\n"
        "      losses: {kl_distill: 1.0}\n"
        "      teacher_temperature: 0.2\n"
        "  qa:\n"
        "    key_max_length: 128\n",
        encoding="utf-8",
    )
    table = TaskTable.from_yaml(file)
    recht = table["recht"]
    assert recht.query_instruction == "Finde die passenden Gesetzestexte für diese Frage: "
    assert recht.key_instruction == "Gesetzestext für die Suche: "
    assert recht.query_max_length == 64
    assert recht.key_max_length == 256
    assert recht.lm_template.format(key="§1", query="?", answer="!") == "Wissen: §1\nFrage: ?\nAntwort: !"
    assert recht.training.losses == {"kl_distill": 1.0}
    assert recht.training.teacher_temperature == 0.2
    # override of one field of a built-in task keeps the rest
    assert table["qa"].key_max_length == 128
    assert table["qa"].query_instruction == RELEASED_INSTRUCTIONS["qa"][0]
    assert table["chat"] == DEFAULT_TASKS["chat"]


def test_yaml_task_mapping_at_top_level(tmp_path):
    file = tmp_path / "tasks.yaml"
    file.write_text("tool:\n  query_instruction: 'Which API: '\n", encoding="utf-8")
    table = TaskTable.from_yaml(file)
    assert table["tool"].query_instruction == "Which API: "
    assert table["tool"].key_instruction == RELEASED_INSTRUCTIONS["tool"][1]


def test_yaml_applies_on_top_of_a_base_table(tmp_path):
    file = tmp_path / "tasks.yaml"
    file.write_text("qa:\n  query_max_length: 32\n", encoding="utf-8")
    base = DEFAULT_TASKS.with_instructions("none")
    table = TaskTable.from_yaml(file, base=base)
    assert table["qa"].query_max_length == 32
    assert table["qa"].query_instruction == ""


def test_empty_yaml_changes_nothing(tmp_path):
    file = tmp_path / "tasks.yaml"
    file.write_text("", encoding="utf-8")
    assert TaskTable.from_yaml(file) == DEFAULT_TASKS


# ----------------------------------------------------------------------------- override errors
def test_unknown_field_in_yaml_names_file_task_and_field(tmp_path):
    file = tmp_path / "tasks.yaml"
    file.write_text("qa:\n  query_instruciton: 'typo: '\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        TaskTable.from_yaml(file)
    message = str(err.value)
    assert str(file) in message
    assert "qa" in message and "query_instruciton" in message
    assert err.value.path == str(file)


def test_unknown_training_field_is_an_input_error(tmp_path):
    file = tmp_path / "tasks.yaml"
    file.write_text("qa:\n  training:\n    temperature: 0.1\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        TaskTable.from_yaml(file)
    assert str(file) in str(err.value)
    assert "temperature" in str(err.value)


def test_invalid_training_value_is_an_input_error(tmp_path):
    file = tmp_path / "tasks.yaml"
    file.write_text("chat:\n  training:\n    losses: {listwise: 1.0}\n", encoding="utf-8")
    with pytest.raises(InputError, match="unknown loss") as err:
        TaskTable.from_yaml(file)
    assert str(file) in str(err.value)


def test_bad_yaml_names_file_and_line(tmp_path):
    file = tmp_path / "tasks.yaml"
    file.write_text("qa:\n  query_instruction: 'x'\n   key_instruction: y\n", encoding="utf-8")
    with pytest.raises(InputError, match="invalid YAML") as err:
        TaskTable.from_yaml(file)
    assert str(file) in str(err.value)
    assert err.value.line == 3


def test_missing_yaml_file(tmp_path):
    file = tmp_path / "nope.yaml"
    with pytest.raises(InputError, match="not found") as err:
        TaskTable.from_yaml(file)
    assert str(file) in str(err.value)


def test_yaml_that_is_not_a_mapping(tmp_path):
    file = tmp_path / "tasks.yaml"
    file.write_text("- qa\n- tool\n", encoding="utf-8")
    with pytest.raises(InputError, match="mapping") as err:
        TaskTable.from_yaml(file)
    assert str(file) in str(err.value)


def test_task_entry_that_is_not_a_mapping(tmp_path):
    file = tmp_path / "tasks.yaml"
    file.write_text("qa: 3\n", encoding="utf-8")
    with pytest.raises(InputError, match="mapping") as err:
        TaskTable.from_yaml(file)
    assert str(file) in str(err.value)


def test_tasks_key_that_is_a_list(tmp_path):
    """``tasks:`` holding a list is a user error naming the file, not an AttributeError."""
    file = tmp_path / "tasks.yaml"
    file.write_text("tasks: [qa, tool]\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        TaskTable.from_yaml(file)
    assert str(file) in str(err.value)


def test_empty_tasks_key_changes_nothing(tmp_path):
    """``tasks:`` with nothing under it is an empty override, like an empty file."""
    file = tmp_path / "tasks.yaml"
    file.write_text("tasks:\n", encoding="utf-8")
    assert TaskTable.from_yaml(file) == DEFAULT_TASKS


def test_yaml_path_that_is_a_directory(tmp_path):
    with pytest.raises(InputError) as err:
        TaskTable.from_yaml(tmp_path)
    assert str(tmp_path) in str(err.value)


@pytest.mark.parametrize("value", ["'long'", "0", "-5"])
def test_invalid_max_length_is_an_input_error(tmp_path, value):
    """A token budget must be a positive integer; a bad one must fail at load, not deep inside encode."""
    file = tmp_path / "tasks.yaml"
    file.write_text(f"qa:\n  query_max_length: {value}\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        TaskTable.from_yaml(file)
    assert str(file) in str(err.value)
    assert "query_max_length" in str(err.value) or "qa" in str(err.value)


def test_lm_template_without_key_or_answer_is_rejected():
    with pytest.raises(InputError, match="lm_template"):
        DEFAULT_TASKS.updated({"qa": {"lm_template": "Question: {query}\nAnswer:"}})
    with pytest.raises(InputError, match="lm_template"):
        DEFAULT_TASKS.updated({"new": {"lm_template": "{key} {query}"}})


def test_dict_override_errors_name_the_source():
    with pytest.raises(InputError) as err:
        DEFAULT_TASKS.updated({"qa": {"bogus": 1}}, source="my-config.yaml")
    assert "my-config.yaml" in str(err.value)
    assert "bogus" in str(err.value)


# ----------------------------------------------------------------------------- serialisation
def test_to_dict_from_dict_round_trip():
    table = DEFAULT_TASKS.updated(
        {
            "legal": {"query_instruction": "Q: ", "key_instruction": "K: ", "key_max_length": 512},
            "lrlm": {"training": {"teacher_scores_min": -3.5}},
        }
    )
    data = table.to_dict()
    assert set(data) == set(table)
    assert "name" not in data["qa"]
    assert data["qa"]["query_instruction"] == RELEASED_INSTRUCTIONS["qa"][0]
    assert data["chat"]["training"]["teacher_temperature"] == 0.1
    assert data["lrlm"]["training"]["teacher_scores_min"] == -3.5
    rebuilt = TaskTable.from_dict(data)
    assert rebuilt == table
    assert list(rebuilt) == list(table)
    assert rebuilt["legal"].key_max_length == 512


def test_to_dict_is_json_and_yaml_serialisable():
    import json

    import yaml

    data = DEFAULT_TASKS.to_dict()
    assert TaskTable.from_dict(json.loads(json.dumps(data))) == DEFAULT_TASKS
    assert TaskTable.from_dict(yaml.safe_load(yaml.safe_dump(data))) == DEFAULT_TASKS


def test_from_dict_implies_no_builtin_tasks():
    table = TaskTable.from_dict({"only": {"query_instruction": "x"}})
    assert list(table) == ["only"]
    assert table != DEFAULT_TASKS


def test_table_is_immutable_mapping():
    with pytest.raises(TypeError):
        DEFAULT_TASKS["qa"] = Task("qa")  # type: ignore[index]
    with pytest.raises(AttributeError):
        DEFAULT_TASKS["qa"].query_instruction = "x"  # type: ignore[misc]
    assert "TaskTable(qa" in repr(DEFAULT_TASKS)
