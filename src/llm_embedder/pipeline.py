"""The main job: build data, mine negatives, score them with the LLM, train, evaluate — one command.

``llm-embedder run recipes/demo.yaml`` runs five stages into ``work_dir``; each stage's output is
kept, so a re-run skips what is done and a killed run resumes (scoring and training resume inside
the stage too).  Every output folder records the settings it was made from, upstream stages
included (``stage.json``: :class:`llm_embedder.freshness.Stage`); a folder whose settings changed is
emptied of what the pipeline made and made again, so a changed recipe never mixes with older
outputs.  ``--ablate reward,stable_distill,instructions,homogeneous`` also trains the variants that
drop one technique each and puts them on the leaderboard.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_embedder.data.layout import key_template, train_corpus_path
from llm_embedder.errors import InputError
from llm_embedder.evaluation.grid import GRID_MEMBERS
from llm_embedder.fileio import iter_jsonl, read_yaml, write_json
from llm_embedder.fingerprint import code_digest, file_digest, files_digest, settings_digest
from llm_embedder.freshness import STAGE_FILE, Stage
from llm_embedder.progress import Progress
from llm_embedder.tasks import DEFAULT_TASKS
from llm_embedder.training.config import Techniques, TrainConfig, apply_override

ABLATIONS = tuple(f.name for f in dataclasses.fields(Techniques))
# The stages each kind of run goes through, in order (the progress lines count them).
RUN_STAGES = ("data", "mine", "score", "train", "evaluate")
SELECT_STAGES = ("data", "mine", "score", "train", "select")
DATA_STAMP = ".data-stage.json"
"""What the data folder was made from (in the work folder: the data folder is replaced whole)."""


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
    train_data: dict[str, Any] = field(default_factory=dict)
    """``holdout``: scored training records per task kept out for the diagnostics; ``teacher_guard``."""
    merge: dict[str, Any] = field(default_factory=dict)
    """``weight``: the fine-tuned model's share in the ``merged`` row (with the base encoder); none: no row."""
    select: dict[str, Any] = field(default_factory=dict)
    """Model selection on dev (``llm-embedder run --select``): ``variants`` (each a ``name`` and train
    settings), ``dev_evaluators`` and ``ood_evaluators`` (evaluator names), ``check`` (more evaluation
    folders a model must stay level on, each scored with every evaluator it has data for: natural
    questions from another source, say), ``ood_floor``, ``dev_tie`` (see :mod:`llm_embedder.selection`)."""
    quick: dict[str, Any] = field(default_factory=dict)
    """Overrides (dotted keys) applied by ``--quick``."""

    @classmethod
    def from_yaml(cls, path: str | Path, quick: bool = False, overrides: list[str] = ()) -> PipelineConfig:
        path = Path(path)
        data = read_recipe(path)
        for key, value in (data.get("quick") or {}).items() if quick else ():
            apply_override(data, f"{key}={json.dumps(value)}")
        for override in overrides:
            apply_override(data, override)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(path, None, unknown[0], f"unknown setting; known: {', '.join(sorted(known))}")
        return cls(**data)


def read_recipe(path: Path, extended_by: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A pipeline file's settings.  ``extends: OTHER.yaml`` (a path from this file's folder) starts
    from the other recipe's settings; this file's other top-level settings then replace the other's
    whole, and ``set`` (a mapping of dotted keys, like ``quick``) changes single values in them."""
    data = read_yaml(path, "pipeline file") or {}
    if not isinstance(data, dict):
        raise InputError(path, None, None, "a pipeline file is a mapping of settings")
    parent, changes = data.pop("extends", None), data.pop("set", None) or {}
    if not isinstance(changes, dict):
        raise InputError(path, None, "set", "a mapping of dotted keys to values, e.g. {data.size: full}")
    if parent is None:
        if changes:
            raise InputError(path, None, "set", "changes the recipe that `extends` names; this file extends none")
        return data
    parent_path = path.parent / str(parent)
    if parent_path.resolve() in {p.resolve() for p in (path, *extended_by)}:
        raise InputError(path, None, "extends", f"{parent} extends this file in turn (a cycle)")
    if not parent_path.is_file():
        raise InputError(path, None, "extends", f"{parent_path} is not a file")
    merged = {**read_recipe(parent_path, (*extended_by, path)), **data}
    for key, value in changes.items():
        apply_override(merged, f"{key}={json.dumps(value)}")
    return merged


# What a trainer writes in its folder (removed when its stage starts again).
TRAINING_MEMBERS = ("checkpoints", "model", "train_log.jsonl", "diagnostics.json")
# The code a trained model comes from besides its settings and data: a fixed loss or sampler trains again.
TRAINING_CODE = (
    "llm_embedder.training",
    "llm_embedder.data.records",
    "llm_embedder.data.sampler",
    "llm_embedder.tasks",
    "llm_embedder.models",
)


def _without_output_dir(key: dict[str, Any]) -> dict[str, Any]:
    return {**key, "train": {k: v for k, v in key["train"].items() if k != "output_dir"}}


def _concrete_dtypes(config: PipelineConfig) -> PipelineConfig:
    """``fast`` dtypes resolved for this machine, so caches are keyed by what actually ran."""
    from llm_embedder.models.loading import dtype_name, resolve_device, resolve_dtype

    def concrete(name: str | None) -> str | None:
        return dtype_name(resolve_dtype(name, resolve_device("auto"))) if name == "fast" else name

    eval_settings = {**config.eval, "encoder_dtype": concrete(config.eval.get("encoder_dtype"))}
    return dataclasses.replace(config, lm_dtype=concrete(config.lm_dtype), eval=eval_settings)


def _count(path: Path) -> int:
    """Complete lines of a JSON-lines file (a line torn by a kill does not count)."""
    return path.read_bytes().count(b"\n")


class Pipeline:
    def __init__(self, config: PipelineConfig, ablate: tuple[str, ...] = (), show_progress: bool = True):
        unknown = sorted(set(ablate) - set(ABLATIONS))
        if unknown:
            raise ValueError(f"unknown ablation {unknown[0]!r}; known: {', '.join(ABLATIONS)}")
        self.config = config = _concrete_dtypes(config)
        self.ablate = ablate
        self.show_progress = show_progress
        self.progress = Progress(RUN_STAGES)
        self.work = Path(config.work_dir)
        # What each stage's output depends on, upstream stages included.
        self.data_key = self.data_identity()
        self.mine_key = {"data": self.data_key, "mine": config.mine}
        self.score_key = {
            **self.mine_key,
            "lm": config.lm,
            "lm_dtype": config.lm_dtype,
            "score": config.score,
            "code": code_digest("llm_embedder.rewards", "llm_embedder.models"),
        }
        self.model_versions: dict[str, str] = {}  # trained model name -> digest of its settings

    # ------------------------------------------------------------------ 1. data
    def data_identity(self) -> dict[str, Any]:
        """What the data stage's output depends on (keys every later stage's cache)."""
        return {"size": self.config.data.get("size", "small"), "seed": self.config.data.get("seed", 0)}

    def check_folder(self, data: Path) -> Path:
        """The out-of-domain evaluation folder that selection must stay level on (never trained on):
        ``ood-dev``, the half of the demo data's out-of-domain split that is never reported (the report
        reads the other half, ``ood-test``, in :meth:`evaluate`)."""
        return data / "ood-dev"

    def build_data(self) -> Path:
        from llm_embedder.data.demo import build_demo, builder_digest, source_versions

        out = self.work / "data"
        size, seed = self.data_key["size"], self.data_key["seed"]
        # The builder's code and source versions are part of the key: a changed builder builds again
        # (later stages follow the changed files through their input digests).
        key = {"size": size, "seed": seed, "builder": builder_digest(), "sources": source_versions()}
        stage = Stage(self.work / DATA_STAMP, key, product=out / "manifest.json")
        if stage.begin(resumable=False):
            self.progress.ready("data", f"{out} is built (size {size}, seed {seed})")
            return out
        self.progress.start("data", f"building the {size} six-task dataset (seconds)")
        build_demo(out, seed=seed, size=size, progress=self.show_progress)  # replaces the folder whole
        stage.seal()
        self.progress.done()
        return out

    # ------------------------------------------------------------------ 2. mine
    def mine(self, data: Path) -> dict[str, Path]:
        """Training files with negatives: mined from the task corpus where the data has none."""
        from llm_embedder.retrieval.corpus import Corpus
        from llm_embedder.rewards.mine import MineSettings, mine_corpus, needs_encoder

        fields = ("start", "end", "count", "guard_margin")
        settings = MineSettings(**{k: self.config.mine[k] for k in fields if k in self.config.mine})
        method = self.config.mine.get("method", "bm25")
        Stage.folder(self.work / "mined", self.mine_key).begin()
        files, todo = {}, []
        for task in DEFAULT_TASKS:
            source = data / "train" / f"{task}.json"
            if not source.is_file():
                continue
            corpus = data / train_corpus_path(task)  # never the test corpus
            has_negatives = any(r.get("neg") or r.get("history") for _, r in iter_jsonl(source))
            if has_negatives or not corpus.is_file():
                files[task] = source
            else:
                files[task] = self.work / "mined" / f"{task}.json"
                Stage.made_from(files[task], [source, corpus]).begin()
                if not files[task].is_file():
                    todo.append((task, source, corpus))
        if not todo:
            self.progress.ready("mine", "negatives are in place")
            return files
        self.progress.start("mine", f"{method} negatives for {len(todo)} tasks (seconds)")
        embedder = None
        if needs_encoder(method, settings):  # the base encoder searches (dense) or guards (guard_margin)
            from llm_embedder.models.embedder import Embedder

            embedder = Embedder.from_pretrained(self.config.encoder)
        for task, source, corpus_file in todo:
            corpus = Corpus.from_jsonl(corpus_file, key_template(task))
            n = mine_corpus(
                corpus, source, files[task], settings, method=method, embedder=embedder, task=task, show_progress=False
            )
            self.progress.note(f"{task}: {n} queries")
        self.progress.done()
        return files

    # ------------------------------------------------------------------ 3. score
    def score(self, files: dict[str, Path]) -> dict[str, Path]:
        """Teacher scores for the tasks that distil; candidates capped per query (time goes here)."""
        from llm_embedder.models.lm import CausalLM
        from llm_embedder.rewards.cap import cap_file, scored_candidates
        from llm_embedder.rewards.score import ScoreSettings, score_file, scoring_estimate

        cap = int(self.config.score.get("max_candidates", 8))
        for folder in ("capped", "scored"):
            Stage.folder(self.work / folder, self.score_key).begin()
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
            Stage.made_from(capped, [path]).begin()
            if not capped.is_file():
                cap_file(path, capped, cap)
            out[task] = self.work / "scored" / f"{task}.json"
            Stage.made_from(out[task], [capped]).begin()
            if not out[task].is_file() or _count(out[task]) < _count(capped):
                pending.append((task, capped, out[task]))
        if not pending:
            self.progress.ready("score", "teacher scores are in place")
            return out
        candidates = scored_candidates([capped for _, capped, _ in pending])
        estimate = scoring_estimate(candidates, self.config.lm_dtype)
        self.progress.start("score", f"{candidates} candidates with {self.config.lm} ({estimate})")
        lm = CausalLM.from_pretrained(self.config.lm, dtype=self.config.lm_dtype)
        settings = ScoreSettings(max_key_tokens=int(self.config.score.get("max_key_tokens", 512)))
        for task, capped, target in pending:
            self.progress.note(task)
            score_file(lm, capped, target, settings=settings, show_progress=self.show_progress)
        self.progress.done()
        return out

    # ------------------------------------------------------------------ 4. train
    def training_files(self, files: dict[str, Path], teacher_guard: bool = False) -> tuple[dict, dict]:
        """``(train files, held-out files)``: ``train_data.holdout`` records per task are kept out of
        training for the diagnostics, and ``teacher_guard`` applies to the rest (:mod:`llm_embedder.data.split`)."""
        from llm_embedder.data.split import split_file

        holdout = int(self.config.train_data.get("holdout", 0))
        folder = self.work / ("split-guarded" if teacher_guard else "split")
        Stage.folder(folder, {**self.score_key, "holdout": holdout, "teacher_guard": teacher_guard}).begin()
        train, held = {}, {}
        for task, path in files.items():
            train[task], held[task] = folder / "train" / f"{task}.json", folder / "holdout" / f"{task}.json"
            Stage.made_from(train[task], [path]).begin()
            Stage.made_from(held[task], [path]).begin()
            if not (train[task].is_file() and held[task].is_file()):
                split_file(path, train[task], held[task], holdout, int(self.data_key["seed"]), teacher_guard)
        return train, {t: p for t, p in held.items() if _count(p)}

    def train(self, files: dict[str, Path]) -> dict[str, Path]:
        variants: dict[str, dict[str, Any]] = {"fine-tuned": {}}
        for name in self.ablate:
            variants[f"no-{name.replace('_', '-')}"] = {"techniques": {name: False}}
        models = self._train_variants(files, variants, self.work / "models")
        weight = self.config.merge.get("weight")
        if weight is not None:
            version = self.model_versions["fine-tuned"]
            models["merged"] = self._merge(models["fine-tuned"], version, float(weight), self.work / "merged")
        return models

    def _merge(self, fine_tuned: Path, version: str, weight: float, folder: Path) -> Path:
        """``fine_tuned`` (of settings digest ``version``) averaged with the base encoder (LM-Cocktail),
        ``weight`` on the fine-tuned one."""
        from llm_embedder.models.merge import merge_models

        name = folder.name
        Stage.folder(folder, {"fine-tuned": version, "weight": weight}, members=("model",)).begin()
        self.model_versions[name] = settings_digest({"of": version, "weight": weight})
        out = folder / "model"
        if not (out / "merge.json").is_file():
            merge_models([str(fine_tuned), self.config.encoder], [weight, 1 - weight], out)
            print(f"      {name}: {weight:g} x fine-tuned + {1 - weight:g} x {self.config.encoder}")
        return out

    def _train_variants(self, files: dict[str, Path], variants: dict[str, dict[str, Any]], folder: Path):
        """Train each variant (recipe ``train`` settings updated by the variant's) into ``folder/<name>``."""
        from llm_embedder.training.trainer import finished_model, train

        models = {}
        for index, (name, changes) in enumerate(variants.items()):
            changes = dict(changes)
            guard = bool(changes.pop("teacher_guard", self.config.train_data.get("teacher_guard", False)))
            train_files, held = self.training_files(files, teacher_guard=guard)
            settings = {
                "model": self.config.encoder,
                "datasets": [{"path": str(p), "name": t} for t, p in train_files.items()],
                **self.config.train,
                "output_dir": str(folder / name),
            }
            for key, value in changes.items():
                settings[key] = {**settings.get(key, {}), **value} if isinstance(value, dict) else value
            config = TrainConfig(**settings)
            key = {
                **self.score_key,
                "train": config.to_dict(),
                "files": files_digest(train_files.values()),
                "train_code": code_digest(*TRAINING_CODE),
            }
            self.model_versions[name] = settings_digest(_without_output_dir(key))
            twin = self._trained_twin(key)
            if twin is not None:  # e.g. the variant --select chose: the same run, not made twice
                self.progress.ready("train", f"{name} has the settings of {twin.parent}: using that model")
                models[name] = twin
                self._diagnose(name, twin, held)
                continue
            Stage.folder(Path(config.output_dir), key, members=TRAINING_MEMBERS).begin()
            if finished_model(config) is None:
                self.progress.start(
                    "train",
                    f"{name} ({index + 1}/{len(variants)}): {config.max_steps} steps of {config.batch_size} "
                    "(minutes; the bar shows the time left)",
                )
                models[name] = train(config, show_progress=self.show_progress)
                self.progress.done()
            else:
                self.progress.ready("train", f"{name} is trained")
                models[name] = Path(config.output_dir) / "model"
            self._diagnose(name, models[name], held)
        return models

    def _trained_twin(self, key: dict[str, Any]) -> Path | None:
        """A finished model elsewhere in this work folder trained with exactly ``key`` (its own output folder aside)."""
        wanted = _without_output_dir(json.loads(json.dumps(key)))
        own = Path(key["train"]["output_dir"])
        stamps = [*self.work.glob(f"models/*/{STAGE_FILE}"), *self.work.glob(f"select/models/*/{STAGE_FILE}")]
        for stamp in sorted(stamps):
            folder = stamp.parent
            if folder.resolve() == own.resolve() or not (folder / "model" / "training.json").is_file():
                continue
            theirs = Stage(stamp, wanted).recorded()
            if (
                isinstance(theirs, dict)
                and isinstance(theirs.get("train"), dict)
                and _without_output_dir(theirs) == wanted
            ):
                return folder / "model"
        return None

    def _diagnose(self, name: str, model: Path, held: dict[str, Path]) -> None:
        """Top-1 agreement on the held-out training records, base encoder beside the trained one (once per model)."""
        from llm_embedder.models.embedder import Embedder
        from llm_embedder.training.diagnostics import training_diagnostics

        target = model.parent / "diagnostics.json"
        if not held or target.is_file():
            return
        print(f"      {name}: top-1 agreement on {sum(_count(p) for p in held.values())} held-out training records")
        results = {}
        for label, path in (("base", self.config.encoder), (name, str(model))):
            results[label] = training_diagnostics(Embedder.from_pretrained(path), list(held.values()), print_fn=None)
        for file, trained in results[name].items():
            base = results["base"][file]
            parts = [
                f"{what} {trained[f'{what}_top1']:.2f} "
                f"(base {base[f'{what}_top1']:.2f}, chance {trained[f'{what}_chance']:.2f})"
                for what in ("teacher", "positive")
                if trained.get(f"{what}_top1") is not None
            ]
            print(f"        {file}: " + "; ".join(parts))
        write_json(target, results)

    # ------------------------------------------------------------------ model selection (dev only)
    def select(self, files: dict[str, Path], data: Path) -> dict[str, Any]:
        """Train the recipe's ``select.variants`` and score them on the dev split and the out-of-domain dev check.

        Nothing here reads a test split (the out-of-domain check is :meth:`check_folder`, ``ood-dev``).
        Prints both grids and the pick (:mod:`llm_embedder.selection`) and writes ``select/selection.json``;
        the recipe's ``train`` settings are then set from it by hand.
        """
        from llm_embedder.selection import mean_score, relative_scores, worst_check

        settings = self.config.select
        variants = {v["name"]: {k: x for k, x in v.items() if k != "name"} for v in settings.get("variants", [])}
        if not variants:
            raise ValueError("select: the recipe lists no variants (select.variants: [{name: ..., <train settings>}])")
        models = self._train_variants(files, variants, self.work / "select" / "models")
        for name in list(models):
            for weight in settings.get("merge_weights", []):
                merged = f"{name}+base@{weight:g}"
                folder = self.work / "select" / "models" / merged
                models[merged] = self._merge(models[name], self.model_versions[name], float(weight), folder)
        specs = [f"base=dense:{self.config.encoder}", *(f"{n}=dense:{p}" for n, p in models.items())]
        versions = {f"{n}=dense:{p}": self.model_versions[n] for n, p in models.items()}
        folders = {"dev": data / "dev", "ood": self.check_folder(data)}
        for number, folder in enumerate(settings.get("check") or [], 1):
            if not Path(folder).is_dir():
                raise InputError(folder, None, None, "select.check: an evaluation folder (eval layout) is expected")
            folders[f"check-{number}"] = Path(folder)
        checks = f"{len(folders) - 1} out-of-domain check" + ("s" if len(folders) > 2 else "")
        self.progress.start("select", f"{len(specs)} models on the dev split and {checks}")
        boards = {}
        for split, folder in folders.items():
            out = self.work / "select" / f"eval-{split}"
            names = settings.get(f"{split}_evaluators") if split in ("dev", "ood") else None
            boards[split] = self._grid(folder, out, specs, names, versions)
        self.progress.done()
        relative = {split: relative_scores(board, "base") for split, board in boards.items()}
        scores = {
            n: {split: mean_score(relative[split][spec]) for split in boards}
            for n, spec in zip(["base", *models], specs, strict=True)
        }
        # The rule's out-of-domain score is the worst check's: a model must stay level on each of them.
        result = self.choose({n: {"dev": s["dev"], "ood": worst_check(s)} for n, s in scores.items() if n != "base"})
        result["kind"] = "llm-embedder selection"
        result["scores"] = scores  # each model's mean relative score per split, the base's 1.0 included
        result["relative"] = relative
        result["checks"] = {split: str(folder) for split, folder in folders.items() if split != "dev"}
        result["models"] = {name: str(path) for name, path in models.items()}
        write_json(self.work / "select" / "selection.json", result)
        for split in boards:
            print(f"\n{split} split:")
            print((self.work / "select" / f"eval-{split}" / "leaderboard.md").read_text(encoding="utf-8"), end="")
        print(f"\nmean score relative to base ({', '.join(boards)}):")
        for name, s in scores.items():
            print(f"  {name}: " + ", ".join("-" if v is None else f"{v:.3f}" for v in s.values()))
        print(f"chosen: {result['chosen']} ({result['rule']})")
        return result

    def choose(self, scores: dict[str, dict[str, float | None]]) -> dict[str, Any]:
        """The selection rule (:func:`llm_embedder.selection.choose`) over ``{name: {"dev", "ood"}}``, with
        the recipe's ``select.ood_floor`` and ``select.dev_tie`` (each the rule's default when not set)."""
        from llm_embedder.selection import DEV_TIE, choose

        settings = self.config.select
        return choose(scores, float(settings.get("ood_floor", 1.0)), float(settings.get("dev_tie", DEV_TIE)))

    def _grid(self, data_dir: Path, out: Path, specs: list[str], names: list[str] | None, versions: dict[str, str]):
        """One evaluation grid on ``data_dir``, restricted to the evaluators ``names`` (default: all present)."""
        from llm_embedder.evaluation.grid import run_grid
        from llm_embedder.evaluation.registry import build_evaluators

        settings = self.config.eval
        tasks = settings.get("tasks", list(DEFAULT_TASKS))
        present = [t for t in tasks if any((data_dir / t).glob("*/*.json"))]
        evaluators = build_evaluators(data_dir, present, settings.get("limit"), settings.get("options"))
        if names is not None:
            evaluators = [e for e in evaluators if e.name in names]
        # Adding a retriever or an evaluator keeps the other cells; any other change redoes them all.
        kept = ("retrievers", "evaluators", "ood_evaluators", "reference")
        cells_key = {k: v for k, v in settings.items() if k not in kept}
        data = file_digest(data_dir)  # a rebuilt test set is evaluated again
        key = {"data": data, "lm": self.config.lm, "lm_dtype": self.config.lm_dtype, "eval": cells_key}
        Stage.folder(out, key, GRID_MEMBERS).begin()
        return run_grid(
            evaluators,
            specs,
            out,
            lm_name=self.config.lm,
            lm_dtype=self.config.lm_dtype,
            show_progress=self.show_progress,
            versions=versions,
            reference=settings.get("reference", "base"),
            encoder_dtype=settings.get("encoder_dtype"),
        )

    # ------------------------------------------------------------------ 5. evaluate
    def evaluate(self, data: Path, models: dict[str, Path]) -> dict[str, Any]:
        """The test grid (every row), then the out-of-domain check (base and trained rows) if the recipe asks:
        on ``ood-test``, the half of the out-of-domain split that selection never read."""
        settings = self.config.eval
        trained = {name: f"{name}=dense:{path}" for name, path in models.items()}
        base = f"base=dense:{self.config.encoder}"
        specs = [*settings.get("retrievers", ["none", "random", "bm25"]), base, *trained.values()]
        # A model trained again (other settings) must be evaluated again.
        versions = {spec: self.model_versions[name] for name, spec in trained.items()}
        self.progress.start("evaluate", f"{len(specs)} retrievers on the test split (the bar shows the time left)")
        board = self._grid(data / "eval", self.work / "eval", specs, settings.get("evaluators"), versions)
        ood = settings.get("ood_evaluators")
        if ood and (data / "ood-test").is_dir():
            self.progress.note("out-of-domain check (ood-test)")
            self._grid(data / "ood-test", self.work / "eval-ood", [base, *trained.values()], ood, versions)
        self.progress.done()
        return board

    def run_selection(self) -> dict[str, Any]:
        started = time.perf_counter()
        self.progress = Progress(SELECT_STAGES)
        data = self.build_data()
        result = self.select(self.score(self.mine(data)), data)
        print(f"\nselection done in {(time.perf_counter() - started) / 60:.1f} min; {self.work / 'select'}")
        return result

    def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        self.progress = Progress(RUN_STAGES)
        data = self.build_data()
        files = self.score(self.mine(data))
        models = self.train(files)
        board = self.evaluate(data, models)
        print()
        print((self.work / "eval" / "leaderboard.md").read_text(encoding="utf-8"), end="")
        if (self.work / "eval-ood" / "leaderboard.md").is_file():
            print("\nout-of-domain check (data the training never saw):")
            print((self.work / "eval-ood" / "leaderboard.md").read_text(encoding="utf-8"), end="")
        print(f"\nall stages done in {(time.perf_counter() - started) / 60:.1f} min; outputs in {self.work}")
        return board
