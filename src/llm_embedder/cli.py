"""The ``llm-embedder`` command.  Thin by design: it parses arguments and calls the library."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from textwrap import shorten

from llm_embedder.commands import adapt as adapt_command
from llm_embedder.errors import InputError
from llm_embedder.outputs import FILE, FOLDER, WHOLE, Port, Spec

log = logging.getLogger("llm_embedder")


class _Parser(argparse.ArgumentParser):
    """Usage errors on one line, naming the option, like every other error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"llm-embedder: error: {message} (see `{self.prog} --help`)\n")


def _number(kind: type = int, low: float | None = None, high: float | None = None):
    """The one check of every numeric option: its type and range, the option named in the message."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"expected at least {low:g}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"expected at most {high:g}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


COUNT = _number(int, 1)
"""A positive integer: batch sizes, -k, limits, --ef-search, --nprobe, token budgets ..."""
SEED = _number(int, 0, 2**32 - 1)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="zoo name (minilm), local folder or hub id; default: minilm")
    p.add_argument(
        "--instructions", default=None, help="instruction set: llm-embedder, none, bge, e5 (default: the model's own)"
    )
    p.add_argument("--tasks-file", default=None, help="YAML file adding or overriding tasks")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: auto)")
    p.add_argument(
        "--backend",
        choices=("auto", "torch", "onnx"),
        default="auto",
        help="torch, or onnx (onnxruntime, CPU; pip install llm-embedder[onnx]); auto: what is fastest within "
        "tolerance on this machine (see README, encoding speed)",
    )
    p.add_argument(
        "--dtype", default=None, help="torch: float32, bfloat16, float16; onnx: float32, int8 (default: auto)"
    )
    p.add_argument("--batch-size", type=COUNT, default=64)


def _load_embedder(args: argparse.Namespace):
    from llm_embedder.models.embedder import Embedder

    return Embedder.from_pretrained(
        args.model,
        device=args.device,
        dtype=args.dtype,
        tasks=args.tasks_file,
        instructions=args.instructions,
        batch_size=args.batch_size,
        backend=args.backend,
    )


def _model_reference(name: str | None) -> str:
    """How an index remembers its model: a folder by its absolute path, a name as given."""
    from llm_embedder.models.zoo import DEFAULT_ENCODER

    if name and Path(name).is_dir():
        return str(Path(name).resolve())
    return name or DEFAULT_ENCODER


def _claim(args: argparse.Namespace, path: str, command: str, inputs: dict, settings: dict | None = None, **kw):
    """The output rules of :mod:`llm_embedder.outputs`, with the command's ``--overwrite``."""
    from llm_embedder.outputs import claim

    if settings is None:
        settings = {k: v for k, v in vars(args).items() if k not in ("func", "io") and not k.startswith("_")}
    return claim(path, command, inputs=inputs, settings=settings, overwrite=getattr(args, "overwrite", False), **kw)


def _add_overwrite(p: argparse.ArgumentParser, restart: bool = False) -> None:
    p.add_argument("--overwrite", action="store_true", help="replace an existing output this command did not write")
    if restart:
        p.add_argument("--restart", action="store_true", help="start over when the earlier run used other settings")


def _progress(args: argparse.Namespace) -> bool | None:
    return False if args.quiet else None


# ---------------------------------------------------------------------------- encode
def cmd_encode(args: argparse.Namespace) -> int:
    import numpy as np

    from llm_embedder.fileio import atomic_path, iter_jsonl

    texts = []
    for number, record in iter_jsonl(args.input):
        if args.field not in record:
            raise InputError(args.input, number, args.field, "missing")
        value = record[args.field]
        if not isinstance(value, str):
            raise InputError(args.input, number, args.field, f"expected a string, got {type(value).__name__}")
        texts.append(value)
    output = _claim(args, args.out, "encode", {"input": args.input})
    embedder = _load_embedder(args)
    encode = embedder.encode_queries if args.side == "query" else embedder.encode_keys
    vectors = encode(texts, task=args.task, show_progress=_progress(args))
    output.seal()
    with atomic_path(args.out) as tmp, tmp.open("wb") as handle:
        np.save(handle, vectors)
    print(f"wrote {vectors.shape[0]} x {vectors.shape[1]} float32 embeddings to {args.out}")
    return 0


# ---------------------------------------------------------------------------- index build
def cmd_index_build(args: argparse.Namespace) -> int:
    from llm_embedder.retrieval.corpus import Corpus
    from llm_embedder.retrieval.searcher import Searcher

    output = _claim(args, args.out, "index build", {"corpus": args.corpus}, is_dir=True, recognise=_is_index)
    if args.method == "dense":
        return _index_build_dense(args, output)
    corpus = Corpus.from_jsonl(args.corpus, key_template=args.key_template, id_field=args.id_field)
    searcher = Searcher.build(corpus, args.method, task=args.task, show_progress=_progress(args))
    searcher.save(args.out)
    output.seal()
    print(f"indexed {len(corpus)} documents ({args.method}, task {args.task}) into {args.out}")
    return 0


def _index_build_dense(args: argparse.Namespace, output) -> int:
    """Streamed, sharded and resumable; under torchrun the ranks share the shards (retrieval/build.py)."""
    from llm_embedder.retrieval.build import BuildSettings, build_dense_index

    args.device = _init_distributed(args.device)
    search_params = {k: v for k, v in (("nprobe", args.nprobe), ("efSearch", args.ef_search)) if v is not None}
    settings = BuildSettings(
        task=args.task,
        factory=args.factory,
        key_template=args.key_template,
        id_field=args.id_field,
        shard_size=args.shard_size,
        train_size=args.train_size,
        search_params=search_params,
    )
    embedder = _load_embedder(args)
    count = build_dense_index(
        args.corpus, args.out, embedder, settings, model=_model_reference(args.model), show_progress=_progress(args)
    )
    if count:  # rank 0
        output.seal()
        print(
            f"indexed {count} documents (dense, task {args.task}, {embedder.backend} {embedder.encoding_dtype}) "
            f"into {args.out}"
        )
    return 0


# ---------------------------------------------------------------------------- search
def cmd_search(args: argparse.Namespace) -> int:
    from llm_embedder.fileio import atomic_path, iter_jsonl
    from llm_embedder.retrieval.searcher import Searcher

    Searcher.read_meta(args.index)  # fail fast on a wrong folder, before reading queries
    if (args.query is None) == (args.queries is None):
        raise ValueError("give either --query TEXT or --queries FILE")
    if args.query is not None:
        records = [{args.field: args.query}]
    else:
        records = []
        for number, record in iter_jsonl(args.queries):
            if not isinstance(record.get(args.field), str):
                raise InputError(args.queries, number, args.field, "missing or not a string")
            records.append(record)
    options = {"device": args.device, "dtype": args.dtype, "batch_size": args.batch_size, "backend": args.backend}
    if args.instructions is not None:
        options["instructions"] = args.instructions
    if args.tasks_file is not None:
        options["tasks"] = args.tasks_file
    search_params = {k: v for k, v in (("nprobe", args.nprobe), ("efSearch", args.ef_search)) if v is not None}
    searcher = Searcher.load(args.index, model=args.model, mmap=args.mmap, search_params=search_params, **options)
    if args.task:
        if searcher.embedder is not None:
            searcher.embedder.tasks.get_task(args.task)
        searcher.task = args.task
    output = _claim(args, args.out, "search", {"queries": args.queries, "index": args.index}) if args.out else None
    hits = searcher.search([r[args.field] for r in records], k=args.k, show_progress=_progress(args))
    if output is not None:
        output.seal()
        with atomic_path(args.out) as tmp, tmp.open("w", encoding="utf-8") as out:
            for record, row in zip(records, hits, strict=True):
                result = {**record, "hits": [{"id": h.id, "score": h.score, "text": h.text} for h in row]}
                out.write(json.dumps(result, ensure_ascii=False) + "\n")
        print(f"wrote the top {args.k} hits of {len(records)} queries to {args.out}")
    else:
        for record, row in zip(records, hits, strict=True):
            print(f"query: {shorten(record[args.field], 100, placeholder='…')}")
            for rank, h in enumerate(row, start=1):
                print(f"  {rank:>2}. [{h.id}] {h.score:.4f}  {shorten(h.text, 90, placeholder='…')}")
    return 0


# ---------------------------------------------------------------------------- mine and score
def cmd_mine(args: argparse.Namespace) -> int:
    from llm_embedder.retrieval.corpus import Corpus
    from llm_embedder.retrieval.searcher import Searcher
    from llm_embedder.rewards.mine import MineSettings, mine_file, parse_rank_range, teacher_guard_file

    if args.teacher_guard:
        _claim(args, args.out, "mine", {"queries": args.queries}).seal()
        n, dropped = teacher_guard_file(args.queries, args.out)
        print(f"teacher guard: dropped {dropped} negatives scored at least as high as the positive ({n} records)")
        return 0
    if args.corpus is None:
        raise ValueError("mine: --corpus is required (except with --teacher-guard)")
    start, end = parse_rank_range(args.range)
    settings = MineSettings(start, end, args.count, args.seed, args.filter_answers, guard_margin=args.guard_margin)
    output = _claim(args, args.out, "mine", {"queries": args.queries, "corpus": args.corpus})
    corpus = Corpus.from_jsonl(args.corpus, key_template=args.key_template, id_field=args.id_field)
    embedder = _load_embedder(args) if args.method == "dense" or args.guard_margin is not None else None
    if embedder is not None:
        embedder.tasks.get_task(args.task)
    searcher = Searcher.build(
        corpus,
        args.method,
        task=args.task,
        embedder=embedder if args.method == "dense" else None,
        show_progress=_progress(args),
    )
    output.seal()
    n = mine_file(
        searcher,
        args.queries,
        args.out,
        settings,
        show_progress=_progress(args),
        guard_embedder=embedder,
        task=args.task,
    )
    print(f"mined negatives (ranks {start}-{end}, {args.count} each) for {n} queries into {args.out}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from llm_embedder.models.lm import CausalLM
    from llm_embedder.rewards.score import ScoreSettings, default_scoring_dtype, score_file
    from llm_embedder.tasks import DEFAULT_TASKS, TaskTable

    device = _init_distributed(args.device)
    tasks = TaskTable.from_yaml(args.tasks_file) if args.tasks_file else DEFAULT_TASKS
    settings = ScoreSettings(
        max_key_tokens=args.max_key_tokens,
        aggregate=args.aggregate,
        token_budget=args.token_budget,
        chunk_records=args.chunk_records,
    )
    lm = CausalLM.from_pretrained(args.lm, device=device, dtype=args.dtype or default_scoring_dtype(device))
    n = score_file(
        lm,
        args.input,
        args.output,
        tasks=tasks,
        settings=settings,
        show_progress=not args.quiet,
        overwrite=args.overwrite,
        restart=args.restart,
    )
    print(f"scored {n} records into {args.output}" if n else f"{args.output} is complete and current; nothing to do")
    return 0


def _init_distributed(device: str) -> str:
    """Join the process group torchrun describes (if any); each rank gets its own GPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    import torch
    import torch.distributed as dist

    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if use_cuda else "cpu"


# ---------------------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> int:
    from llm_embedder.training.trainer import train

    config = _recipe_config(args)
    output = _claim(args, config.output_dir, "train", {}, settings={}, is_dir=True, recognise=_is_training_output)
    output.seal()
    train(config, show_progress=not args.quiet, restart=args.restart)
    return 0


# ---------------------------------------------------------------------------- eval
def cmd_eval(args: argparse.Namespace) -> int:
    from llm_embedder.evaluation.harness import build_evaluators, run_grid

    missing = [flag for flag in ("--data", "--retriever", "--out") if not getattr(args, flag[2:])]
    if missing:  # optional for argparse only because `eval compare` has none of them
        raise ValueError(f"eval needs {', '.join(missing)} (or: eval compare RESULTS_DIR --rows A,B)")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    evaluators = build_evaluators(args.data, tasks, limit=args.limit)
    output = _claim(args, args.out, "eval", {}, settings={}, is_dir=True, recognise=_is_results)
    output.seal()
    board = run_grid(
        evaluators,
        args.retriever,
        args.out,
        lm_name=args.lm,
        lm_dtype=args.lm_dtype,
        device=args.device,
        show_progress=not args.quiet,
        reference=args.reference,
    )
    print((Path(args.out) / "leaderboard.md").read_text(encoding="utf-8"), end="")
    print(f"leaderboard: {args.out}/leaderboard.{{md,json,png}} ({len(board['rows'])} retrievers)")
    return 0


# ---------------------------------------------------------------------------- merge
def cmd_merge(args: argparse.Namespace) -> int:
    from llm_embedder.models.merge import MergeError, merge_models, parse_weights

    if len(args.model) < 2:
        raise MergeError("give at least two --model (the fine-tuned one first)")
    if (args.weights is None) == (args.auto_weights is None):
        raise MergeError("give either --weights W1,W2,... or --auto-weights DEV_DIR")
    if not 1 <= args.tasks_from <= len(args.model):
        raise MergeError(f"--tasks-from {args.tasks_from}: expected a model position from 1 to {len(args.model)}")
    # written as a whole folder: recognised by its merge.json, no manifest of its own
    _claim(args, args.out, "merge", {}, settings={}, is_dir=True, whole=True, recognise=_is_merge_output)
    options = {"tasks_from": args.tasks_from - 1, "overwrite": args.overwrite, "device": args.device}
    if args.auto_weights is None:
        record = merge_models(args.model, parse_weights(args.weights), args.out, **options)
    else:
        from llm_embedder.evaluation.merge_weights import CRITERION, auto_merge, parse_grid

        grid = parse_grid(args.grid)
        record, choice = auto_merge(
            args.model, args.auto_weights, args.out, grid, limit=args.limit, show_progress=not args.quiet, **options
        )
        print(choice.table())
        print(f"criterion: {CRITERION}")
    shares = ", ".join(f"{m['model']} {m['weight']:.4g}" for m in record["models"])
    print(f"merged {shares} into {args.out} (task table of {record['tasks_from']}; see merge.json)")
    return 0


def cmd_eval_compare(args: argparse.Namespace) -> int:
    from llm_embedder.evaluation.harness import compare_rows, format_comparison

    rows = [r.strip() for r in args.rows.split(",")]
    if len(rows) != 2 or not all(rows):
        raise ValueError(f"--rows takes two row names separated by a comma, got {args.rows!r}")
    print(format_comparison(compare_rows(args.results_dir, *rows), *rows))
    return 0


# ---------------------------------------------------------------------------- run (the main job)
def cmd_run(args: argparse.Namespace) -> int:
    from llm_embedder.pipeline import Pipeline

    config = _pipeline_config(args)
    _claim(args, config.work_dir, "run", {}, settings={}, is_dir=True).seal()
    ablate = tuple(a.strip() for a in args.ablate.split(",") if a.strip()) if args.ablate else ()
    pipeline = Pipeline(config, ablate=ablate, show_progress=not args.quiet)
    pipeline.run_selection() if args.select else pipeline.run()
    return 0


# ---------------------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    from llm_embedder.demo import run_retrieval_demo

    if args.out:
        _claim(args, args.out, "demo", {"data": args.data}).seal()
    run_retrieval_demo(Path(args.data), model=args.model, k=args.k, out=Path(args.out) if args.out else None)
    return 0


# ---------------------------------------------------------------------------- data
def cmd_data_build_demo(args: argparse.Namespace) -> int:
    from llm_embedder.data.demo import build_demo

    _claim(args, args.out, "data build-demo", {}, settings={}, is_dir=True, whole=True)
    manifest = build_demo(args.out, seed=args.seed, size=args.size, progress=not args.quiet)
    shown = ("train", "dev", "test", "ood-dev", "ood-test", "corpus")
    for task, counts in manifest["tasks"].items():
        print(f"{task:>10}: " + ", ".join(f"{k} {counts[k]}" for k in shown if k in counts))
    print(f"demo data in {args.out} (see SOURCES.md and manifest.json)")
    return 0


# ---------------------------------------------------------------------------- serve
def cmd_serve(args: argparse.Namespace) -> int:
    from llm_embedder.serving.app import ServeSettings
    from llm_embedder.serving.collections import Collections
    from llm_embedder.serving.server import model_names, read_api_keys, serve_model, set_threads
    from llm_embedder.serving.stores import open_store

    store = open_store(args.store, args.data_dir) if args.data_dir or args.store else None
    settings = ServeSettings(
        served_name=args.served_name,
        model=_model_reference(args.model),
        model_names=model_names(args.model),
        access_log=args.access_log,
    )
    settings.api_keys = read_api_keys(args.api_key_file)
    threads, tokenizer_workers = set_threads(args.threads, args.tokenizer_workers)  # before the model loads
    embedder = _load_embedder(args)
    print(
        f"serving {settings.model} as {args.served_name!r} on http://{args.host}:{args.port} (docs at /docs); "
        f"{embedder.backend} {embedder.encoding_dtype}, {threads} model threads, {tokenizer_workers} tokenizers"
    )
    serve_model(
        embedder,
        host=args.host,
        port=args.port,
        settings=settings,
        max_batch_tokens=args.max_batch_tokens,
        max_queue_inputs=args.max_queue,
        tokenizer_workers=tokenizer_workers,
        collections_factory=(lambda engine: Collections(store, engine)) if store else None,
    )
    return 0


def cmd_collections_reembed(args: argparse.Namespace) -> int:
    from llm_embedder.serving.reembed import reembed

    embedder = _load_embedder(args)
    summary = reembed(args.data_dir, embedder, model_name=_model_reference(args.model), progress=_progress(args))
    print(summary)
    return 0


# ---------------------------------------------------------------------------- what each command reads and writes
# Every command declares its path options here; `main` checks every output against every input (and
# against what is on disk) before the command runs, and a write elsewhere is an error (outputs.py).
INDEX_MEMBERS = ("CURRENT", "searcher.json", "corpus.jsonl", "faiss.index", "bm25")
TRAIN_MEMBERS = ("checkpoints", "model", "train_log.jsonl")  # training.trainer: CHECKPOINT_DIR, MODEL_DIR, LOG_FILE
EVAL_MEMBERS = ("cells", "details", "cache", "leaderboard.md", "leaderboard.json", "leaderboard.png", "versions.json")
SERVE_MEMBERS = ("collections.sqlite3", "collections.sqlite3-wal", "collections.sqlite3-shm", "collection", "meta.json")


def _recipe_config(args: argparse.Namespace):
    """``train``'s recipe with its overrides (read once)."""
    if getattr(args, "_recipe", None) is None:
        from llm_embedder.training.config import TrainConfig

        overrides = list(args.set) + ([f"output_dir={args.output_dir}"] if args.output_dir else [])
        args._recipe = TrainConfig.from_yaml(args.config, overrides)
    return args._recipe


def _recipe_inputs(args: argparse.Namespace, path: Path):
    """The files a training recipe names: its datasets and a base model folder."""
    from llm_embedder.outputs import path_of

    config = _recipe_config(args)
    for i, spec in enumerate(config.datasets):
        yield f"dataset {i + 1} of the recipe", Path(spec.path)
    model = path_of(config.model)
    if model is not None:
        yield "model of the recipe", model


def _pipeline_config(args: argparse.Namespace):
    """``run``'s pipeline file with ``--quick`` and ``--set`` applied (read once)."""
    if getattr(args, "_pipeline", None) is None:
        from llm_embedder.pipeline import PipelineConfig

        args._pipeline = PipelineConfig.from_yaml(args.config, quick=args.quick, overrides=args.set)
    return args._pipeline


def _pipeline_inputs(args: argparse.Namespace, path: Path):
    """Every setting of a pipeline file that names an existing file or folder (a model, the user's data)."""
    import dataclasses

    from llm_embedder.outputs import path_of

    def walk(value, key):
        if isinstance(value, dict):
            for k, v in value.items():
                yield from walk(v, f"{key}.{k}")
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                yield from walk(v, f"{key}[{i}]")
        elif isinstance(value, str) and (found := path_of(value)) is not None:
            yield f"{key.lstrip('.')} of the pipeline file", found

    settings = dataclasses.asdict(_pipeline_config(args))
    settings.pop("work_dir", None)
    yield from walk(settings, "")


# Outputs from before manifests, told by files only these commands write (never by a name alone:
# a user's folder may well hold a `checkpoints/` or a `searcher.json`).
def _json(file: Path) -> dict:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _is_training_output(path: Path) -> bool:
    if "recipe" in _json(path / "model" / "training.json"):
        return True
    return any("recipe" in _json(state) for state in path.glob("checkpoints/step-*/trainer_state.json"))


def _is_pipeline_work(path: Path) -> bool:
    return "builder" in _json(path / ".data-stage.json")


def _is_merge_output(path: Path) -> bool:
    from llm_embedder.models.merge import is_merge_output

    return is_merge_output(path)


def _is_demo_build(path: Path) -> bool:
    return _json(path / "manifest.json").get("kind") == "llm-embedder-demo-data"


def _is_index(path: Path) -> bool:
    from llm_embedder import versioned

    try:
        live = versioned.current(path)
    except (OSError, ValueError):
        return False
    return _json((live or path) / "searcher.json").get("method") in ("dense", "bm25")


def _is_results(path: Path) -> bool:
    return any({"evaluator", "key"} <= set(_json(cell)) for cell in path.glob("cells/*.json"))


def _is_store(path: Path) -> bool:
    try:
        with (path / SERVE_MEMBERS[0]).open("rb") as handle:
            return handle.read(16) == b"SQLite format 3\x00"
    except OSError:
        return (path / "collection").is_dir() and (path / "meta.json").is_file()


_MODEL = Port("--model", "encoder")
_TASKS = Port("--tasks-file", "tasks-file")
ENCODE = Spec(
    "encode",
    (Port("--input", "records"), _MODEL, _TASKS, Port("--out", "npy", FILE)),
    (("--input", "{records}", "--task", "qa", "--model", "{encoder}", "--device", "cpu"),),
)
INDEX_BUILD = Spec(
    "index build",
    (Port("--corpus", "corpus"), _MODEL, _TASKS, Port("--out", "index", FOLDER, INDEX_MEMBERS, _is_index)),
    (("--corpus", "{corpus}", "--method", "bm25"),),
)
SEARCH = Spec(
    "search",
    (Port("--index", "index"), Port("--queries", "records"), _MODEL, _TASKS, Port("--out", "hits", FILE)),
    (("--index", "{index}", "--queries", "{records}"),),
)
MINE = Spec(
    "mine",
    (Port("--queries", "records"), Port("--corpus", "corpus"), _MODEL, _TASKS, Port("--out", "records", FILE)),
    (
        ("--queries", "{records}", "--corpus", "{corpus}", "--range", "0:3"),
        ("--queries", "{records}", "--teacher-guard"),
    ),
)
SCORE = Spec(
    "score",
    (Port("--input", "records"), Port("--lm", "lm"), _TASKS, Port("--output", "records", FILE)),
    (("--input", "{records}", "--lm", "{lm}", "--device", "cpu"),),
)
TRAIN = Spec(
    "train",
    (
        Port("--config", "recipe", inside=_recipe_inputs),
        Port(
            "--output-dir",
            "model",
            FOLDER,
            TRAIN_MEMBERS,
            _is_training_output,
            paths=lambda args: [_recipe_config(args).output_dir],
        ),
    ),
    (("--config", "{recipe}"),),
)
EVAL = Spec(
    "eval",
    (
        Port("--data", "eval-data"),
        Port("--retriever", "retriever"),
        Port("--lm", "lm"),
        Port("--out", "results", FOLDER, EVAL_MEMBERS, _is_results),
    ),
    (("--data", "{eval-data}", "--tasks", "tool", "--retriever", "bm25"),),
)
EVAL_COMPARE = Spec("eval compare", (Port("results_dir", "results"),), (("{results}", "--rows", "bm25,none"),))
MERGE = Spec(
    "merge",
    (
        Port("--model", "encoder"),
        Port("--auto-weights", "eval-data"),
        Port("--out", "model", WHOLE, (), _is_merge_output),
    ),
    (("--model", "{encoder}", "--model", "{encoder}", "--weights", "0.5,0.5"),),
)
DATA_BUILD_DEMO = Spec("data build-demo", (Port("--out", "data", WHOLE, (), _is_demo_build),), (("--size", "quick"),))
RUN = Spec(
    "run",
    (
        Port("config", "pipeline", inside=_pipeline_inputs),
        Port(
            "work_dir",
            "work",
            FOLDER,
            (),
            _is_pipeline_work,
            paths=lambda args: [_pipeline_config(args).work_dir],
            setting="work_dir",
        ),
    ),
    (("{pipeline}",),),
)
SERVE = Spec(
    "serve",
    (_MODEL, _TASKS, Port("--api-key-file", "keys"), Port("--data-dir", "store", FOLDER, SERVE_MEMBERS, _is_store)),
    (("--model", "{encoder}", "--device", "cpu"),),
    seal=True,
)
COLLECTIONS_REEMBED = Spec(
    "collections reembed",
    (_MODEL, _TASKS, Port("--data-dir", "store", FOLDER, SERVE_MEMBERS, _is_store)),
    (("--model", "{encoder}", "--device", "cpu"),),
)
DEMO = Spec(
    "demo",
    (Port("--data", "task-files"), _MODEL, Port("--out", "figures", FILE)),
    (("--data", "{task-files}", "--model", "{encoder}"),),
)


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from llm_embedder import __version__
    from llm_embedder.tasks import DEFAULT_TASKS

    tasks = ", ".join(DEFAULT_TASKS)
    parser = _Parser(
        prog="llm-embedder",
        description="Train, evaluate and serve one embedding model for every retrieval need of an LLM.",
    )
    parser.add_argument("--version", action="version", version=f"llm-embedder {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="show library log messages")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("encode", help="embed the texts of a JSON-lines file into a .npy array")
    p.add_argument("--input", required=True, help="JSON-lines file")
    p.add_argument("--field", default="query", help="the text field of each line (default: query)")
    p.add_argument("--task", required=True, help=f"task whose instruction and length apply ({tasks})")
    p.add_argument("--side", choices=("query", "key"), default="query", help="encode as queries or as keys")
    p.add_argument("--out", required=True, help="output .npy file")
    _add_model_args(p)
    _add_overwrite(p)
    p.set_defaults(func=cmd_encode, io=ENCODE)

    index = sub.add_parser("index", help="build search indexes").add_subparsers(dest="index_command", required=True)
    p = index.add_parser("build", help="index a JSON-lines corpus (dense on faiss, or BM25)")
    p.add_argument("--corpus", required=True, help="JSON-lines corpus; a document's id is its row number")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--method", choices=("dense", "bm25"), default="dense")
    p.add_argument("--task", default="qa", help=f"task whose key instruction applies ({tasks}); default qa")
    p.add_argument("--key-template", default="{text}", help="how a row becomes text, e.g. '{title} {text}'")
    p.add_argument("--id-field", default=None, help="integer id field (default: row number)")
    p.add_argument(
        "--factory",
        default="Flat",
        help="faiss index_factory string, or a preset sized to the corpus: ivf, ivf-sq8, ivf-pq, hnsw, sq8, pq "
        "(default: Flat, exact)",
    )
    p.add_argument("--train-size", type=COUNT, default=100_000, help="vectors sampled to train IVF/PQ/SQ (default 1e5)")
    p.add_argument("--shard-size", type=COUNT, default=50_000, help="documents per shard; a rerun resumes by shard")
    p.add_argument("--nprobe", type=COUNT, default=None, help="IVF lists searched (saved with the index)")
    p.add_argument("--ef-search", type=COUNT, default=None, help="HNSW search breadth (saved with the index)")
    _add_model_args(p)
    _add_overwrite(p)
    p.set_defaults(func=cmd_index_build, io=INDEX_BUILD)

    p = sub.add_parser("search", help="search an index with a query string or a file of queries")
    p.add_argument("--index", required=True, help="folder written by `index build`")
    p.add_argument("--query", default=None, help="one query string")
    p.add_argument("--queries", default=None, help="JSON-lines file of queries")
    p.add_argument("--field", default="query", help="query field in --queries (default: query)")
    p.add_argument("--task", default=None, help="task of the queries (default: the index's task)")
    p.add_argument("-k", "--k", type=COUNT, default=10, help="hits per query (default 10)")
    p.add_argument("--out", default=None, help="write hits as JSON lines instead of printing them")
    p.add_argument("--mmap", action="store_true", help="map the index from disk instead of reading it into memory")
    p.add_argument("--nprobe", type=COUNT, default=None, help="IVF lists searched (default: as saved)")
    p.add_argument("--ef-search", type=COUNT, default=None, help="HNSW search breadth (default: as saved)")
    _add_model_args(p)
    _add_overwrite(p)
    p.set_defaults(func=cmd_search, io=SEARCH)

    p = sub.add_parser("mine", help="mine hard negatives for training queries (BM25 or dense)")
    p.add_argument("--queries", required=True, help="JSON-lines records with query (and pos / pos_index to exclude)")
    p.add_argument("--corpus", default=None, help="JSON-lines corpus; a document's id is its row number (required)")
    p.add_argument("--out", required=True, help="output: the records with neg and neg_index filled in")
    p.add_argument("--method", choices=("dense", "bm25"), default="bm25")
    p.add_argument("--task", default="qa", help=f"task whose instructions apply ({tasks}); default qa")
    p.add_argument("--key-template", default="{text}", help="how a corpus row becomes text")
    p.add_argument("--id-field", default=None, help="integer id field (default: row number)")
    p.add_argument("--range", default="10:100", help="ranks to sample negatives from, START:END (default 10:100)")
    p.add_argument("--count", type=COUNT, default=16, help="negatives per query (default 16)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--filter-answers", action="store_true", help="also drop hits that contain an answer")
    p.add_argument(
        "--guard-margin",
        type=_number(float, -2, 2),
        default=None,
        help="false-negative guard: drop hits the --model encoder scores >= the best positive + MARGIN (default off)",
    )
    p.add_argument(
        "--teacher-guard",
        action="store_true",
        help="instead of mining: copy the scored --queries file to --out less the negatives whose teacher score "
        "is at least the best positive's",
    )
    _add_model_args(p)
    _add_overwrite(p)
    p.set_defaults(func=cmd_mine, io=MINE)

    p = sub.add_parser(
        "score",
        help="score candidates with a causal LM (teacher_scores); resumable; torchrun shards it",
        description="Reward = mean log-likelihood per token of the answers given each candidate. "
        "Many processes: torchrun --nproc_per_node N -m llm_embedder.cli score ...",
    )
    p.add_argument("--lm", default=None, help="causal LM: zoo name, folder, hub id or .gguf (default smollm2-135m)")
    p.add_argument("--input", required=True, help="JSON-lines records with query, task, answers and candidates")
    p.add_argument("--output", required=True, help="output records with teacher_scores; rerun to resume")
    p.add_argument("--aggregate", choices=("mean", "max"), default="mean", help="combine several answers' rewards")
    p.add_argument("--max-key-tokens", type=COUNT, default=512, help="cut candidates to this many LLM tokens")
    p.add_argument("--token-budget", type=COUNT, default=16384, help="padded tokens per forward pass")
    p.add_argument("--chunk-records", type=COUNT, default=64, help="records written (and redone after a kill) at once")
    p.add_argument("--tasks-file", default=None, help="YAML file adding or overriding tasks (templates)")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--dtype",
        default=None,
        help="float32 (CPU default: bf16 rewards changed top-1 on 1 query in 8), bfloat16 (GPU default), float16",
    )
    _add_overwrite(p, restart=True)
    p.set_defaults(func=cmd_score, io=SCORE)

    p = sub.add_parser(
        "train",
        help="train an embedder from a recipe (one process, or many with torchrun)",
        description="Train from a YAML recipe. Many processes: torchrun --nproc_per_node N -m llm_embedder.cli train",
    )
    p.add_argument("--config", required=True, help="recipe YAML, e.g. recipes/toy-cpu.yaml")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting, e.g. max_steps=100"
    )
    p.add_argument("--output-dir", default=None, help="override output_dir")
    _add_overwrite(p, restart=True)
    p.set_defaults(func=cmd_train, io=TRAIN)

    from llm_embedder.evaluation import harness

    p = sub.add_parser(
        "eval",
        help="evaluate retrievers by what they do for an LLM; writes a leaderboard",
        description=harness.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", help="folder in the released evaluation layout (below); required")
    p.add_argument("--tasks", default="qa,icl,chat,lrlm,tool,convsearch", help="comma-separated tasks")
    p.add_argument(
        "--retriever",
        action="append",
        help="none, random, recency, bm25 or dense:<model>, optionally LABEL=SPEC; repeat the flag for a grid",
    )
    p.add_argument("--lm", default=None, help="causal LM (default smollm2-135m)")
    p.add_argument("--lm-dtype", default=None, help="float32 (CPU default), bfloat16 (GPU default), float16")
    p.add_argument("--out", help="output folder; rerun to resume; required")
    p.add_argument("--limit", type=COUNT, default=None, help="evaluate at most N examples per file")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--reference", default=None, help="row the others are tested against (▲/▼/=); default: base, if present"
    )
    _add_overwrite(p)
    p.set_defaults(func=cmd_eval, io=EVAL)
    compare = p.add_subparsers(dest="eval_command", metavar="compare")
    p = compare.add_parser(
        "compare",
        help="paired comparison of two rows of a results folder, every column",
        description="For each column: both numbers, the difference A - B with its paired bootstrap interval, "
        "the paired permutation test's p-value, the p-value after Holm's correction over the columns compared, "
        "and the verdict for A (from the corrected p-value).",
    )
    p.add_argument("results_dir", metavar="RESULTS_DIR", help="an `eval --out` folder (or a pipeline's eval/)")
    p.add_argument("--rows", required=True, metavar="A,B", help="two row labels (or retriever specs)")
    p.set_defaults(func=cmd_eval_compare, io=EVAL_COMPARE)

    p = sub.add_parser(
        "merge",
        help="average the weights of encoders (LM-Cocktail): a fine-tuned model with its base",
        description="Weighted average of the parameters of models of one architecture; the output is an "
        "Embedder folder with merge.json. Weights are non-negative and divided by their sum. With --auto-weights, "
        "the first model's weight is chosen on a grid by dev retrieval (no LLM): the mean over the dev folder's "
        "retrieval evaluators of each score divided by the second model's (the base); the other models share "
        "the rest equally; ties go to the smaller weight.",
    )
    p.add_argument(
        "--model", action="append", required=True, help="a model to merge; repeat it; the fine-tuned one first"
    )
    p.add_argument("--weights", default=None, help="one weight per model, comma-separated, e.g. 0.7,0.3")
    p.add_argument(
        "--auto-weights", default=None, metavar="DEV_DIR", help="choose the weights on dev data (eval layout)"
    )
    p.add_argument(
        "--grid",
        default=",".join(f"{i / 10:g}" for i in range(11)),
        help="fine-tuned weights tried by --auto-weights (default 0,0.1,...,1)",
    )
    p.add_argument("--limit", type=COUNT, default=None, help="--auto-weights: at most N dev queries per evaluator")
    p.add_argument(
        "--tasks-from",
        type=COUNT,
        default=1,
        help="position (1-based) of the model whose task table is kept; default 1",
    )
    p.add_argument("--out", required=True, help="output folder (written under a temporary name, then renamed)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="accepted for symmetry: an earlier merge output is replaced without it, and a folder merge did not "
        "write is never replaced (a model is written as a whole folder)",
    )
    p.add_argument("--device", default="cpu", help="where the models are loaded (and scored with --auto-weights)")
    p.set_defaults(func=cmd_merge, io=MERGE)

    data = sub.add_parser("data", help="build datasets").add_subparsers(dest="data_command", required=True)
    p = data.add_parser(
        "build-demo",
        help="build a small six-task dataset (train, eval, corpora) from real public text in pip packages",
        description="Sources: gensim's Wikipedia sample and test data, bfcl-eval, chitchat-dataset, chatterbot-corpus "
        "(pip install --no-deps -r requirements-demo.txt). Same seed, same bytes.",
    )
    p.add_argument("--out", required=True, help="output folder (replaced atomically if it holds an earlier build)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument(
        "--size", choices=("small", "quick"), default="small", help="small: ~150 train / ~48 test per task; quick: ~1/3"
    )
    p.set_defaults(func=cmd_data_build_demo, io=DATA_BUILD_DEMO)

    from llm_embedder.pipeline import ABLATIONS

    p = sub.add_parser(
        "run",
        help="the main job: build data, mine, score with the LLM, train, evaluate (cached, resumable)",
        description="Runs the pipeline of a YAML file (e.g. recipes/demo.yaml). Re-running skips finished stages.",
    )
    p.add_argument("config", help="pipeline YAML, e.g. recipes/demo.yaml")
    p.add_argument("--quick", action="store_true", help="apply the file's `quick` settings (a few minutes)")
    p.add_argument(
        "--ablate", default="", help=f"also train variants without: {', '.join(ABLATIONS)} (comma-separated)"
    )
    p.add_argument(
        "--select",
        action="store_true",
        help="model selection instead of the run: train the file's `select.variants`, score them on dev only",
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    p.set_defaults(func=cmd_run, io=RUN)

    p = sub.add_parser(
        "serve",
        help="serve embeddings over HTTP (OpenAI-compatible, per-request task and side)",
        description="POST /v1/embeddings with `task` and `input_type` (or model `<name>/<task>.<side>`); "
        "GET /v1/tasks, /info, /health, /ready, /metrics, /docs.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--served-name", default="llm-embedder", help="the `model` name clients send")
    p.add_argument("--data-dir", default=None, help="folder of the collections (enables /v1/collections, /v1/augment)")
    p.add_argument("--store", default=None, help="sqlite (default, in --data-dir), qdrant-local or qdrant://HOST:PORT")
    p.add_argument("--api-key-file", default=None, help="file of API keys, one a line (also: $LLM_EMBEDDER_API_KEYS)")
    p.add_argument("--max-batch-tokens", type=int, default=8192, help="padded tokens per forward pass")
    p.add_argument("--max-queue", type=int, default=8192, help="inputs waiting at most; beyond: 429")
    p.add_argument(
        "--threads", type=int, default=None, help="model threads (default: the cores less the tokenizers' share)"
    )
    p.add_argument(
        "--tokenizer-workers", type=int, default=None, help="inputs tokenised at once (default: a quarter of the cores)"
    )
    p.add_argument("--access-log", action="store_true", help="log one line per request")
    _add_model_args(p)
    p.set_defaults(func=cmd_serve, io=SERVE)

    adapt_command.register(sub)

    collections = sub.add_parser("collections", help="manage a serving data dir").add_subparsers(
        dest="collections_command", required=True
    )
    p = collections.add_parser(
        "reembed",
        help="re-embed every collection of a data dir with another model (switches only once all is done)",
        description="Embeds every stored record again with --model (and --backend/--dtype), then switches all "
        "collections at once; until then the data dir holds the old vectors. Resumable: a rerun embeds only what "
        "is missing. Runs beside a server on the data dir; the switch waits for it to stop.",
    )
    p.add_argument("--data-dir", required=True, help="the folder given to serve --data-dir (SQLite store)")
    _add_model_args(p)
    p.set_defaults(func=cmd_collections_reembed, io=COLLECTIONS_REEMBED)

    p = sub.add_parser("demo", help="index the toy records of each task and show what the embedder retrieves")
    p.add_argument("--data", default=str(_default_demo_data()), help="folder of released-format task files")
    p.add_argument("--model", default=None, help="encoder to demonstrate (default: minilm)")
    p.add_argument("-k", "--k", type=COUNT, default=3, help="hits shown per query")
    p.add_argument("--out", default=None, help="also write the per-task figures as JSON")
    _add_overwrite(p)
    p.set_defaults(func=cmd_demo, io=DEMO)
    return parser


def _default_demo_data() -> Path:
    return Path(os.environ.get("LLM_EMBEDDER_DEMO_DATA", "data/flagembedding-toy"))


def main(argv: Sequence[str] | None = None) -> int:
    from llm_embedder import outputs

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a usage error (one line, see _Parser), --help or --version
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    failed = True
    try:
        # Every output is checked against every input before the command reads or loads anything.
        spec = getattr(args, "io", None)
        if spec is None:
            raise RuntimeError(f"`llm-embedder {args.command}` declares no inputs and outputs (io=Spec): a bug")
        outputs.declare(spec, args)
        code = func(args)
        failed = code != 0
        return code
    except (InputError, ValueError, FileNotFoundError, OSError, RuntimeError) as exc:
        if args.debug:
            raise
        print(f"llm-embedder: error: {_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llm-embedder: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130
    except Exception as exc:  # the last line of defence: the checks above should have caught it
        if args.debug:
            raise
        print(
            f"llm-embedder: unexpected error: {type(exc).__name__}: {_first_line(exc)} "
            "(run again with --debug to see the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1
    finally:
        outputs.release(failed)


_OS_ERRORS = {
    errno.ENOENT: "not found",
    errno.EACCES: "permission denied; choose a path you may use, or change its permissions",
    errno.EPERM: "operation not permitted; choose a path you may use, or change its permissions",
    errno.ENOSPC: "no space left on the device; free some space or choose another path",
    errno.EDQUOT: "disk quota exceeded; free some space or choose another path",
    errno.EROFS: "on a read-only file system; choose another path",
    errno.EISDIR: "is a folder where a file was expected; give a file path",
    errno.ENOTDIR: "a part of the path is a file where a folder was expected",
    errno.ENAMETOOLONG: "the name is too long for the file system; choose a shorter path",
    errno.EEXIST: "already exists; choose another path",
    errno.ENOTEMPTY: "is a folder that is not empty; choose another path",
}


def _message(exc: BaseException) -> str:
    """One line for the user: the file, and what went wrong and what to do; for a system error the
    errno in words, never ``[Errno 28] ...``."""
    if isinstance(exc, OSError) and exc.errno is not None:
        standard = exc.strerror == os.strerror(exc.errno)  # the C library's words, not ours
        what = (_OS_ERRORS.get(exc.errno) or str(exc.strerror).lower()) if standard else str(exc.strerror)
        return _first_line(OSError(f"{exc.filename}: {what}" if exc.filename is not None else what))
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
