"""A dense index built from a corpus that streams: shard by shard, resumable, and split across ranks.

The corpus is read row by row; every ``shard_size`` rows are encoded and written as one shard
(``<n>.vectors.npy`` and ``<n>.ids.npy``, then ``<n>.json`` last, which marks it finished) in a work
folder beside the output, ``.<out>.building``.  A killed build rerun with the same settings
re-reads the corpus, checks each finished shard against a digest of its ids and texts and its files
against the digests recorded when they were written (a damaged or replaced vectors file is encoded
again), and encodes only the rest, so its result equals an uninterrupted build byte for byte.

Under ``torchrun`` rank ``r`` of ``N`` encodes shards ``r, r+N, ...`` (the work folder must be
shared: one machine, or a shared file system), and rank 0 assembles: it trains the index on a
sample of the shards (IVF, PQ, SQ), adds them one at a time, and writes the searcher folder
(texts streamed again from the corpus) under a temporary name renamed when complete.

Memory: one shard of texts and vectors per rank, and every id (8 bytes a document) at assembly.
The index itself is what the factory makes it: Flat holds every float32 vector, ``ivf-pq`` about
48 bytes a vector (384-d).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from llm_embedder import distributed as dist_utils
from llm_embedder.errors import InputError
from llm_embedder.fileio import atomic_path, read_json, write_json
from llm_embedder.fingerprint import embedder_fingerprint, file_digest, settings_digest, text_digest
from llm_embedder.freshness import Stage
from llm_embedder.models.embedder import Embedder
from llm_embedder.retrieval.corpus import DEFAULT_KEY_TEMPLATE, iter_corpus
from llm_embedder.retrieval.dense import DenseIndex, expand_factory
from llm_embedder.retrieval.searcher import META_FILE, TEXTS_FILE, dense_meta, publish

SHARD_SIZE = 50_000
TRAIN_SIZE = 100_000
WORK_SETTINGS = "build.json"


@dataclass
class BuildSettings:
    task: str = "qa"
    factory: str = "Flat"  # a faiss factory string or a preset of dense.PRESETS (ivf, hnsw, ivf-pq...)
    key_template: str = DEFAULT_KEY_TEMPLATE
    id_field: str | None = None
    shard_size: int = SHARD_SIZE
    train_size: int = TRAIN_SIZE  # vectors sampled (evenly, seed 0) to train IVF/PQ/SQ
    search_params: dict[str, Any] = field(default_factory=dict)  # nprobe, efSearch saved with the index

    def __post_init__(self) -> None:
        if self.shard_size < 1 or self.train_size < 1:
            raise ValueError("shard size and training sample size must be at least 1")


def work_folder(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(f".{out.name}.building")


def build_dense_index(
    corpus_file: str | Path,
    out: str | Path,
    embedder: Embedder,
    settings: BuildSettings,
    *,
    model: str | None = None,
    show_progress: bool | None = None,
) -> int:
    """Encode ``corpus_file`` shard by shard and write a searcher folder at ``out``; returns the
    number of documents.  Every rank of a process group calls it; rank 0 writes ``out``."""
    out = Path(out)
    world, rank = dist_utils.world_size(), dist_utils.rank()
    work = work_folder(out)
    embedder.tasks.get_task(settings.task)
    # What the shards depend on; train_size, factory and search params only matter at assembly.
    digest = settings_digest(
        {
            "embedder": embedder_fingerprint(embedder),
            "task": settings.task,
            "key_template": settings.key_template,
            "id_field": settings.id_field,
            "shard_size": settings.shard_size,
        }
    )
    if rank == 0:
        _prepare(work, digest)
    _barrier()

    rows = iter_corpus(corpus_file, settings.key_template, settings.id_field)
    shards = 0
    with tqdm(desc=f"index[{rank}]" if world > 1 else "index", unit="doc", disable=show_progress is False) as bar:
        for number, shard in enumerate(_batched(rows, settings.shard_size)):
            shards += 1
            if number % world != rank:
                continue
            ids = np.fromiter((i for i, _ in shard), dtype=np.int64, count=len(shard))
            texts = [t for _, t in shard]
            check = text_digest(f"{i}\t{t}" for i, t in shard)
            if not _finished(work, number, check):
                vectors = embedder.encode_keys(texts, task=settings.task, show_progress=False)
                _write_shard(work, number, ids, vectors, check)
            bar.update(len(shard))
    _barrier()
    count = 0
    if rank == 0:
        count = _assemble(corpus_file, out, work, shards, embedder, settings, model)
        shutil.rmtree(work)
    _barrier()
    return count


def _barrier() -> None:
    if dist_utils.is_distributed():
        import torch.distributed as dist

        dist.barrier()


def _batched(rows: Iterator[tuple[int, str]], size: int) -> Iterator[list[tuple[int, str]]]:
    while shard := list(islice(rows, size)):
        yield shard


def _prepare(work: Path, digest: str) -> None:
    """Keep the shards of an interrupted build with the same settings; start afresh otherwise."""
    stage = Stage.record(work / WORK_SETTINGS, digest, field="digest")
    if work.exists():
        if not stage.stamp.is_file():
            raise ValueError(f"{work} exists but is not an index build's work folder; move it away")
        read_json(stage.stamp, "build settings file")  # a damaged one is named, not taken for ours and removed
        if not stage.fresh():
            shutil.rmtree(work)  # shards of other weights or settings: ours, and of no use
    work.mkdir(parents=True, exist_ok=True)
    stage.seal()


def _shard_files(work: Path, number: int) -> tuple[Path, Path, Path]:
    stem = work / f"{number:06d}"
    return stem.with_suffix(".vectors.npy"), stem.with_suffix(".ids.npy"), stem.with_suffix(".json")


def _finished(work: Path, number: int, check: str) -> bool:
    """Whether shard ``number`` is done for these ids and texts, its files as they were written."""
    vectors, ids, meta = _shard_files(work, number)
    if not (vectors.is_file() and ids.is_file() and Stage.record(meta, check, field="digest").fresh()):
        return False
    recorded = json.loads(meta.read_text(encoding="utf-8"))
    return recorded.get("vectors") == file_digest(vectors) and recorded.get("ids") == file_digest(ids)


def _write_shard(work: Path, number: int, ids: np.ndarray, vectors: np.ndarray, check: str) -> None:
    vectors_file, ids_file, meta_file = _shard_files(work, number)
    for target, array in ((vectors_file, vectors), (ids_file, ids)):
        with atomic_path(target) as tmp, tmp.open("wb") as handle:
            np.save(handle, array)
    files = {"vectors": file_digest(vectors_file), "ids": file_digest(ids_file)}
    Stage.record(meta_file, check, field="digest").seal({"count": len(ids), **files})  # last: the shard is done


def _load_shard(work: Path, number: int) -> tuple[np.ndarray, np.ndarray]:
    vectors_file, ids_file, _ = _shard_files(work, number)
    return np.load(vectors_file, mmap_mode="r"), np.load(ids_file)


def _training_sample(work: Path, counts: list[int], size: int) -> np.ndarray:
    """``size`` vectors drawn evenly (seed 0) from all shards, read through memory maps."""
    total = sum(counts)
    picks = np.sort(np.random.default_rng(0).choice(total, size=min(size, total), replace=False))
    starts = np.cumsum([0, *counts])
    parts = []
    for number in range(len(counts)):
        mine = picks[(picks >= starts[number]) & (picks < starts[number + 1])] - starts[number]
        if len(mine):
            parts.append(np.asarray(_load_shard(work, number)[0][mine]))
    return np.concatenate(parts)


def _assemble(
    corpus_file: str | Path,
    out: Path,
    work: Path,
    shards: int,
    embedder: Embedder,
    settings: BuildSettings,
    model: str | None,
) -> int:
    counts = [len(_load_shard(work, n)[1]) for n in range(shards)]
    all_ids = np.concatenate([_load_shard(work, n)[1] for n in range(shards)])
    if len(np.unique(all_ids)) != len(all_ids):
        raise InputError(corpus_file, None, settings.id_field, "ids are not unique")
    del all_ids
    index = DenseIndex(embedder.dim, expand_factory(settings.factory, sum(counts), embedder.dim))
    if not index.is_trained:
        index.train(_training_sample(work, counts, settings.train_size))
    for number in range(shards):
        vectors, ids = _load_shard(work, number)
        index.add(np.asarray(vectors), ids)
    index.set_search_params(**settings.search_params)
    meta = dense_meta(
        embedder,
        settings.task,
        model,
        index,
        len(index),
        search_params=settings.search_params,
        build={k: v for k, v in asdict(settings).items() if k not in ("task", "factory", "search_params")},
    )
    rows = iter_corpus(corpus_file, settings.key_template, settings.id_field)
    with publish(out) as tmp:
        with (tmp / TEXTS_FILE).open("w", encoding="utf-8") as handle:
            for doc_id, text in rows:
                handle.write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
        index.save(tmp)
        write_json(tmp / META_FILE, meta)
    return len(index)
