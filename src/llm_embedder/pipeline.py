"""The main job: build data, mine negatives, score them with the LLM, train, evaluate — one command.

``llm-embedder run recipes/demo.yaml`` runs five stages into ``work_dir``; each stage's output is
kept, so a re-run skips what is done and a killed run resumes (scoring and training resume inside
the stage too).  Every output folder records the settings it was made from, upstream stages
included (``stage.json``); a folder whose settings changed is emptied and made again, so a changed
recipe never mixes with older outputs.  ``--ablate reward,stable_distill,instructions,homogeneous``
also trains the variants that drop one technique each and puts them on the leaderboard.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_embedder.errors import InputError
from llm_embedder.fileio import iter_jsonl, read_yaml, write_json, write_jsonl
from llm_embedder.tasks import DEFAULT_TASKS
from llm_embedder.training.config import Techniques, TrainConfig, apply_override

ABLATIONS = tuple(f.name for f in dataclasses.fields(Techniques))
# How each demo corpus row becomes text (the eval harness reads the same files the same way).
KEY_TEMPLATES = {"qa": "{title} {text}", "icl": "{contents}", "tool": "{text}", "convsearch": "{text}"}


@dataclass
class PipelineConfig:
    work_dir: str = "runs/demo"
    data: dict[str, Any] = field(default_factory=lambda: {"size": "small", "seed": 0})
    lm: str = "smollm2-135m"
    lm_dtype: str | None = None
    """The LLM's dtype for scoring and evaluation (default: float32 on CPU, bfloat16 on GPU)."""
    encoder: str = "minilm"
    mine: dict[str, Any] = field(default_factory=lambda: {"method": "bm25", "start": 0, "end": 30, "count": 7})
    score: dict[str, Any] = field(default_factory=lambda: {"max_candidates": 8, "max_key_tokens": 160})
    train: dict[str, Any] = field(default_factory=dict)
    """TrainConfig settings (``max_steps``, ``batch_size``, ``learning_rate``, ...)."""
    eval: dict[str, Any] = field(default_factory=lambda: {"retrievers": ["none", "random", "bm25"], "limit": None})
    quick: dict[str, Any] = field(default_factory=dict)
    """Overrides (dotted keys) applied by ``--quick``."""

    @classmethod
    def from_yaml(cls, path: str | Path, quick: bool = False, overrides: list[str] = ()) -> PipelineConfig:
        path = Path(path)
        data = read_yaml(path, "pipeline file") or {}
        if not isinstance(data, dict):
            raise InputError(path, None, None, "a pipeline file is a mapping of settings")
        for key, value in (data.get("quick") or {}).items() if quick else ():
            apply_override(data, f"{key}={json.dumps(value)}")
        for override in overrides:
            apply_override(data, override)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(path, None, unknown[0], f"unknown setting; known: {', '.join(sorted(known))}")
        return cls(**data)


def _stage(number: int, name: str, note: str) -> float:
    print(f"\n[{number}/5] {name}: {note}", flush=True)
    return time.perf_counter()


def _done(started: float) -> None:
    print(f"      done in {time.perf_counter() - started:.0f} s", flush=True)


STAGE_FILE = "stage.json"
# Candidates scored per second by SmolLM2-135M on a 2-core CPU with AMX (the demo data, keys of at
# most 128 tokens; measured), for the time estimate the score stage prints.
SCORE_RATE_CPU = {"float32": 4, "bfloat16": 12}


def _claim(folder: Path, settings: dict[str, Any]) -> None:
    """Keep ``folder`` only if it was made from ``settings``; otherwise empty it and record them.

    Recorded before the work starts: a stage killed halfway resumes from what it wrote.
    """
    settings = json.loads(json.dumps(settings))  # tuples -> lists, as read back
    stamp = folder / STAGE_FILE
    if stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) == settings:
        return
    if folder.is_dir() and any(folder.iterdir()):
        print(f"      {folder} was made with other settings: starting it again")
        shutil.rmtree(folder)
    write_json(stamp, settings)


def _digest(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _count(path: Path) -> int:
    """Complete lines of a JSON-lines file (a line torn by a kill does not count)."""
    return path.read_bytes().count(b"\n")


class Pipeline:
    def __init__(self, config: PipelineConfig, ablate: tuple[str, ...] = (), show_progress: bool = True):
        unknown = sorted(set(ablate) - set(ABLATIONS))
        if unknown:
            raise ValueError(f"unknown ablation {unknown[0]!r}; known: {', '.join(ABLATIONS)}")
        self.config = config
        self.ablate = ablate
        self.show_progress = show_progress
        self.work = Path(config.work_dir)
        # What each stage's output depends on, upstream stages included.
        self.data_key = {"size": config.data.get("size", "small"), "seed": config.data.get("seed", 0)}
        self.mine_key = {"data": self.data_key, "mine": config.mine}
        self.score_key = {**self.mine_key, "lm": config.lm, "lm_dtype": config.lm_dtype, "score": config.score}
        self.model_versions: dict[str, str] = {}  # trained model name -> digest of its settings

    # ------------------------------------------------------------------ 1. data
    def build_data(self) -> Path:
        from llm_embedder.data.demo_builder import build_demo

        out = self.work / "data"
        size, seed = self.data_key["size"], self.data_key["seed"]
        manifest = out / "manifest.json"
        if manifest.is_file():
            info = json.loads(manifest.read_text(encoding="utf-8"))
            if info.get("size") == size and info.get("seed") == seed:
                print(f"[1/5] data: {out} is built (size {size}, seed {seed})")
                return out
        started = _stage(1, "data", f"building the {size} six-task dataset (seconds)")
        build_demo(out, seed=seed, size=size, progress=self.show_progress)
        _done(started)
        return out

    # ------------------------------------------------------------------ 2. mine
    def mine(self, data: Path) -> dict[str, Path]:
        """Training files with negatives: mined from the task corpus where the data has none."""
        from llm_embedder.retrieval.corpus import Corpus
        from llm_embedder.retrieval.searcher import Searcher
        from llm_embedder.rewards.mine import MineSettings, mine_file

        settings = MineSettings(**{k: self.config.mine[k] for k in ("start", "end", "count") if k in self.config.mine})
        _claim(self.work / "mined", self.mine_key)
        files, todo = {}, []
        for task in DEFAULT_TASKS:
            source = data / "train" / f"{task}.json"
            if not source.is_file():
                continue
            corpus = data / "corpus" / f"{task}.jsonl"
            has_negatives = any(r.get("neg") or r.get("history") for _, r in iter_jsonl(source))
            if has_negatives or not corpus.is_file():
                files[task] = source
            else:
                files[task] = self.work / "mined" / f"{task}.json"
                if not files[task].is_file():
                    todo.append((task, source, corpus))
        if not todo:
            print("[2/5] mine: negatives are in place")
            return files
        started = _stage(
            2, "mine", f"{self.config.mine.get('method', 'bm25')} negatives for {len(todo)} tasks (seconds)"
        )
        method = self.config.mine.get("method", "bm25")
        embedder = None
        if method == "dense":
            from llm_embedder.models.embedder import Embedder

            embedder = Embedder.from_pretrained(self.config.encoder)
        for task, source, corpus_file in todo:
            corpus = Corpus.from_jsonl(corpus_file, KEY_TEMPLATES.get(task, "{text}"))
            searcher = Searcher.build(corpus, method, task=task, embedder=embedder)
            n = mine_file(searcher, source, files[task], settings, show_progress=False)
            print(f"      {task}: {n} queries")
        _done(started)
        return files

    # ------------------------------------------------------------------ 3. score
    def score(self, files: dict[str, Path]) -> dict[str, Path]:
        """Teacher scores for the tasks that distil; candidates capped per query (time goes here)."""
        from llm_embedder.models.lm import CausalLM
        from llm_embedder.rewards.score import ScoreSettings, score_file

        cap = int(self.config.score.get("max_candidates", 8))
        for folder in ("capped", "scored"):
            _claim(self.work / folder, self.score_key)
        todo = {}
        for task, path in files.items():
            spec = DEFAULT_TASKS[task]
            if spec.lm_template is None or not spec.training.uses_teacher:
                continue
            todo[task] = path
        out = dict(files)
        pending = []
        for task, path in todo.items():
            capped = self.work / "capped" / f"{task}.json"
            if not capped.is_file():
                write_jsonl(capped, (_cap_candidates(r, cap) for _, r in iter_jsonl(path)))
            out[task] = self.work / "scored" / f"{task}.json"
            if not out[task].is_file() or _count(out[task]) < _count(capped):
                pending.append((task, capped, out[task]))
        if not pending:
            print("[3/5] score: teacher scores are in place")
            return out
        candidates = sum(
            len(r.get("history") or r.get("pos", []) + r.get("neg", [])) * len(r.get("answers", [1]))
            for _, capped, _ in pending
            for _, r in iter_jsonl(capped)
        )
        rate = SCORE_RATE_CPU.get(self.config.lm_dtype or "float32", SCORE_RATE_CPU["float32"])
        estimate = f"~{candidates / rate / 60:.0f} min at ~{rate}/s on 2 CPU cores"
        started = _stage(3, "score", f"{candidates} candidates with {self.config.lm} ({estimate})")
        lm = CausalLM.from_pretrained(self.config.lm, dtype=self.config.lm_dtype)
        settings = ScoreSettings(max_key_tokens=int(self.config.score.get("max_key_tokens", 512)))
        for task, capped, target in pending:
            print(f"      {task}", flush=True)
            score_file(lm, capped, target, settings=settings, show_progress=self.show_progress)
        _done(started)
        return out

    # ------------------------------------------------------------------ 4. train
    def train(self, files: dict[str, Path]) -> dict[str, Path]:
        from llm_embedder.training.trainer import finished_model, train

        variants = {"fine-tuned": Techniques()}
        for name in self.ablate:
            variants[f"no-{name.replace('_', '-')}"] = dataclasses.replace(Techniques(), **{name: False})
        models = {}
        for index, (name, techniques) in enumerate(variants.items()):
            settings = {
                "model": self.config.encoder,
                "output_dir": str(self.work / "models" / name),
                "datasets": [{"path": str(p), "name": t} for t, p in files.items()],
                "techniques": dataclasses.asdict(techniques),
                **self.config.train,
            }
            config = TrainConfig(**settings)
            key = {**self.score_key, "train": config.to_dict()}
            _claim(Path(config.output_dir), key)
            self.model_versions[name] = _digest(key)
            if finished_model(config) is None:
                started = _stage(
                    4,
                    "train",
                    f"{name} ({index + 1}/{len(variants)}): {config.max_steps} steps of {config.batch_size} "
                    "(minutes; the bar shows the time left)",
                )
                models[name] = train(config, show_progress=self.show_progress)
                _done(started)
            else:
                print(f"[4/5] train: {name} is trained")
                models[name] = Path(config.output_dir) / "model"
        return models

    # ------------------------------------------------------------------ 5. evaluate
    def evaluate(self, data: Path, models: dict[str, Path]) -> dict[str, Any]:
        from llm_embedder.evaluation.harness import build_evaluators, run_grid

        settings = self.config.eval
        trained = {name: f"{name}=dense:{path}" for name, path in models.items()}
        specs = [*settings.get("retrievers", ["none", "random", "bm25"]), f"base=dense:{self.config.encoder}"]
        specs += trained.values()
        tasks = settings.get("tasks", list(DEFAULT_TASKS))
        evaluators = build_evaluators(data / "eval", tasks, settings.get("limit"), settings.get("options"))
        # Adding a retriever keeps the other retrievers' cells; any other change redoes them all.
        cells_key = {k: v for k, v in settings.items() if k != "retrievers"}
        _claim(
            self.work / "eval",
            {"data": self.data_key, "lm": self.config.lm, "lm_dtype": self.config.lm_dtype, "eval": cells_key},
        )
        # A model trained again (other settings) must be evaluated again.
        versions = {spec: self.model_versions[name] for name, spec in trained.items()}
        started = _stage(
            5,
            "evaluate",
            f"{len(evaluators)} evaluations x {len(specs)} retrievers (minutes; the bar shows the time left)",
        )
        board = run_grid(
            evaluators,
            specs,
            self.work / "eval",
            lm_name=self.config.lm,
            lm_dtype=self.config.lm_dtype,
            show_progress=self.show_progress,
            versions=versions,
        )
        _done(started)
        return board

    def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        data = self.build_data()
        files = self.score(self.mine(data))
        models = self.train(files)
        board = self.evaluate(data, models)
        print()
        print((self.work / "eval" / "leaderboard.md").read_text(encoding="utf-8"), end="")
        print(f"\nall stages done in {(time.perf_counter() - started) / 60:.1f} min; outputs in {self.work}")
        return board


def _cap_candidates(record: dict[str, Any], cap: int) -> dict[str, Any]:
    """Keep the positives and the first negatives (or the latest history turns) up to ``cap``."""
    record = {k: v for k, v in record.items() if k not in ("teacher_scores", "neg_index")}
    if "history" in record:
        record["history"] = record["history"][-cap:]
    else:
        pos = record.get("pos", [])
        record["neg"] = record.get("neg", [])[: max(1, cap - len(pos))]
    return record
