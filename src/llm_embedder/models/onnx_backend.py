"""The encoder exported to ONNX (``torch.onnx.export``) and run by onnxruntime; int8 by dynamic quantisation.

Only the transformer runs here: it maps ``input_ids``/``attention_mask`` to the last hidden states,
and the Embedder pools, normalises, adds instructions and truncates exactly as on the torch path.

The ``.onnx`` file is cached under a fingerprint of the weights (``weights_digest``), the dtype and
the exporter's versions, in the package cache (``zoo.cache_dir()/onnx``), never in the model's
folder (a user's input is never written to).  Other weights give another name, so a trained or replaced model is
exported again and a stale file is never used.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llm_embedder.fileio import atomic_path
from llm_embedder.fingerprint import settings_digest, weights_digest
from llm_embedder.models import zoo
from llm_embedder.models.loading import ONNX_DTYPES

OPSET = 17
# Per-channel scales (one per output row): one scale per tensor moves the vectors several times
# further from float32's (docs/experiments/speed.md, encoding backends).
QUANTIZATION = {"weight_type": "QInt8", "per_channel": True, "op_types": ["MatMul", "Gemm"]}
CACHE_FOLDER = "onnx"


class _Hidden(torch.nn.Module):
    """The traced function: token ids and mask to the last hidden states."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def onnx_fingerprint(model: torch.nn.Module, dtype: str) -> str:
    import onnxruntime

    return settings_digest(
        {
            "weights": weights_digest(model, length=40),
            "dtype": dtype,
            "quantization": QUANTIZATION if dtype == "int8" else None,
            "opset": OPSET,
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
        }
    )


def cache_folder(model_path: str | os.PathLike) -> Path:
    """The package cache (``zoo.cache_dir()/onnx``): never the model's own folder, which is the user's input.
    Files are named by the weights' fingerprint, so one cache serves every model."""
    return zoo.cache_dir() / CACHE_FOLDER


def export(model: torch.nn.Module, target: Path) -> None:
    """Export the float32 encoder with dynamic batch and sequence axes (written atomically)."""
    # The dummy batch pads one row so that the traced graph keeps the masking path.
    ids = torch.ones(2, 8, dtype=torch.long)
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 5:] = 0
    wrapper = _Hidden(model).eval()
    axes = {"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"}}
    axes["hidden"] = {0: "batch", 1: "length"}
    with atomic_path(target) as tmp, torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about shape checks it freezes; they hold for any batch (mask and ids share a shape).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (ids, mask),
            str(tmp),
            input_names=["input_ids", "attention_mask"],
            output_names=["hidden"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    model.eval()  # export restores the wrapper's mode; keep the encoder in eval mode whatever it was


def quantize(source: Path, target: Path) -> None:
    """int8 weights of the matrix multiplications (onnxruntime dynamic quantisation)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.disable(logging.WARNING)  # its advice to pre-process applies to convolution nets, not encoders
    try:
        with atomic_path(target) as tmp:
            quantize_dynamic(
                str(source),
                str(tmp),
                weight_type=getattr(QuantType, QUANTIZATION["weight_type"]),
                per_channel=QUANTIZATION["per_channel"],
                op_types_to_quantize=QUANTIZATION["op_types"],
            )
    finally:
        logging.disable(logging.NOTSET)


def ensure_onnx(model: torch.nn.Module, model_path: str | os.PathLike, dtype: str) -> Path:
    """The cached ``.onnx`` file for these weights and dtype, exported (and quantised) if missing."""
    if dtype not in ONNX_DTYPES:
        raise ValueError(f"the onnx backend runs {' or '.join(ONNX_DTYPES)}, not {dtype!r} (use backend torch)")
    folder = cache_folder(model_path)
    float_file = folder / f"encoder-{onnx_fingerprint(model, 'float32')}.onnx"
    if not float_file.is_file():
        export(model, float_file)
    if dtype == "float32":
        return float_file
    int8_file = folder / f"encoder-{onnx_fingerprint(model, dtype)}.onnx"
    if not int8_file.is_file():
        quantize(float_file, int8_file)
    return int8_file


class OnnxEncoder:
    """An onnxruntime session that returns last hidden states as a torch tensor."""

    def __init__(self, file: str | os.PathLike, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.file = Path(file)
        self.session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> torch.Tensor:
        feeds = {
            "input_ids": input_ids.cpu().numpy().astype(np.int64),
            "attention_mask": attention_mask.cpu().numpy().astype(np.int64),
        }
        return torch.from_numpy(self.session.run(["hidden"], feeds)[0])
