"""The training loop, end to end on the tiny random encoder and the toy records.

Runs are a few steps of 2-4 queries with 4 keys each and 24-token budgets, so each takes seconds
on a CPU.  Expected values come from hand computation, from the sampler's batch plan (tested on
its own in tests/data/test_sampler.py) or from a second, independent run.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from processes import CLI_MODULE, cli, subprocess_env, torchrun
from safetensors.torch import load_file

from llm_embedder import Embedder
from llm_embedder.data.records import make_group
from llm_embedder.data.sampler import HomogeneousBatchSampler
from llm_embedder.errors import InputError
from llm_embedder.tasks import DEFAULT_TASKS
from llm_embedder.training.config import TrainConfig
from llm_embedder.training.losses import compute_task_loss
from llm_embedder.training.trainer import Trainer, learning_rate_factor, load_datasets, train, training_task_table

TOY_TASKS = ("qa", "icl", "chat", "lrlm", "tool", "convsearch")
MAX_LEN = 24
GROUP = 4
# Short budgets and small groups for every task keep a step at a few tens of milliseconds.
SMALL_TASKS = {
    t: {"query_max_length": MAX_LEN, "key_max_length": MAX_LEN, "training": {"group_size": GROUP}} for t in TOY_TASKS
}


def write_recipe(path: Path, model: Path, toy_dir: Path, tasks=("qa", "chat", "tool"), **settings) -> Path:
    recipe = {
        "model": str(model),
        "datasets": [{"path": str(toy_dir / f"{t}.json")} for t in tasks],
        "tasks": SMALL_TASKS,
        "batch_size": 2,
        "max_steps": 4,
        "learning_rate": 1.0e-3,
        "warmup_ratio": 0.0,
        "logging_steps": 1,
        "save_steps": 1000,
        "seed": 7,
        "device": "cpu",
        **settings,
    }
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def task_keys(line: dict) -> set[str]:
    return {k.removeprefix("loss/") for k in line if k.startswith("loss/")}


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def planned_tasks(config: TrainConfig, sizes: list[int], tasks: list[str], world_size: int = 1) -> list[list[str]]:
    """The task of every row of each global batch, from the sampler's plan."""
    sampler = HomogeneousBatchSampler(
        sizes,
        config.batch_size,
        world_size=world_size,
        seed=config.seed,
        homogeneous=config.techniques.homogeneous,
    )
    out = []
    for indices in sampler.global_batches()[: config.max_steps]:
        out.append([tasks[sampler.dataset_of(int(i))] for i in indices])
    return out


@pytest.fixture(scope="module")
def nodrop_encoder_dir(tiny_encoder_dir, tmp_path_factory) -> Path:
    """The tiny encoder without dropout, so that runs on 1 and 2 processes can agree."""
    folder = tmp_path_factory.mktemp("tiny-nodrop")
    shutil.copytree(tiny_encoder_dir, folder, dirs_exist_ok=True)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture
def one_thread():
    """Pin torch to one thread, like the subprocesses run with OMP_NUM_THREADS=1 (same reduction order)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ============================================================================ learning-rate schedule


def test_linear_warmup_then_linear_decay():
    # 100 steps, 10 of warm-up: 0, 0.1, ..., 0.9, then 1 at step 10 falling by 1/90 per step to 0 at 100
    assert [learning_rate_factor(s, 100, 10) for s in range(11)] == pytest.approx([s / 10 for s in range(11)])
    assert learning_rate_factor(55, 100, 10) == pytest.approx(0.5)
    assert learning_rate_factor(91, 100, 10) == pytest.approx(0.1)
    assert learning_rate_factor(100, 100, 10) == 0.0
    assert learning_rate_factor(120, 100, 10) == 0.0  # never negative


def test_log_warmup():
    # DeepSpeed WarmupDecayLR: ln(step + 1) / ln(warmup) during warm-up
    assert learning_rate_factor(0, 100, 10, "log") == 0.0
    assert learning_rate_factor(4, 100, 10, "log") == pytest.approx(math.log(5) / math.log(10))
    assert learning_rate_factor(9, 100, 10, "log") == pytest.approx(1.0)  # ln 10 / ln 10
    assert learning_rate_factor(10, 100, 10, "log") == pytest.approx(1.0)
    assert learning_rate_factor(40, 100, 10, "log") == pytest.approx(60 / 90)
    factors = [learning_rate_factor(s, 100, 10, "log") for s in range(10)]
    assert factors == sorted(factors)
    # the log curve rises faster than the linear one
    assert all(learning_rate_factor(s, 100, 10, "log") > s / 10 for s in range(1, 10))


def test_no_warmup():
    assert learning_rate_factor(0, 4, 0) == 1.0
    assert [learning_rate_factor(s, 4, 0) for s in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert learning_rate_factor(0, 4, 1, "log") == 1.0  # one warm-up step: ln(1)/ln(1) is undefined


# ============================================================================ a plain run


@pytest.fixture(scope="module")
def plain_run(tiny_encoder_dir, toy_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plain")
    recipe = write_recipe(tmp / "r.yaml", tiny_encoder_dir, toy_dir, max_steps=6, logging_steps=2, save_steps=4)
    config = TrainConfig.from_yaml(recipe, [f"output_dir={tmp / 'out'}"])
    model_dir = train(config, show_progress=False)
    return config, model_dir


def test_run_saves_a_loadable_model_with_the_training_task_table(plain_run, tiny_encoder_dir):
    config, model_dir = plain_run
    assert model_dir == Path(config.output_dir) / "model"
    embedder = Embedder.from_pretrained(model_dir, device="cpu")
    expected = training_task_table(Embedder.from_pretrained(tiny_encoder_dir, device="cpu").tasks, config)
    assert embedder.tasks == expected
    qa = embedder.tasks["qa"]
    assert qa.query_instruction == "Represent this query for retrieving relevant documents: "
    assert qa.key_instruction == "Represent this document for retrieval: "
    assert (qa.query_max_length, qa.key_max_length, qa.training.group_size) == (MAX_LEN, MAX_LEN, GROUP)
    assert embedder.tasks["chat"].training.select_positive == "teacher"  # the rest of the table is kept
    assert embedder.pooling == "cls" and embedder.normalize
    vectors = embedder.encode_queries(["what is the capital of france"], task="qa")
    assert vectors.shape == (1, 32) and np.isclose(np.linalg.norm(vectors), 1.0, atol=1e-5)
    info = json.loads((model_dir / "training.json").read_text())
    assert info["steps"] == 6 and info["config"]["max_steps"] == 6


def test_run_changes_the_weights(plain_run, tiny_encoder_dir):
    _, model_dir = plain_run
    before, after = weights(tiny_encoder_dir), weights(model_dir)
    common = sorted(set(before) & set(after))
    assert len(common) >= len(after) - 1
    assert all(after[k].shape == before[k].shape for k in common)
    changed = [k for k in common if not torch.equal(before[k], after[k])]
    assert len(changed) > 0.9 * len(common)


def test_train_log_has_one_line_per_logging_step(plain_run, toy_dir):
    config, _ = plain_run
    log = read_log(Path(config.output_dir))
    assert [line["step"] for line in log] == [2, 4, 6]
    plan = planned_tasks(config, [8, 8, 8], ["qa", "chat", "tool"])
    for line in log:
        # the window's tasks: exactly those of its two (homogeneous) batches
        window = plan[line["step"] - 2 : line["step"]]
        assert all(len(set(batch)) == 1 for batch in window)
        assert task_keys(line) == {batch[0] for batch in window}
        assert all(math.isfinite(line[f"loss/{t}"]) and line[f"loss/{t}"] >= 0 for t in task_keys(line))
        # the learning rate after the step: linear decay from 1e-3 over 6 steps, no warm-up
        assert line["lr"] == pytest.approx(1e-3 * (6 - line["step"]) / 6)
        assert line["samples_per_s"] > 0


def test_checkpoints_of_a_finished_run(plain_run):
    config, _ = plain_run
    checkpoints = sorted(p.name for p in (Path(config.output_dir) / "checkpoints").iterdir())
    assert checkpoints == ["step-000004"]  # every save_steps, none at max_steps; no temporary folders left
    state = json.loads((Path(config.output_dir) / "checkpoints" / "step-000004" / "trainer_state.json").read_text())
    assert state["step"] == 4 and state["config"]["seed"] == 7


@pytest.mark.parametrize("instructions", [True, False])
def test_instruction_switch_reaches_the_encoder_and_the_saved_table(
    tiny_encoder_dir, toy_dir, toy_records, tmp_path, instructions
):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_encoder_dir, toy_dir, tasks=("qa",), max_steps=2)
    config = TrainConfig.from_yaml(recipe, [f"output_dir={tmp_path}", f"techniques.instructions={instructions}"])
    trainer = Trainer(config, show_progress=False)
    seen: list[str] = []
    tokenize = trainer.embedder.tokenize

    def spy(texts, max_length):
        seen.extend(texts)
        return tokenize(texts, max_length)

    trainer.embedder.tokenize = spy
    model_dir = trainer.train()
    records = toy_records("qa")
    queries = {r["query"] for r in records}
    keys = {k for r in records for k in r["pos"] + r["neg"]}
    qi, ki = DEFAULT_TASKS["qa"].query_instruction, DEFAULT_TASKS["qa"].key_instruction
    prefix = (qi, ki) if instructions else ("", "")
    # 2 steps x 2 queries, each with GROUP keys, all with exactly the expected prefix
    assert len(seen) == 2 * 2 * (1 + GROUP)
    assert sum(t in {prefix[0] + q for q in queries} for t in seen) == 4
    assert sum(t in {prefix[1] + k for k in keys} for t in seen) == 4 * GROUP
    saved = Embedder.from_pretrained(model_dir, device="cpu").tasks
    assert (saved["qa"].query_instruction, saved["qa"].key_instruction) == prefix
    if not instructions:
        assert all(t.query_instruction == t.key_instruction == "" for t in saved.values())


# ============================================================================ training lowers the loss


def _fixed_eval_loss(embedder: Embedder, datasets, temperature: float) -> float:
    """Mean over datasets of the task loss on all its records, groups drawn once with a fixed seed."""
    embedder.model.eval()
    losses = []
    with torch.no_grad():
        for data in datasets:
            task = embedder.tasks[data.task]
            groups = [make_group(r, data.settings, np.random.default_rng((123, i))) for i, r in enumerate(data.records)]
            queries = [task.query_text(g.query) for g in groups]
            keys = [task.key_text(k) for g in groups for k in g.keys]
            q = embedder(**embedder.collate(embedder.tokenize(queries, task.query_max_length), range(len(queries))))
            k = embedder(**embedder.collate(embedder.tokenize(keys, task.key_max_length), range(len(keys))))
            scores = None
            if data.settings.uses_teacher:
                scores = torch.tensor([g.teacher_scores for g in groups], dtype=torch.float32)
            loss, _ = compute_task_loss(q, k, scores, data.settings, temperature)
            losses.append(float(loss))
    return sum(losses) / len(losses)


@pytest.mark.slow
def test_training_lowers_the_loss_on_a_fixed_batch(tiny_encoder_dir, toy_dir, tmp_path):
    recipe = write_recipe(
        tmp_path / "r.yaml",
        tiny_encoder_dir,
        toy_dir,
        tasks=TOY_TASKS,
        batch_size=4,
        max_steps=24,  # two epochs of the 48 toy records
        learning_rate=2.0e-3,
        logging_steps=24,
        temperature=0.05,
    )
    config = TrainConfig.from_yaml(recipe, [f"output_dir={tmp_path / 'out'}"])
    start = Embedder.from_pretrained(tiny_encoder_dir, device="cpu")
    start.tasks = training_task_table(start.tasks, config)
    datasets = load_datasets(config, start.tasks)
    before = _fixed_eval_loss(start, datasets, config.temperature)
    after = _fixed_eval_loss(Embedder.from_pretrained(train(config, False), device="cpu"), datasets, 0.05)
    assert after < 0.9 * before, (before, after)


# ============================================================================ exact resume


def _assert_same_weights(a: Path, b: Path, atol: float) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=atol, rtol=0, msg=name)


def _assert_same_log(a: Path, b: Path) -> None:
    la, lb = read_log(a), read_log(b)
    assert [x["step"] for x in la] == [x["step"] for x in lb]
    for x, y in zip(la, lb, strict=True):
        assert {k for k in x if k.startswith("loss")} == {k for k in y if k.startswith("loss")}
        for key in x:
            if key.startswith("loss") or key == "lr":
                assert x[key] == pytest.approx(y[key], rel=1e-6, abs=1e-7), (x["step"], key)


RESUME_STEPS = ["max_steps=8", "save_steps=2", "logging_steps=2", "save_total_limit=2"]


@pytest.fixture(scope="module")
def uninterrupted(tiny_encoder_dir, toy_dir, tmp_path_factory):
    """8 steps without a stop, with dropout on (so the restored RNG states matter), on one thread."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    recipe = write_recipe(tmp / "r.yaml", tiny_encoder_dir, toy_dir)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(TrainConfig.from_yaml(recipe, [*RESUME_STEPS, f"output_dir={tmp / 'out'}"]), show_progress=False)
    finally:
        torch.set_num_threads(before)
    return recipe, tmp / "out"


def test_uninterrupted_run_keeps_the_newest_checkpoints(uninterrupted):
    _, out = uninterrupted
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000004", "step-000006"]
    assert [line["step"] for line in read_log(out)] == [2, 4, 6, 8]


def test_resume_from_a_checkpoint_in_process(uninterrupted, tmp_path, one_thread):
    recipe, reference = uninterrupted
    out = tmp_path / "out"
    (out / "checkpoints").mkdir(parents=True)
    shutil.copytree(reference / "checkpoints" / "step-000004", out / "checkpoints" / "step-000004")
    # what a run killed while saving step 6, after logging it, leaves behind
    (out / "checkpoints" / ".step-000006.tmp").mkdir()
    (out / "checkpoints" / ".step-000006.tmp" / "junk").write_text("half written")
    shutil.copy(reference / "train_log.jsonl", out / "train_log.jsonl")
    lines = (out / "train_log.jsonl").read_text().splitlines()
    (out / "train_log.jsonl").write_text("\n".join(lines[:3]) + "\n")  # steps 2, 4, 6

    trainer = Trainer(TrainConfig.from_yaml(recipe, [*RESUME_STEPS, f"output_dir={out}"]), show_progress=False)
    trainer.train()
    _assert_same_weights(reference / "model", out / "model", atol=1e-6)
    _assert_same_log(reference, out)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000004", "step-000006"]


def test_resume_false_starts_over_without_the_old_runs_files(uninterrupted, tmp_path):
    # The old run's checkpoints (steps 4 and 6) must not outrank the new run's when old ones are
    # pruned, nor be resumed from later; its log lines must not mix with the new ones.
    recipe, reference = uninterrupted
    out = tmp_path / "out"
    shutil.copytree(reference / "checkpoints", out / "checkpoints")
    shutil.copy(reference / "train_log.jsonl", out / "train_log.jsonl")
    overrides = ["max_steps=3", "save_steps=1", "resume=false", f"output_dir={out}"]
    trainer = Trainer(TrainConfig.from_yaml(recipe, overrides), show_progress=False)
    trainer.train()
    assert trainer.progress.step == 3
    assert [line["step"] for line in read_log(out)] == [1, 2, 3]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000001", "step-000002"]


def test_fresh_start_drops_the_log_of_a_run_killed_before_its_first_checkpoint(uninterrupted, tmp_path):
    recipe, reference = uninterrupted
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(reference / "train_log.jsonl", out / "train_log.jsonl")
    trainer = Trainer(TrainConfig.from_yaml(recipe, ["max_steps=2", f"output_dir={out}"]), show_progress=False)
    trainer.train()
    assert [line["step"] for line in read_log(out)] == [1, 2]


def _cli(recipe: Path, out: Path) -> list[str]:
    return cli("train", "--config", str(recipe), "--output-dir", str(out))


@pytest.mark.slow
def test_resume_after_sigkill_is_exact(uninterrupted, tmp_path):
    recipe, reference = uninterrupted
    subprocess_recipe = tmp_path / "r.yaml"
    config = yaml.safe_load(recipe.read_text())
    config.update(max_steps=8, save_steps=2, logging_steps=2, save_total_limit=2)
    subprocess_recipe.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    target = out / "checkpoints" / "step-000002"  # the first one: six steps and the model save still to go

    proc = subprocess.Popen(
        _cli(subprocess_recipe, out), env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 120
    while not target.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)  # a no-op if it already ended (checked below)
    output = proc.communicate()[0].decode()
    assert target.exists(), f"no checkpoint appeared:\n{output[-3000:]}"
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it was killed:\n{output[-3000:]}"
    assert not (out / "model").exists()
    newest = max(p.name for p in (out / "checkpoints").glob("step-*"))

    done = subprocess.run(
        _cli(subprocess_recipe, out), env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(rf"resumed from \S*{newest} at step {int(newest[5:])}", done.stdout), done.stdout
    _assert_same_weights(reference / "model", out / "model", atol=1e-6)
    _assert_same_log(reference, out)


# ============================================================================ ablations


def test_mixed_batches_log_several_tasks_per_step(tiny_encoder_dir, toy_dir, tmp_path):
    tasks = ["qa", "icl", "chat", "tool"]
    recipe = write_recipe(tmp_path / "r.yaml", tiny_encoder_dir, toy_dir, tasks=tasks, batch_size=4, max_steps=4)
    config = TrainConfig.from_yaml(recipe, [f"output_dir={tmp_path / 'out'}", "techniques.homogeneous=false"])
    train(config, show_progress=False)
    log = read_log(tmp_path / "out")
    plan = planned_tasks(config, [8] * 4, tasks)
    assert [line["step"] for line in log] == [1, 2, 3, 4]
    assert any(len(set(batch)) > 1 for batch in plan)
    for line, batch in zip(log, plan, strict=True):
        assert task_keys(line) == set(batch)
        # the total is the task losses weighted by their share of the queries
        total = sum(batch.count(t) / len(batch) * line[f"loss/{t}"] for t in set(batch))
        assert line["loss"] == pytest.approx(total, rel=1e-5)


def test_mixed_batches_need_one_group_size(tiny_encoder_dir, toy_dir, tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_encoder_dir, toy_dir, tasks=("qa", "tool"))
    overrides = ["techniques.homogeneous=false", "tasks.tool.training.group_size=3"]
    config = TrainConfig.from_yaml(recipe, overrides)
    with pytest.raises(ValueError, match=r"one group size.*\[3, 4\]"):
        load_datasets(config, training_task_table(DEFAULT_TASKS, config))


def test_reward_off_leaves_unlabelled_datasets_out(tiny_encoder_dir, toy_dir, tmp_path, capsys):
    # chat (history) and lrlm (empty pos) records have no labelled positive: without rewards the
    # whole dataset leaves the mix, with a note; with nothing else left the run stops.
    for task in ("chat", "lrlm"):
        recipe = write_recipe(tmp_path / "r.yaml", tiny_encoder_dir, toy_dir, tasks=("tool", task))
        config = TrainConfig.from_yaml(recipe, ["techniques.reward=false"])
        datasets = load_datasets(config, training_task_table(DEFAULT_TASKS, config))
        assert [d.task for d in datasets] == ["tool"]
        assert f"{task}.json has no labelled positives" in capsys.readouterr().out
    recipe = write_recipe(tmp_path / "r.yaml", tiny_encoder_dir, toy_dir, tasks=("chat",))
    config = TrainConfig.from_yaml(recipe, ["techniques.reward=false"])
    with pytest.raises(ValueError, match="no dataset has usable records"):
        load_datasets(config, training_task_table(DEFAULT_TASKS, config))


def test_reward_off_keeps_the_weights_of_the_datasets_left(tiny_encoder_dir, toy_dir, tmp_path):
    """Regression: the sampler took one weight per recipe dataset, including those left out."""
    recipe = write_recipe(tmp_path / "r.yaml", tiny_encoder_dir, toy_dir, tasks=("qa", "chat", "tool"))
    settings = yaml.safe_load(recipe.read_text())
    settings["datasets"][2]["weight"] = 3
    recipe.write_text(yaml.safe_dump(settings))
    config = TrainConfig.from_yaml(recipe, [f"output_dir={tmp_path / 'out'}", "techniques.reward=false"])
    trainer = Trainer(config, show_progress=False)
    assert [(d.task, d.weight) for d in trainer.datasets] == [("qa", 1.0), ("tool", 3.0)]
    assert trainer.sampler.weights == (1.0, 3.0)
    assert trainer.sampler.rows_per_epoch == (8, 24)  # 8 toy records each, tool three times over


def test_reward_off_trains_contrastively_on_labels(tiny_encoder_dir, toy_dir, tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_encoder_dir, toy_dir, tasks=("qa", "icl", "tool"), max_steps=3)
    config = TrainConfig.from_yaml(recipe, [f"output_dir={tmp_path / 'out'}", "techniques.reward=false"])
    trainer = Trainer(config, show_progress=False)
    assert {d.task: d.settings.losses for d in trainer.datasets} == {
        t: {"contrastive": 1.0} for t in ("qa", "icl", "tool")
    }
    assert [len(d) for d in trainer.datasets] == [8, 8, 8]
    trainer.train()
    assert [line["step"] for line in read_log(tmp_path / "out")] == [1, 2, 3]
    # the saved table keeps the tasks' own settings: the ablation is a training choice
    assert Embedder.from_pretrained(tmp_path / "out" / "model").tasks["qa"].training.losses == {"stable_distill": 1.0}


@pytest.mark.parametrize(("stable", "qa_losses"), [(True, {"stable_distill": 1.0}), (False, {"kl_distill": 1.0})])
def test_stable_distill_switch_reaches_the_datasets(toy_dir, tmp_path, stable, qa_losses):
    recipe = write_recipe(tmp_path / "r.yaml", tmp_path, toy_dir, tasks=("qa", "chat"))
    config = TrainConfig.from_yaml(recipe, [f"techniques.stable_distill={stable}"])
    datasets = load_datasets(config, training_task_table(DEFAULT_TASKS, config))
    assert {d.task: d.settings.losses for d in datasets} == {"qa": qa_losses, "chat": {"kl_distill": 1.0}}


def test_a_dataset_name_used_twice(toy_dir, tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", tmp_path, toy_dir, tasks=("qa", "qa"))
    config = TrainConfig.from_yaml(recipe)
    with pytest.raises(InputError, match="used twice"):
        load_datasets(config, training_task_table(DEFAULT_TASKS, config))


# ============================================================================ two processes


def _embed(folder: Path, texts: list[str]) -> np.ndarray:
    return Embedder.from_pretrained(folder, device="cpu").encode_queries(texts, task="qa")


@pytest.mark.slow
def test_two_processes_match_one_process_with_twice_the_batch(nodrop_encoder_dir, toy_dir, tmp_path):
    b = 2
    recipe = write_recipe(
        tmp_path / "r.yaml", nodrop_encoder_dir, toy_dir, batch_size=b, max_steps=3, save_steps=2, device="auto"
    )
    one = tmp_path / "one"
    overrides = [f"batch_size={2 * b}", f"output_dir={one}", "device=cpu"]
    train(TrainConfig.from_yaml(recipe, overrides), show_progress=False)

    two = tmp_path / "two"
    args = [*CLI_MODULE, "train", "--config", str(recipe), "--output-dir", str(two)]
    # device "auto" without CUDA: the processes must still form one gloo group on the CPU
    proc = torchrun(2, args, subprocess_env(CUDA_VISIBLE_DEVICES=""), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    # one process writes the log and the model, once; every rank saved its RNG state
    assert [line["step"] for line in read_log(two)] == [1, 2, 3]
    assert proc.stdout.count("saved the trained embedder") == 1
    checkpoint = two / "checkpoints" / "step-000002"
    assert (checkpoint / "random_states_0.pkl").exists() and (checkpoint / "random_states_1.pkl").exists()
    assert "6 steps per epoch" in proc.stdout  # 24 rows in global batches of 2 ranks x 2, as with 1 x 4

    # the same global batches, the same losses
    log_one, log_two = read_log(one), read_log(two)
    for x, y in zip(log_one, log_two, strict=True):
        assert task_keys(x) == task_keys(y)
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5)

    # the same weights.  Attention key biases are left out: softmax ignores a shift that is the same for
    # every key, so their true gradient is 0 and Adam turns float rounding noise into lr-sized steps.
    wa, wb = weights(one / "model"), weights(two / "model")
    assert wa.keys() == wb.keys()
    for name in wa:
        if not name.endswith("attention.self.key.bias"):
            torch.testing.assert_close(wa[name], wb[name], atol=1e-5, rtol=0, msg=name)
    texts = ["what is the capital of france", "the quick brown fox", "who wrote this song"]
    np.testing.assert_allclose(_embed(one / "model", texts), _embed(two / "model", texts), atol=1e-5)


# ============================================================================ short groups


def test_short_groups_are_padded_and_their_slots_masked(tiny_encoder_dir, tmp_path):
    # qa records with 2 negatives: groups of 3 keys in a group size of GROUP = 4, so one padded slot each.
    data = tmp_path / "qa.json"
    rows = [
        {
            "query": f"question {i}",
            "task": "qa",
            "pos": [f"answer {i}"],
            "neg": [f"other {i}", f"wrong {i}"],
            "teacher_scores": [-0.5, -1.0 - i / 10, -2.0],
        }
        for i in range(4)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    recipe = {
        "model": str(tiny_encoder_dir),
        "datasets": [{"path": str(data)}],
        "tasks": SMALL_TASKS,
        "batch_size": 2,
        "max_steps": 2,
        "logging_steps": 1,
        "save_steps": 1000,
        "seed": 7,
        "device": "cpu",
        "output_dir": str(tmp_path / "out"),
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    trainer = Trainer(TrainConfig.from_yaml(tmp_path / "r.yaml"), show_progress=False)
    groups = trainer._groups([0, 1], 0)
    assert [len(g.keys) for _, g in groups] == [3, 3]
    queries, keys = trainer._features(groups)
    assert len(keys["input_ids"]) == 2 * GROUP
    with torch.no_grad():
        q, k = trainer.model(queries, keys)
        loss, _ = trainer._loss(groups, q, k)
        junk = k.clone()
        junk[GROUP - 1 :: GROUP] = 5 * torch.randn(2, k.shape[1])  # the padded slots
        assert torch.isfinite(loss)
        assert float(trainer._loss(groups, q, junk)[0]) == pytest.approx(float(loss), rel=1e-6)
    trainer.train()
    assert all(math.isfinite(line["loss"]) for line in read_log(tmp_path / "out"))
