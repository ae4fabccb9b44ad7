"""bf16 autocast for training: the setting's rules, and a first-step loss that matches float32."""

from __future__ import annotations

import pytest
import torch
import yaml

from llm_embedder.training.config import TrainConfig
from llm_embedder.training.precision import resolve_mixed_precision
from llm_embedder.training.trainer import Trainer


def test_resolve_rules(monkeypatch):
    import llm_embedder.training.precision as precision

    assert resolve_mixed_precision(False, "no", True) == "no"
    assert resolve_mixed_precision(False, "fp16", False) == "fp16"
    assert resolve_mixed_precision(True, "no", True) == "bf16"
    with pytest.raises(ValueError, match="contradict"):
        resolve_mixed_precision("auto", "fp16", True)
    monkeypatch.setattr(precision, "cpu_bf16_pays", lambda: True)
    assert resolve_mixed_precision("auto", "no", True) == "bf16"
    monkeypatch.setattr(precision, "cpu_bf16_pays", lambda: False)
    assert resolve_mixed_precision("auto", "no", True) == "no"


@pytest.mark.parametrize("value", ["yes", 1, "bf16"])
def test_bad_setting_is_refused(value):
    with pytest.raises(ValueError, match="bf16"):
        TrainConfig(bf16=value)


def test_first_step_loss_in_bf16_matches_float32(tiny_encoder_dir, toy_dir, tmp_path):
    # Same weights, same batch: only autocast differs, so the loss must agree to bf16 rounding (tolerance 5%).
    losses = {}
    for bf16 in (False, True):
        recipe = {
            "model": str(tiny_encoder_dir),
            "datasets": [{"path": str(toy_dir / "qa.json")}],
            "tasks": {"qa": {"query_max_length": 24, "key_max_length": 24, "training": {"group_size": 4}}},
            "batch_size": 4,
            "device": "cpu",
            "seed": 3,
            "bf16": bf16,
            "output_dir": str(tmp_path / str(bf16)),
        }
        (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
        trainer = Trainer(TrainConfig.from_yaml(tmp_path / "r.yaml"), show_progress=False)
        assert trainer.mixed_precision == ("bf16" if bf16 else "no")
        rows = trainer._groups(next(iter(trainer.sampler)), 0)
        queries, keys = trainer._features(rows)
        with torch.no_grad(), trainer.accelerator.autocast():
            assert torch.is_autocast_enabled("cpu") == bf16
            assert not bf16 or torch.get_autocast_dtype("cpu") == torch.bfloat16
            q, k = trainer.model(queries, keys)
        losses[bf16] = float(trainer._loss(rows, q, k)[0])
    assert losses[True] != losses[False]  # bf16 did compute (its rounding shows) ...
    assert losses[True] == pytest.approx(losses[False], rel=0.05)  # ... and stays within the tolerance
