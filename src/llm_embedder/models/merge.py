"""Model merging in the manner of LM-Cocktail (Xiao et al., 2023): a weighted average of the
parameters of encoders that share one architecture, e.g. a fine-tuned embedder and its base model,
to keep the gain of fine-tuning while recovering the base model's generality.

Rules:
- weights are non-negative numbers, one per model, with a positive sum; they are divided by their
  sum (``1,1`` means ``0.5,0.5``);
- every floating-point tensor is averaged in float64 and stored in the first model's dtype; a model
  of weight 0 is not read into the sum, so weights ``1,0`` give the first model's tensors bit for bit;
- integer tensors (buffers such as position ids) must be equal in all models and are kept;
- models must have the same architecture, configuration, parameter names and shapes, and tokenizer
  vocabulary, and the same pooling and normalisation; anything else is refused with one error;
- the result carries the task table (instructions, token budgets) of the first model unless
  ``tasks_from`` names another: the first model is, by convention, the fine-tuned one.

The output folder (:func:`save_merged`) is an ordinary Embedder folder plus ``merge.json``, which
records the models with their fingerprints, the weights and, when they were chosen on dev data,
how (see :mod:`llm_embedder.evaluation.merge_weights`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from llm_embedder.fileio import atomic_path, write_json
from llm_embedder.fingerprint import embedder_fingerprint
from llm_embedder.models.embedder import Embedder

MERGE_FILE = "merge.json"
MERGE_KIND = "llm-embedder-merge"
# Config entries that say where or how a model was saved, not what it computes.
_BOOKKEEPING = {"transformers_version", "torch_dtype", "dtype", "architectures"}


class MergeError(ValueError):
    """Models that cannot be averaged, or weights that make no average."""


def normalise_weights(weights: Sequence[float], n_models: int) -> list[float]:
    """``weights`` divided by their sum; an error unless there is one non-negative weight per model
    and their sum is positive."""
    weights = [float(w) for w in weights]
    if len(weights) != n_models:
        raise MergeError(f"{len(weights)} weights for {n_models} models; give one weight per model")
    if any(not w >= 0 or w == float("inf") for w in weights):  # also catches NaN
        raise MergeError(f"weights must be finite and non-negative, got {weights}")
    total = sum(weights)
    if total <= 0:
        raise MergeError("the weights sum to 0; at least one model needs a positive weight")
    return [w / total for w in weights]


def parse_weights(text: str) -> list[float]:
    """``"0.7,0.3"`` -> [0.7, 0.3]."""
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise MergeError(f"--weights {text!r}: expected comma-separated numbers, e.g. 0.7,0.3") from None


def check_mergeable(embedders: Sequence[Embedder], names: Sequence[str]) -> None:
    """Raise :class:`MergeError` naming the first difference that makes an average meaningless."""
    first, first_name = embedders[0], names[0]
    state = first.model.state_dict()
    config = _config(first)
    vocab = first.tokenizer.get_vocab()
    for other, name in zip(embedders[1:], names[1:], strict=True):
        where = f"cannot merge {name!r} with {first_name!r}"
        a = f"{type(first.model).__name__}/{first.model.config.model_type}"
        b = f"{type(other.model).__name__}/{other.model.config.model_type}"
        if a != b:
            raise MergeError(f"{where}: architectures differ ({b} vs {a})")
        other_state = other.model.state_dict()
        if set(other_state) != set(state):
            only_first = [k for k in state if k not in other_state]
            only_other = [k for k in other_state if k not in state]
            keys, owner = (only_other, name) if only_other else (only_first, first_name)
            more = f" and {len(keys) - 1} more" if len(keys) > 1 else ""
            raise MergeError(f"{where}: parameter names differ ({keys[0]!r}{more} only in {owner!r})")
        for key, tensor in state.items():
            if other_state[key].shape != tensor.shape:
                raise MergeError(
                    f"{where}: parameter {key!r} has shape {list(other_state[key].shape)} vs {list(tensor.shape)}"
                )
            if not tensor.is_floating_point() and not torch.equal(other_state[key], tensor):
                raise MergeError(f"{where}: integer buffer {key!r} differs")
        other_config = _config(other)
        for key in sorted(set(config) | set(other_config)):
            if config.get(key) != other_config.get(key):
                raise MergeError(
                    f"{where}: configs differ in {key!r} ({other_config.get(key)!r} vs {config.get(key)!r})"
                )
        if other.tokenizer.get_vocab() != vocab:
            raise MergeError(f"{where}: tokenizer vocabularies differ")
        if (other.pooling, bool(other.normalize)) != (first.pooling, bool(first.normalize)):
            raise MergeError(
                f"{where}: pooling/normalisation differ ({other.pooling}, normalize={other.normalize} "
                f"vs {first.pooling}, normalize={first.normalize})"
            )


def _config(embedder: Embedder) -> dict[str, Any]:
    return {k: v for k, v in embedder.model.config.to_dict().items() if not k.startswith("_") and k not in _BOOKKEEPING}


def average_state_dicts(states: Sequence[dict[str, torch.Tensor]], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """The weighted sum of each floating-point tensor (weights as given: normalise them first),
    computed in float64 and cast to the first state's dtype; other tensors come from the first."""
    used = [(s, w) for s, w in zip(states, weights, strict=True) if w != 0]
    out = {}
    for key, tensor in states[0].items():
        if not tensor.is_floating_point():
            out[key] = tensor.clone()
            continue
        total = None  # starting from the first term (not zeros) keeps even the sign of a -0.0
        for state, weight in used:
            term = weight * state[key].detach().to("cpu", torch.float64)
            total = term if total is None else total + term
        out[key] = total.to(tensor.dtype)
    return out


def merge_embedders(
    embedders: Sequence[Embedder],
    weights: Sequence[float],
    *,
    names: Sequence[str] | None = None,
    tasks_from: int = 0,
) -> Embedder:
    """A new Embedder whose parameters are the weighted average of ``embedders``' (weights are
    normalised, see :func:`normalise_weights`), with the tokenizer, pooling and normalisation of
    the first and the task table of ``embedders[tasks_from]``.  The inputs are not changed."""
    if not embedders:
        raise MergeError("no models to merge")
    names = list(names) if names is not None else [f"model {i + 1}" for i in range(len(embedders))]
    weights = normalise_weights(weights, len(embedders))
    if not 0 <= tasks_from < len(embedders):
        raise MergeError(f"tasks_from={tasks_from + 1} but there are {len(embedders)} models")
    check_mergeable(embedders, names)
    first = embedders[0]
    model = copy.deepcopy(first.model)
    model.load_state_dict(average_state_dicts([e.model.state_dict() for e in embedders], weights))
    return Embedder(
        model.eval(),
        first.tokenizer,
        pooling=first.pooling,
        normalize=first.normalize,
        tasks=embedders[tasks_from].tasks,
        batch_size=first.batch_size,
    )


def load_models(models: Sequence[str], device: str = "cpu") -> list[Embedder]:
    """Load each model (zoo name, folder or hub id) with its own settings, in float32."""
    return [Embedder.from_pretrained(m, device=device, dtype="float32") for m in models]


def is_merge_output(folder: str | Path) -> bool:
    file = Path(folder) / MERGE_FILE
    try:
        return json.loads(file.read_text(encoding="utf-8")).get("kind") == MERGE_KIND
    except (OSError, ValueError, AttributeError):
        return False


def check_output(out: str | Path, overwrite: bool = False) -> None:
    """Refuse an ``out`` that exists, is not empty and is no earlier merge output: a merged model is
    written as a whole folder, which would replace everything there.  ``overwrite`` changes nothing
    (kept for callers that pass it): what merge did not write is never replaced."""
    out = Path(out)
    if not out.exists() or is_merge_output(out):
        return
    if out.is_dir() and not any(out.iterdir()):
        return
    raise MergeError(
        f"{out} exists and is not the output of an earlier merge; a merged model is written as a whole folder, "
        "so choose a new or empty folder"
    )


def save_merged(embedder: Embedder, out: str | Path, record: dict[str, Any], overwrite: bool = False) -> dict[str, Any]:
    """Write ``embedder`` as an Embedder folder with ``merge.json`` (``record`` plus the merged model's
    fingerprint), all under a temporary name renamed into place at the end."""
    check_output(out, overwrite)
    record = {"kind": MERGE_KIND, "format_version": 1, **record, "fingerprint": embedder_fingerprint(embedder)}
    with atomic_path(out, is_dir=True) as tmp:
        embedder.save_pretrained(tmp)
        write_json(tmp / MERGE_FILE, record)
    return record


def merge_models(
    models: Sequence[str],
    weights: Sequence[float],
    out: str | Path,
    *,
    tasks_from: int = 0,
    overwrite: bool = False,
    device: str = "cpu",
) -> dict[str, Any]:
    """Load ``models``, average them with ``weights`` and save the result to ``out``; returns the
    ``merge.json`` record."""
    check_output(out, overwrite)  # before minutes of loading
    embedders = load_models(models, device)
    merged = merge_embedders(embedders, weights, names=models, tasks_from=tasks_from)
    return save_merged(merged, out, merge_record(models, embedders, weights, tasks_from), overwrite)


def merge_record(
    models: Sequence[str], embedders: Sequence[Embedder], weights: Sequence[float], tasks_from: int
) -> dict[str, Any]:
    """The ``merge.json`` fields that describe the inputs: each model with its fingerprint and weight."""
    weights = normalise_weights(weights, len(models))
    return {
        "models": [
            {"model": str(m), "fingerprint": embedder_fingerprint(e), "weight": w}
            for m, e, w in zip(models, embedders, weights, strict=True)
        ],
        "weights": weights,
        "tasks_from": str(models[tasks_from]),
    }
