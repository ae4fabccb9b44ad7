"""The training recipe: typed settings that load from a YAML file and take ``key=value`` overrides."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llm_embedder.errors import InputError
from llm_embedder.fileio import read_yaml
from llm_embedder.tasks import TrainingSettings


@dataclass
class DatasetSpec:
    """One training file (one dataset of one task).  ``weight`` scales its rows per epoch:
    2 visits every row twice (upsampling without copying the file)."""

    path: str
    weight: float = 1.0
    name: str | None = None

    def __post_init__(self) -> None:
        _check_types(self, "datasets.")


@dataclass
class Techniques:
    """The four techniques of the paper, each switchable for ablations."""

    reward: bool = True
    """Distil the LLM's rewards; off: contrastive loss on labelled positives only."""
    stable_distill: bool = True
    """Stabilized (rank-aware) distillation; off: plain KL distillation where it was used."""
    instructions: bool = True
    """Task instructions on queries and keys; off: raw texts."""
    homogeneous: bool = True
    """Every global batch from one dataset; off: mixed batches."""

    def __post_init__(self) -> None:
        _check_types(self, "techniques.")


@dataclass
class TrainConfig:
    model: str = "minilm"
    """Encoder to start from: zoo name, folder or hub id."""
    output_dir: str = "runs/llm-embedder"
    datasets: list[DatasetSpec] = field(default_factory=list)
    data_root: str | None = None
    """Folder that relative dataset paths start from (relative to the recipe file's folder)."""
    tasks: dict[str, Any] = field(default_factory=dict)
    """Task-table overrides, e.g. ``{qa: {training: {group_size: 4}}}``."""
    techniques: Techniques = field(default_factory=Techniques)
    max_steps: int = 10000
    batch_size: int = 100
    """Queries per device per step."""
    learning_rate: float = 5e-6
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    warmup_shape: str = "linear"
    """``linear``, or ``log`` (DeepSpeed WarmupDecayLR's default, which the original run used)."""
    max_grad_norm: float = 1.0
    temperature: float = 0.01
    """Similarity temperature: logits = cosine / temperature."""
    cross_device_negatives: bool = True
    seed: int = 42
    logging_steps: int = 100
    save_steps: int = 1000
    save_total_limit: int = 2
    resume: bool = True
    """Continue from the newest complete checkpoint in ``output_dir`` when there is one."""
    gradient_checkpointing: bool = False
    mixed_precision: str = "no"
    """``no``, ``bf16`` or ``fp16`` (weights stay float32; autocast computes in low precision)."""
    bf16: Any = False
    """bf16 autocast: ``true``, ``false`` (``mixed_precision`` decides), or ``auto``: on where the device has
    bf16 that pays (a bf16 GPU, or a CPU where bf16 is measured faster); see ``training.precision``."""
    pooling: str | None = None
    """Override the encoder's pooling (``cls``, ``mean``, ``last``)."""
    device: str = "auto"

    def __post_init__(self) -> None:
        self.datasets = [d if isinstance(d, DatasetSpec) else _build(DatasetSpec, d, "datasets") for d in self.datasets]
        if not isinstance(self.techniques, Techniques):
            self.techniques = _build(Techniques, self.techniques or {}, "techniques")
        _check_types(self, "")
        if self.warmup_shape not in ("linear", "log"):
            raise ValueError(f"warmup_shape={self.warmup_shape!r}; expected linear or log")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision={self.mixed_precision!r}; expected no, bf16 or fp16")
        if not (isinstance(self.bf16, bool) or self.bf16 == "auto"):
            raise ValueError(f"setting bf16={self.bf16!r}: expected auto, true or false")
        for name in ("max_steps", "batch_size", "logging_steps", "save_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
        """Load a recipe; ``overrides`` are ``dotted.key=value`` strings (values parsed as YAML).

        Relative dataset paths start from ``data_root``, or from the recipe file's folder; a relative
        ``data_root`` starts from the recipe file's folder too.
        """
        path = Path(path)
        data = read_yaml(path, "recipe file") or {}
        if not isinstance(data, dict):
            raise InputError(path, None, None, "a recipe is a mapping of settings")
        for override in overrides:
            apply_override(data, override)
        if not isinstance(data.get("data_root") or "", str):
            raise InputError(path, None, "data_root", f"expected a folder name, got {data['data_root']!r}")
        root = path.parent / (data.get("data_root") or "")
        if not isinstance(data.get("datasets") or [], list):
            raise InputError(path, None, "datasets", "expected a list of {path: ..., weight: ...} entries")
        for item in data.get("datasets") or []:
            if isinstance(item, dict) and isinstance(item.get("path"), str) and not Path(item["path"]).is_absolute():
                item["path"] = str((root / item["path"]).resolve())
        try:
            return _build(cls, data, None)
        except (TypeError, ValueError) as exc:
            raise InputError(path, None, None, str(exc)) from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def apply_override(data: dict[str, Any], override: str) -> None:
    """Set ``a.b.c=value`` in a nested dict; ``value`` is parsed as YAML (numbers, booleans, lists)."""
    key, sep, raw = override.partition("=")
    if not sep or not key:
        raise ValueError(f"override {override!r} is not of the form key=value")
    *parents, last = key.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {override!r}: {part!r} is not a mapping")
    node[last] = yaml.safe_load(raw)


def _check_types(obj: Any, prefix: str) -> None:
    """Reject mistyped scalar settings (``reward="false"`` would be truthy), naming the key.

    A ``float`` setting also takes an int or a numeric string: YAML 1.1 reads ``1e-4`` (no dot) as a string.
    """
    for f in dataclasses.fields(obj):
        kinds = [part.strip() for part in str(f.type).split("|")]
        value = getattr(obj, f.name)
        if value is None and "None" in kinds:
            continue
        kind = kinds[0]
        if kind == "float" and isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value)
        if kind == "str" and isinstance(value, os.PathLike):
            value = os.fspath(value)
        ok = {
            "float": isinstance(value, int | float) and not isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "str": isinstance(value, str),
        }.get(kind, True)
        if not ok:
            raise ValueError(f"setting {prefix}{f.name}={getattr(obj, f.name)!r}: expected {kind}")
        setattr(obj, f.name, float(value) if kind == "float" else value)


def _build(kind: type, data: Mapping[str, Any], where: str | None) -> Any:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where or kind.__name__}: expected a mapping, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(data) - known)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ValueError(f"unknown setting {prefix}{unknown[0]}; known: {', '.join(sorted(known))}")
    return kind(**data)


def effective_settings(settings: TrainingSettings, techniques: Techniques) -> TrainingSettings:
    """A task's training settings after the ablation switches."""
    losses = dict(settings.losses)
    if not techniques.stable_distill and "stable_distill" in losses:
        losses["kl_distill"] = losses.get("kl_distill", 0.0) + losses.pop("stable_distill")
    if not techniques.reward and any(name.endswith("distill") for name in losses):
        # Without LLM rewards only the labels remain: contrastive learning on labelled positives.
        losses = {"contrastive": 1.0}
        return dataclasses.replace(
            settings,
            losses=losses,
            select_positive="first" if settings.select_positive == "teacher" else settings.select_positive,
            select_negative="random",
            teacher_scores_margin=None,
            teacher_scores_min=None,
        )
    return dataclasses.replace(settings, losses=losses)
