"""Kill trials (issue 13, section 6): ``score``, ``index build``, ``train`` and ``eval`` killed with
SIGKILL at seeded random instants, then run again with the same command, end with the same bytes
as an uninterrupted run, and leave no work files behind.

Each command has a reference run; a trial starts the command, waits until it has written work,
kills it after a random delay drawn from [0, half the reference's wall time] (halved while the run
ends first), reruns it to the end and compares.  The default run does one
trial per command; ``-m slow`` adds the rest (24 in all).
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from checks import CORPUS_ROWS, write_jsonl
from processes import cli, subprocess_env

TRIALS = 6  # per command; the first of each runs by default
SEED = 13


@dataclass
class Job:
    argv: list[str]
    result: Path
    """The output whose bytes must match (a file or a folder)."""

    def run(self, timeout: int = 600) -> float:
        started = time.monotonic()
        done = subprocess.run(self.argv, env=subprocess_env(), capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, done.stderr[-3000:]
        return time.monotonic() - started


def _contents(path: Path, root: Path, ignore: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Relative file name -> bytes; an index's version folder name (it holds a pid) and the trial's
    own folder (``root``, named in ``training.json``) are normalised."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    if not path.is_dir():
        return {}
    found = {}
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        parts = list(file.relative_to(path).parts)
        if parts[0].startswith("v-"):
            parts[0] = "v-*"
        name = "/".join(parts)
        # manifests name this trial's own paths; everything they describe is compared
        if name not in ignore and not name.endswith(("manifest.json", "llm-embedder-output.json")):
            data = b"v-*\n" if name == "CURRENT" else file.read_bytes()
            found[name] = data.replace(str(root).encode(), b"<root>")
    return found


def _leftovers(folder: Path) -> list[str]:
    """Hidden work files other than manifests (partials, temporary folders)."""

    def manifest_of_an_output(p: Path) -> bool:
        return p.name.endswith(".manifest.json") and (p.parent / p.name[1 : -len(".manifest.json")]).exists()

    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*") if not manifest_of_an_output(p))


# ---------------------------------------------------------------------------- the four jobs
def _score(tmp: Path, tiny_lm_dir: Path, toy_records) -> Job:
    records = []
    for i, r in enumerate(toy_records("qa") * 2):
        records.append(
            {
                "query": r["query"],
                "query_id": i,
                "task": "qa",
                "pos": [r["pos"][0][:300]],
                "neg": [t[:300] for t in r["neg"][:3]],
                "answers": [" ".join(r["answers"][0].split()[:20])],
            }
        )
    src = write_jsonl(tmp / "in.jsonl", records)
    out = tmp / "out" / "scored.jsonl"
    argv = cli(
        "score",
        "--lm",
        str(tiny_lm_dir),
        "--device",
        "cpu",
        "--input",
        str(src),
        "--output",
        str(out),
        "--chunk-records",
        "2",
    )
    return Job(argv, out)


def _index(tmp: Path, tiny_encoder_dir: Path, toy_records) -> Job:
    rows = [{"text": t} for r in toy_records("qa") for t in r["neg"]] + CORPUS_ROWS
    corpus = write_jsonl(tmp / "corpus.jsonl", rows)
    out = tmp / "out" / "index"
    argv = cli(
        "index",
        "build",
        "--corpus",
        str(corpus),
        "--out",
        str(out),
        "--model",
        str(tiny_encoder_dir),
        "--device",
        "cpu",
        "--batch-size",
        "4",
    )
    return Job(argv, out)


def _train(tmp: Path, tiny_encoder_dir: Path, toy_dir: Path) -> Job:
    small = {"query_max_length": 24, "key_max_length": 24, "training": {"group_size": 4}}
    recipe = {
        "model": str(tiny_encoder_dir),
        "datasets": [{"path": str(toy_dir / f"{t}.json")} for t in ("qa", "chat")],
        "tasks": {t: small for t in ("qa", "chat")},
        "batch_size": 2,
        "max_steps": 6,
        "learning_rate": 1.0e-3,
        "warmup_ratio": 0.0,
        "logging_steps": 2,
        "save_steps": 2,
        "seed": 7,
        "device": "cpu",
    }
    path = tmp / "r.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    out = tmp / "out" / "run"
    return Job(cli("train", "--config", str(path), "--output-dir", str(out)), out / "model")


def _eval(tmp: Path) -> Job:
    data = tmp / "data"
    for task, name, test in (("tool", "toolbench", "test.json"), ("convsearch", "qrecc", "test.concat.json")):
        write_jsonl(data / task / name / "corpus.json", CORPUS_ROWS)
        rows = [{"query": r["text"][:30], "pos_index": [i]} for i, r in enumerate(CORPUS_ROWS)]
        write_jsonl(data / task / name / test, rows)
    out = tmp / "out" / "eval"
    argv = cli("eval", "--data", str(data), "--tasks", "tool,convsearch", "--out", str(out))
    for spec in ("none", "random", "recency", "bm25"):
        argv += ["--retriever", spec]
    return Job(argv, out)


def _eval_comparable(folder: Path, root: Path) -> dict[str, bytes]:
    """Eval outputs without what differs run to run by nature: the seconds a cell took."""
    found = _contents(folder, root, ignore=("leaderboard.png",))
    for name in [n for n in found if n.startswith("cells/")]:
        cell = json.loads(found[name])
        cell.pop("seconds", None)
        found[name] = json.dumps(cell, sort_keys=True).encode()
    return found


# ---------------------------------------------------------------------------- trials
def _work_written(folder: Path) -> bool:
    """Whether the run has written work (a manifest alone does not count)."""
    return folder.exists() and any(
        p.is_file() and not p.name.endswith(("manifest.json", "llm-embedder-output.json")) for p in folder.rglob("*")
    )


def _trial(name: str, job: Job, reference: dict[str, bytes], compare, delay: float, folder: Path) -> None:
    """Start ``job``, wait until it has written work, kill it ``delay`` seconds later (halved while the
    run ends first), rerun it to the end and compare with the uninterrupted run."""
    for _ in range(8):
        proc = subprocess.Popen(job.argv, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while proc.poll() is None and not _work_written(folder):
            time.sleep(0.01)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            break
        shutil.rmtree(folder)  # it finished first: try again, earlier
        delay /= 2
    else:
        pytest.fail(f"{name} always finished before the kill")
    job.run()
    assert compare(job.result, folder.parent) == reference, f"after a kill at {delay:.2f}s the output differs"
    assert _leftovers(folder) == [], f"after a kill at {delay:.2f}s work files remain"
    print(f"kill trial: {name} killed {delay:.2f}s after its first write; rerun identical")


def _make(name: str, tmp: Path, request) -> tuple[Job, object]:
    if name == "score":
        return _score(tmp, request.getfixturevalue("tiny_lm_dir"), request.getfixturevalue("toy_records")), _contents
    if name == "index build":
        enc = request.getfixturevalue("tiny_encoder_dir")
        return _index(tmp, enc, request.getfixturevalue("toy_records")), _contents
    if name == "train":
        enc = request.getfixturevalue("tiny_encoder_dir")
        return _train(tmp, enc, request.getfixturevalue("toy_dir")), _contents
    return _eval(tmp), _eval_comparable


COMMANDS = ("score", "index build", "train", "eval")
CASES = [
    pytest.param(name, trial, marks=() if trial == 0 else pytest.mark.slow, id=f"{name}-{trial}")
    for name in COMMANDS
    for trial in range(TRIALS)
]


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """One uninterrupted run per command (made on first use): (its bytes, its wall time)."""
    return {}


@pytest.mark.parametrize(("name", "trial"), CASES)
def test_killed_and_rerun_equals_uninterrupted(name, trial, tmp_path, tmp_path_factory, request, references):
    if name not in references:
        ref_dir = tmp_path_factory.mktemp(f"reference-{name.replace(' ', '-')}")
        job, compare = _make(name, ref_dir, request)
        seconds = job.run()
        references[name] = (compare(job.result, ref_dir), seconds)
    reference, seconds = references[name]
    job, compare = _make(name, tmp_path, request)
    rng = random.Random(f"{SEED}-{name}-{trial}")
    delay = rng.uniform(0.0, seconds / 2)
    _trial(name, job, reference, compare, delay, tmp_path / "out")
    # odd trials: a second kill-and-rerun from scratch, at another instant
    if trial % 2 == 1:
        shutil.rmtree(tmp_path / "out")
        _trial(name, job, reference, compare, rng.uniform(0.0, seconds / 2), tmp_path / "out")
