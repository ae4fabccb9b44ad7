"""The training recipe: YAML loading, ``--set`` overrides, errors, and the ablation switches."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest

from llm_embedder.errors import InputError
from llm_embedder.tasks import DEFAULT_TASKS, TrainingSettings
from llm_embedder.training.config import DatasetSpec, Techniques, TrainConfig, apply_override, effective_settings

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
TOY_CPU = RECIPES / "toy-cpu.yaml"
FULL = RECIPES / "llm-embedder.yaml"
TOY_TASKS = ("qa", "icl", "chat", "lrlm", "tool", "convsearch")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ============================================================================ the shipped recipes


def test_toy_cpu_recipe(toy_dir):
    config = TrainConfig.from_yaml(TOY_CPU)
    assert config.model == "minilm"
    assert (config.batch_size, config.max_steps, config.logging_steps, config.save_steps) == (4, 60, 10, 20)
    assert config.learning_rate == pytest.approx(2e-5) and isinstance(config.learning_rate, float)
    assert config.techniques == Techniques(True, True, True, True)
    # relative dataset paths start from the recipe's folder: recipes/../data/flagembedding-toy
    paths = [Path(d.path) for d in config.datasets]
    assert all(p.is_absolute() and p.is_file() for p in paths)
    assert [p.stem for p in paths] == ["qa", "icl", "chat", "lrlm", "tool", "convsearch"]
    assert {p.parent for p in paths} == {toy_dir.resolve()}
    assert all(d.weight == 1.0 and d.name is None for d in config.datasets)


def test_full_recipe_with_data_root(tmp_path):
    config = TrainConfig.from_yaml(FULL, [f"data_root={tmp_path}"])
    assert config.model == "BAAI/bge-base-en"
    assert (config.batch_size, config.max_steps, config.warmup_shape) == (100, 10000, "log")
    assert config.learning_rate == pytest.approx(5e-6)
    assert (config.mixed_precision, config.pooling, config.gradient_checkpointing) == ("bf16", "cls", True)
    by_name = {d.name: d for d in config.datasets}
    assert list(by_name) == ["msc", "qrecc", "arxiv", "books3", "codeparrot", "msmarco", "nq", "toolbench", "icl"]
    assert by_name["msc"].path == str(tmp_path / "chat" / "msc" / "train.json")
    assert by_name["msmarco"].path == str(tmp_path / "qa" / "msmarco" / "train.json")
    assert by_name["toolbench"].weight == 2.0  # listed twice in the original script
    assert all(d.weight == 1.0 for n, d in by_name.items() if n != "toolbench")
    assert all(Path(d.path).is_relative_to(tmp_path) for d in config.datasets)


def test_relative_data_root_starts_from_the_recipe_folder(tmp_path, monkeypatch):
    # the recipe names its data relative to itself, wherever the command runs
    monkeypatch.chdir(tmp_path)
    config = TrainConfig.from_yaml(FULL)
    assert config.data_root == "llm-embedder-data"
    expected = (FULL.parent / "llm-embedder-data" / "chat" / "msc" / "train.json").resolve()
    assert config.datasets[0].path == str(expected)


def test_absolute_dataset_paths_are_kept(tmp_path):
    recipe = write(tmp_path / "r.yaml", "datasets:\n  - {path: /data/x.json}\n  - {path: rel/y.json, weight: 0.5}\n")
    config = TrainConfig.from_yaml(recipe)
    assert [d.path for d in config.datasets] == ["/data/x.json", str(tmp_path / "rel" / "y.json")]
    assert config.datasets[1].weight == 0.5


def test_defaults_for_an_empty_recipe(tmp_path):
    config = TrainConfig.from_yaml(write(tmp_path / "r.yaml", ""))
    assert config == TrainConfig()
    assert config.datasets == [] and config.techniques == Techniques()


# ============================================================================ overrides


def test_overrides_are_yaml_typed():
    config = TrainConfig.from_yaml(
        TOY_CPU,
        [
            "max_steps=7",
            "learning_rate=1e-4",  # YAML 1.1 reads this as a string; a float setting takes it
            "warmup_ratio=0",
            "cross_device_negatives=false",
            "pooling=mean",
            "output_dir=/tmp/somewhere",
            "data_root=null",
        ],
    )
    assert config.max_steps == 7 and isinstance(config.max_steps, int)
    assert config.learning_rate == 1e-4 and isinstance(config.learning_rate, float)
    assert config.warmup_ratio == 0.0 and isinstance(config.warmup_ratio, float)
    assert config.cross_device_negatives is False
    assert config.pooling == "mean" and config.output_dir == "/tmp/somewhere"
    assert config.data_root is None


def test_nested_overrides():
    config = TrainConfig.from_yaml(
        TOY_CPU, ["techniques.homogeneous=false", "techniques.reward=no", "tasks.qa.training.group_size=4"]
    )
    assert config.techniques == Techniques(reward=False, stable_distill=True, instructions=True, homogeneous=False)
    assert config.tasks == {"qa": {"training": {"group_size": 4}}}


def test_override_creates_a_missing_section(tmp_path):
    recipe = write(tmp_path / "r.yaml", "max_steps: 3\n")
    config = TrainConfig.from_yaml(recipe, ["techniques.instructions=false"])
    assert config.techniques == Techniques(instructions=False)


def test_override_replaces_a_list():
    config = TrainConfig.from_yaml(TOY_CPU, ["datasets=[{path: /x/a.json, name: a}]"])
    assert config.datasets == [DatasetSpec("/x/a.json", 1.0, "a")]


def test_the_later_override_wins():
    assert TrainConfig.from_yaml(TOY_CPU, ["seed=1", "seed=2"]).seed == 2


def test_apply_override_on_a_dict():
    data = {"a": {"b": 1}}
    apply_override(data, "a.c=[1, 2]")
    apply_override(data, "d=x=y")  # only the first "=" splits
    assert data == {"a": {"b": 1, "c": [1, 2]}, "d": "x=y"}


@pytest.mark.parametrize("override", ["max_steps", "=3", "seed.x=1"])
def test_malformed_override(override):
    with pytest.raises(ValueError) as info:
        TrainConfig.from_yaml(TOY_CPU, [override])
    assert override in str(info.value) or "seed" in str(info.value)


# ============================================================================ errors


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("max_step=3", "max_step"),
        ("techniques.rewards=false", "techniques.rewards"),
        ("datasets=[{path: a.json, wieght: 2}]", "datasets.wieght"),
    ],
)
def test_unknown_key_is_named(override, key):
    with pytest.raises(InputError) as info:
        TrainConfig.from_yaml(TOY_CPU, [override])
    assert f"unknown setting {key}" in str(info.value)
    assert str(TOY_CPU) in str(info.value)


def test_unknown_key_in_the_file(tmp_path):
    recipe = write(tmp_path / "r.yaml", "max_steps: 3\nbatchsize: 4\n")
    with pytest.raises(InputError) as info:
        TrainConfig.from_yaml(recipe)
    assert "batchsize" in str(info.value) and "batch_size" in str(info.value)  # lists the known keys


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("techniques.reward='false'", "techniques.reward"),  # a string would be truthy: reward stays on
        ("max_steps=ten", "max_steps"),
        ("batch_size=2.5", "batch_size"),
        ("learning_rate=fast", "learning_rate"),
        ("seed=true", "seed"),
        ("model=[a, b]", "model"),
        ("datasets=[{path: a.json, weight: heavy}]", "datasets.weight"),
    ],
)
def test_mistyped_value_is_named(override, key):
    with pytest.raises(InputError) as info:
        TrainConfig.from_yaml(TOY_CPU, [override])
    assert f"setting {key}=" in str(info.value)


@pytest.mark.parametrize(
    "override",
    ["max_steps=0", "batch_size=-1", "warmup_shape=cubic", "mixed_precision=fp8", "techniques=[1]"],
)
def test_invalid_values(override):
    with pytest.raises(InputError) as info:
        TrainConfig.from_yaml(TOY_CPU, [override])
    assert str(TOY_CPU) in str(info.value)


def test_bad_yaml_names_the_line(tmp_path):
    recipe = write(tmp_path / "r.yaml", "model: minilm\nbatch_size: 4\ndatasets: [\n  {path: a.json\nseed: 1\n")
    with pytest.raises(InputError) as info:
        TrainConfig.from_yaml(recipe)
    err = info.value
    assert err.path == str(recipe) and err.line == 5  # where the parser gave up
    assert f"{recipe}:{err.line}" in str(err) and "invalid YAML" in str(err)


def test_bad_indentation_names_the_line(tmp_path):
    recipe = write(tmp_path / "r.yaml", "model: minilm\nbatch_size: 4\n  seed: 1\n")
    with pytest.raises(InputError) as info:
        TrainConfig.from_yaml(recipe)
    assert info.value.line == 3


def test_recipe_not_a_mapping(tmp_path):
    with pytest.raises(InputError) as info:
        TrainConfig.from_yaml(write(tmp_path / "r.yaml", "- a\n- b\n"))
    assert "mapping" in str(info.value)


def test_missing_recipe(tmp_path):
    with pytest.raises(InputError) as info:
        TrainConfig.from_yaml(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(info.value) and "not found" in str(info.value)


def test_to_dict_round_trips():
    config = TrainConfig.from_yaml(TOY_CPU, ["techniques.stable_distill=false"])
    assert TrainConfig(**config.to_dict()) == config


# ============================================================================ ablation switches


def _techniques(reward=True, stable_distill=True, instructions=True, homogeneous=True) -> Techniques:
    return Techniques(reward, stable_distill, instructions, homogeneous)


def _expected(task: str, reward: bool, stable: bool) -> TrainingSettings:
    """What the paper's ablations mean for each built-in task, written out by hand."""
    base = DEFAULT_TASKS[task].training
    distils = task in ("qa", "icl", "chat", "lrlm")
    if distils and not reward:
        return dataclasses.replace(
            base,
            losses={"contrastive": 1.0},
            select_positive={"chat": "first", "lrlm": "first"}.get(task, base.select_positive),
            select_negative="random",
            teacher_scores_margin=None,
            teacher_scores_min=None,
        )
    if task in ("qa", "icl") and not stable:
        return dataclasses.replace(base, losses={"kl_distill": 1.0})
    return base


@pytest.mark.parametrize(("reward", "stable"), list(itertools.product([True, False], repeat=2)))
@pytest.mark.parametrize("task", TOY_TASKS)
def test_effective_settings_of_builtin_tasks(task, reward, stable):
    got = effective_settings(DEFAULT_TASKS[task].training, _techniques(reward=reward, stable_distill=stable))
    assert got == _expected(task, reward, stable)


def test_all_switches_on_change_nothing():
    for task in TOY_TASKS:
        settings = DEFAULT_TASKS[task].training
        assert effective_settings(settings, Techniques()) == settings


@pytest.mark.parametrize("switch", ["instructions", "homogeneous"])
def test_data_side_switches_leave_the_losses_alone(switch):
    for task in TOY_TASKS:
        settings = DEFAULT_TASKS[task].training
        assert effective_settings(settings, _techniques(**{switch: False})) == settings


def test_reward_off_teacher_positive_becomes_first():
    got = effective_settings(DEFAULT_TASKS["chat"].training, _techniques(reward=False))
    assert (got.select_positive, got.losses) == ("first", {"contrastive": 1.0})
    got = effective_settings(DEFAULT_TASKS["lrlm"].training, _techniques(reward=False))
    assert (got.select_positive, got.teacher_scores_margin, got.max_samples) == ("first", None, 10000)


def test_reward_off_drops_teacher_negatives_and_filters():
    settings = TrainingSettings(
        losses={"kl_distill": 1.0},
        select_positive="teacher",
        select_negative="teacher",
        teacher_scores_min=-3.0,
        teacher_scores_margin=0.5,
        group_size=5,
    )
    got = effective_settings(settings, _techniques(reward=False))
    assert got == TrainingSettings(losses={"contrastive": 1.0}, group_size=5)
    assert not got.uses_teacher


def test_stable_distill_off_keeps_the_weight_and_adds_to_kl():
    settings = TrainingSettings(losses={"stable_distill": 0.5, "kl_distill": 0.25, "contrastive": 0.2})
    got = effective_settings(settings, _techniques(stable_distill=False))
    assert got.losses == {"kl_distill": 0.75, "contrastive": 0.2}
    got = effective_settings(TrainingSettings(losses={"stable_distill": 0.3}), _techniques(stable_distill=False))
    assert got.losses == {"kl_distill": 0.3}


def test_reward_and_stable_distill_off_together():
    settings = TrainingSettings(losses={"stable_distill": 0.5, "contrastive": 0.2}, select_positive="random")
    for stable in (True, False):
        got = effective_settings(settings, _techniques(reward=False, stable_distill=stable))
        assert got.losses == {"contrastive": 1.0} and got.select_positive == "random"


def test_contrastive_only_task_is_untouched_by_reward_off():
    settings = TrainingSettings(losses={"contrastive": 0.7}, select_negative="teacher", teacher_scores_min=1.0)
    assert effective_settings(settings, _techniques(reward=False, stable_distill=False)) == settings


def test_effective_settings_does_not_mutate_its_input():
    settings = TrainingSettings(losses={"stable_distill": 1.0})
    effective_settings(settings, _techniques(reward=False, stable_distill=False))
    effective_settings(settings, _techniques(stable_distill=False))
    assert settings.losses == {"stable_distill": 1.0}
