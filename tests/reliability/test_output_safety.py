"""Issue 24, section 1: no path, flag or order of commands destroys a file the command did not write.

For every command of the parser (each declares its path options beside its parser: ``outputs.Spec``),
every output option, every example call the command declares, every kind of output path below, with
and without ``--overwrite`` / ``--restart``: the command ends with 0 or with one line (2), never with
the catch-all; a path that is or touches an input is refused; and every file that existed before is
byte-identical afterwards -- except, with ``--overwrite``, the one file the user named as the output
(and its manifest).  A refused command leaves nothing behind.  Commands run in process; a refused
path fails before any model is loaded, so the whole grid takes seconds per command.

A new command is covered as soon as it is in the parser: its ``Spec`` names the roles of its inputs,
and ``SAMPLES`` holds a small input for each role (a new role fails here, asking for one).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from checks import CORPUS_ROWS, write_jsonl

from llm_embedder.cli import build_parser
from llm_embedder.cli import main as cli_main
from llm_embedder.outputs import FILE, Port, Spec, inputs_of, manifest_path

KINDS = (
    "an input",
    "a file inside an input folder",
    "a folder holding an input",
    "an unrelated file",
    "an unrelated folder with files",
    "a folder holding names the command writes",
    "a previous output of another command",
)
TOUCHES_AN_INPUT = KINDS[:3]


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """``(words, parser, spec)`` of every command the parser knows, nested ones included."""
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        for name, sub in action.choices.items():
            spec = sub.get_default("io")
            nested = sub._subparsers is not None
            assert spec is not None or nested, f"`{' '.join((*path, name))}` declares no inputs and outputs (io=Spec)"
            if spec is not None:
                yield (*path, name), sub, spec
            if nested:
                yield from commands(sub, (*path, name))


PARSER = build_parser()
COMMANDS = {" ".join(words): (words, sub, spec) for words, sub, spec in commands(PARSER)}


def _flags(sub: argparse.ArgumentParser) -> list[tuple[str, ...]]:
    options = {o for action in sub._actions for o in action.option_strings}
    found = [()]
    for flag in ("--overwrite", "--restart"):
        if flag in options:
            found += [(*f, flag) for f in found]
    return found


CASES = [
    pytest.param(name, e, option, kind, flags, id=f"{name}|{e}|{option}|{kind}|{' '.join(flags) or '-'}")
    for name, (words, sub, spec) in COMMANDS.items()
    for e in range(len(spec.examples))
    for option in ([p.option for p in spec.outputs] or ["-"])
    for kind in (KINDS if option != "-" else ("no output",))
    for flags in (_flags(sub) if option != "-" else [()])
]


# ---------------------------------------------------------------------------- samples of each role
RECORDS = [
    {
        "query": "capital of France",
        "task": "qa",
        "pos": ["Paris is the capital of France and its largest city."],
        "neg": ["Cats sleep for most of the day."],
        "pos_index": [0],
        "answers": ["Paris"],
        "teacher_scores": [-1.0, -2.0],
    },
    {
        "query": "river in Paris",
        "task": "qa",
        "pos": ["The river Seine flows through Paris."],
        "neg": ["Berlin is the capital of Germany."],
        "pos_index": [1],
        "answers": ["the Seine"],
        "teacher_scores": [-1.5, -1.0],
    },
]
SMALL = {"query_max_length": 24, "key_max_length": 24, "training": {"group_size": 2}}


def _link_copy(source: Path, target: Path) -> Path:
    """A copy whose files are hard links: cheap, and a replaced file never reaches the original."""
    shutil.copytree(source, target, copy_function=os.link)
    return target


def _encoder(root: Path, env) -> Path:
    return root / "encoder" if (root / "encoder").exists() else _link_copy(env.encoder, root / "encoder")


def _recipe(root: Path, env) -> Path:
    data = root / "train"
    data.mkdir(parents=True, exist_ok=True)
    shutil.copy(env.toy / "qa.json", data / "qa.json")
    recipe = {
        "model": str(_encoder(root, env)),
        "datasets": [{"path": str(data / "qa.json")}],
        "tasks": {"qa": SMALL},
        "batch_size": 2,
        "max_steps": 1,
        "logging_steps": 1,
        "save_steps": 1000,
        "device": "cpu",
        "output_dir": str(root / "recipe-output"),
    }
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return root / "recipe.yaml"


def _eval_data(root: Path, env) -> Path:
    folder = root / "eval" / "tool" / "toolbench"
    write_jsonl(folder / "corpus.json", CORPUS_ROWS)
    write_jsonl(folder / "test.json", [{"query": "capital of France", "pos_index": [0]}])
    return root / "eval"


def _pipeline(root: Path, env) -> Path:
    settings = {"work_dir": str(root / "work"), "encoder": str(_encoder(root, env))}
    (root / "pipeline.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")
    return root / "pipeline.yaml"


def _task_files(root: Path, env) -> Path:
    (root / "toy").mkdir(parents=True, exist_ok=True)
    for task in ("qa", "tool"):
        shutil.copy(env.toy / f"{task}.json", root / "toy" / f"{task}.json")
    return root / "toy"


SAMPLES: dict[str, Callable[[Path, object], Path]] = {
    "records": lambda root, env: write_jsonl(root / "records.jsonl", RECORDS),
    "corpus": lambda root, env: write_jsonl(root / "corpus.jsonl", CORPUS_ROWS),
    "encoder": _encoder,
    "lm": lambda root, env: _link_copy(env.lm, root / "lm"),
    "index": lambda root, env: shutil.copytree(env.index, root / "index"),
    "results": lambda root, env: shutil.copytree(env.results, root / "results"),
    "recipe": _recipe,
    "eval-data": _eval_data,
    "pipeline": _pipeline,
    "task-files": _task_files,
}


class Env:
    """What every case copies from: models, and outputs of earlier commands (built once)."""

    def __init__(self, root: Path, encoder: Path, lm: Path, toy: Path):
        self.encoder, self.lm, self.toy = encoder, lm, toy
        corpus = write_jsonl(root / "corpus.jsonl", CORPUS_ROWS)
        queries = write_jsonl(root / "q.jsonl", RECORDS)
        self.index = root / "index"
        self.results = root / "results"
        self.previous = {
            "index build": self.index,
            "eval": self.results,
            "encode": root / "vectors.npy",
            "search": root / "hits.jsonl",
        }
        runs = [
            ["index", "build", "--method", "bm25", "--corpus", corpus, "--out", self.index],
            ["eval", "--data", _eval_data(root, self), "--tasks", "tool", "--retriever", "bm25", "--retriever", "none"],
            ["encode", "--input", queries, "--task", "qa", "--model", encoder, "--device", "cpu"],
            ["search", "--index", self.index, "--queries", queries, "--out", self.previous["search"]],
        ]
        runs[1] += ["--out", self.results]
        runs[2] += ["--out", self.previous["encode"]]
        for argv in runs:
            assert cli_main(["-q", *map(str, argv)]) == 0, argv


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_encoder_dir, tiny_lm_dir, toy_dir) -> Env:
    return Env(tmp_path_factory.mktemp("earlier"), tiny_encoder_dir, tiny_lm_dir, toy_dir)


# ---------------------------------------------------------------------------- the user's files
PLAIN_FILES = {
    "notes.txt": b"my notes",
    "photo.jpg": b"\xff\xd8 not really",
    ".report.99999.draft.tmp": b"a draft named like a temporary",
    "v-99999-beef/x.txt": b"named like an index version",
    "mined/notes.txt": b"named like a pipeline stage",
}


def _names_commands_write() -> dict[str, bytes]:
    files = {}
    for _, _, spec in COMMANDS.values():
        for port in spec.outputs:
            for member in port.members:
                files[f"{member}/mine.txt" if "." not in member else member] = b"mine: " + member.encode()
    files.update({"checkpoints/step-1/weights.bin": b"my own checkpoint", "model/config.json": b"{}"})
    files.update({"stage.json": b"{}", "merge.json": b"{}", "manifest.json": b"{}"})
    return files


def _write_tree(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def _snapshot(*roots: Path) -> dict[Path, str]:
    found = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                found[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _candidates(kind: str, command: str, port: Port, inputs: list[tuple[str, Path]], tmp: Path, env: Env):
    """The output paths of one kind for this case (several for some kinds, none where there is none)."""
    if kind == "an input":
        return list(dict.fromkeys(path for _, path in inputs))
    if kind == "a file inside an input folder":
        found = []
        for _, path in inputs:
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
            found += files[:1]
        return list(dict.fromkeys(found))
    if kind == "a folder holding an input":
        return [tmp / "in"] if inputs else []
    if kind == "an unrelated file":
        path = tmp / "user" / "report.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"my report")
        return [path]
    if kind == "an unrelated folder with files":
        return [_write_tree(tmp / "user-folder", PLAIN_FILES)]
    if kind == "a folder holding names the command writes":
        return [_write_tree(tmp / "user-names", _names_commands_write())]
    found = []
    for other, path in env.previous.items():
        if other != command:
            target = tmp / "previous" / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                shutil.copytree(path, target)
            else:
                shutil.copy(path, target)
                shutil.copy(manifest_path(path), manifest_path(target))
            found.append(target)
    return found


def _argv(words, example, samples: dict[str, Path]) -> list[str]:
    argv = list(words)
    for item in example:
        if item.startswith("{") and item.endswith("}"):
            role = item[1:-1]
            assert role in samples, f"no sample input for role {role!r}: add one to SAMPLES"
            argv.append(str(samples[role]))
        else:
            argv.append(item)
    return argv


@pytest.mark.parametrize(("command", "example", "option", "kind", "flags"), CASES)
def test_no_command_destroys_a_file_it_did_not_write(
    command, example, option, kind, flags, env, tmp_path, run_cli, monkeypatch
):
    words, sub, spec = COMMANDS[command]
    spec: Spec
    monkeypatch.setenv("LLM_EMBEDDER_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    try:  # a server that should never start must not block the test
        import llm_embedder.serving.server as server

        def no_server(*args, **kwargs):
            raise AssertionError("serve started with an output path it should have refused")

        monkeypatch.setattr(server, "serve_model", no_server)
    except ImportError:
        pass
    roles = [item[1:-1] for item in spec.examples[example] if item.startswith("{") and item.endswith("}")]
    (tmp_path / "in").mkdir()
    samples = {}
    for role in dict.fromkeys(roles):
        assert role in SAMPLES, f"no sample input for role {role!r}: add one to SAMPLES"
        samples[role] = SAMPLES[role](tmp_path / "in", env)
    base = _argv(words, spec.examples[example], samples)
    port = next((p for p in spec.outputs if p.option == option), None)
    if port is None:  # a command without outputs: it writes nothing at all
        before = _snapshot(tmp_path)
        code, err = run_cli(*base)
        assert code in (0, 2), err
        assert _snapshot(tmp_path) == before
        return
    # the inputs as the command sees them (the files a recipe names included)
    parsed = PARSER.parse_args([*base, *port.argv(tmp_path / "probe")])
    inputs = inputs_of(spec, parsed)
    candidates = _candidates(kind, command, port, inputs, tmp_path, env)
    for target in candidates:
        before = _snapshot(tmp_path)
        code, err = run_cli(*base, *port.argv(target), *flags)
        after = _snapshot(tmp_path)
        assert code in (0, 2), (target, err)  # never the catch-all
        if code == 2:
            assert len(err) == 1 and err[0].startswith("llm-embedder: error:"), err
        if kind in TOUCHES_AN_INPUT:
            assert code == 2, f"{command} {option} {target} ({kind}) was accepted"
        replaced = set()
        if "--overwrite" in flags and port.kind == FILE and target.is_file():
            replaced = {target, manifest_path(target)}  # the user asked for this very file to be replaced
        changed = sorted(str(p) for p, digest in before.items() if p not in replaced and after.get(p) != digest)
        assert not changed, (f"{command} {option}={target} ({kind}, {flags}) changed or removed", changed, err)
        if code == 2:
            assert set(after) == set(before), ("a refused command left files", sorted(set(after) - set(before)))


def test_every_command_is_covered():
    """The grid above is built from the parser: each command, each output, each example."""
    names = set(COMMANDS)
    assert {"encode", "index build", "search", "mine", "score", "train", "eval", "merge", "run", "demo"} <= names
    covered = {case.values[0] for case in CASES}
    assert covered == names
    for _, _, spec in COMMANDS.values():
        for example in spec.examples:
            for item in example:
                if item.startswith("{"):
                    assert item[1:-1] in SAMPLES, item


def test_members_match_what_the_commands_write():
    from llm_embedder.commands import index, train
    from llm_embedder.training import trainer

    assert set(train.TRAIN_MEMBERS) == {trainer.CHECKPOINT_DIR, trainer.MODEL_DIR, trainer.LOG_FILE}
    assert json.loads(json.dumps(index.INDEX_MEMBERS))
