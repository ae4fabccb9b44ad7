"""Re-embed every collection of a data dir with another model, switching all at once when done.

Two phases. First, every stored record is embedded (as a key of its collection's task) into a
staging file beside the store, ``reembed.sqlite3``, without the data dir's lock: a server on the data
dir keeps serving (and adding to) the old collections meanwhile. Second, under the lock (waiting for
the server to stop), the records added since are embedded too, and one SQLite transaction replaces
every vector and every collection's fingerprint. A kill leaves the old data dir (before the commit)
or the new one (after), never a mix; the staging file of a killed run is reused by the next, which
embeds only what is missing.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from llm_embedder.serving.engine import encoder_info, vectors_fingerprint
from llm_embedder.serving.lock import DataDirLock, DataDirLocked
from llm_embedder.serving.stores.base import CollectionSpec
from llm_embedder.serving.stores.sqlite_faiss import DB_FILE

STAGING_FILE = "reembed.sqlite3"
CHUNK = 256  # records embedded and staged per transaction: a kill loses at most this much work


def reembed(
    data_dir: str | Path,
    embedder: Any,
    *,
    model_name: str = "",
    progress: bool | None = None,
    wait_s: float = 2.0,
    _before_commit: Callable[[], None] | None = None,
) -> str:
    """Re-embed the SQLite store in ``data_dir`` with ``embedder``; returns a one-line summary."""
    data_dir = Path(data_dir)
    db_path = data_dir / DB_FILE
    if not db_path.is_file():
        raise FileNotFoundError(f"{data_dir}: no {DB_FILE} here; reembed works on a data dir of the SQLite store")
    target = {
        "fingerprint": vectors_fingerprint(embedder),
        "dim": embedder.dim,
        "encoder": encoder_info(embedder, model_name),
    }
    staging_path = data_dir / STAGING_FILE
    with contextlib.closing(sqlite3.connect(db_path, isolation_level=None)) as source:
        source.execute("PRAGMA synchronous=FULL")  # the switch is durable when reembed returns
        specs = _specs(source)
        if specs and all(s.fingerprint == target["fingerprint"] for s in specs.values()):
            if staging_path.exists():
                staging_path.unlink()  # left by an earlier run of ours that switched to this model
            return f"{data_dir}: every collection already holds vectors of {target['fingerprint']}; nothing to do"
        staging = _open_staging(staging_path, target)
        try:
            staged = _embed_missing(source, staging, embedder, specs, progress)
            lock = DataDirLock(data_dir)
            _acquire_waiting(lock, wait_s)
            try:
                specs = _specs(source)  # a server may have created or dropped collections meanwhile
                staged += _embed_missing(source, staging, embedder, specs, progress)
                old = sorted({s.fingerprint for s in specs.values()})
                records = _switch(source, staging_path, specs, target, _before_commit)
            finally:
                lock.release()
        finally:
            staging.close()
    staging_path.unlink()  # ours, and now applied
    return (
        f"{data_dir}: {records} records of {len(specs)} collections now hold vectors of "
        f"{target['encoder'].get('model', 'the model')} ({target['encoder']['backend']} "
        f"{target['encoder']['dtype']}, fingerprint {target['fingerprint']}; was {', '.join(old) or 'empty'}); "
        f"{staged} embedded by this run"
    )


def _specs(db: sqlite3.Connection) -> dict[str, CollectionSpec]:
    return {name: CollectionSpec(**json.loads(spec)) for name, spec in db.execute("SELECT name, spec FROM collections")}


def _open_staging(path: Path, target: dict[str, Any]) -> sqlite3.Connection:
    staging = sqlite3.connect(path, isolation_level=None)
    staging.execute("PRAGMA synchronous=FULL")
    staging.executescript(
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE IF NOT EXISTS vectors (seq INTEGER PRIMARY KEY, vector BLOB NOT NULL);"
    )
    row = staging.execute("SELECT value FROM meta WHERE key = 'target'").fetchone()
    wanted = json.dumps(target, sort_keys=True)
    if row is None or row[0] != wanted:  # another model's staging (or none): start over
        staging.execute("BEGIN IMMEDIATE")
        staging.execute("DELETE FROM vectors")
        staging.execute("INSERT OR REPLACE INTO meta VALUES ('target', ?)", (wanted,))
        staging.execute("COMMIT")
    return staging


def _embed_missing(
    source: sqlite3.Connection,
    staging: sqlite3.Connection,
    embedder: Any,
    specs: dict[str, CollectionSpec],
    progress: bool | None,
) -> int:
    """Embed the records without a staged vector; returns how many."""
    have = {seq for (seq,) in staging.execute("SELECT seq FROM vectors")}
    rows = source.execute("SELECT seq, collection, text FROM records ORDER BY collection, seq")
    todo = [(seq, collection, text) for seq, collection, text in rows if seq not in have and collection in specs]
    with tqdm(total=len(todo), desc="reembed", unit="record", disable=progress is False or not todo) as bar:
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start : start + CHUNK]
            vectors = np.empty((len(chunk), embedder.dim), dtype="<f4")
            for collection in dict.fromkeys(c for _, c, _ in chunk):
                rows = [i for i, (_, c, _) in enumerate(chunk) if c == collection]
                texts = [chunk[i][2] for i in rows]
                vectors[rows] = embedder.encode_keys(texts, specs[collection].task, show_progress=False)
            staging.execute("BEGIN IMMEDIATE")
            staging.executemany(
                "INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                [
                    (seq, np.ascontiguousarray(v, dtype="<f4").tobytes())
                    for (seq, _, _), v in zip(chunk, vectors, strict=True)
                ],
            )
            staging.execute("COMMIT")
            bar.update(len(chunk))
    return len(todo)


def _acquire_waiting(lock: DataDirLock, wait_s: float) -> None:
    told = False
    while True:
        try:
            lock.acquire()
            return
        except DataDirLocked as exc:
            if wait_s <= 0:
                raise
            if not told:
                print(f"waiting to switch: {exc} (Ctrl-C keeps the old vectors; a rerun resumes)", file=sys.stderr)
                told = True
            time.sleep(wait_s)


def _switch(
    db: sqlite3.Connection,
    staging_path: Path,
    specs: dict[str, CollectionSpec],
    target: dict[str, Any],
    before_commit: Callable[[], None] | None,
) -> int:
    """Every vector and every collection's fingerprint, in one transaction; returns the records switched."""
    db.execute("ATTACH DATABASE ? AS staging", (str(staging_path),))
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            missing = db.execute(
                "SELECT count(*) FROM records WHERE seq NOT IN (SELECT seq FROM staging.vectors)"
            ).fetchone()[0]
            if missing:  # cannot happen under the lock; refuse rather than mix two models' vectors
                raise RuntimeError(f"{missing} records have no new vector; run reembed again")
            db.execute("UPDATE records SET vector = (SELECT vector FROM staging.vectors v WHERE v.seq = records.seq)")
            for name, spec in specs.items():
                new = replace(spec, fingerprint=target["fingerprint"], dim=target["dim"], encoder=target["encoder"])
                db.execute("UPDATE collections SET spec = ? WHERE name = ?", (json.dumps(new.to_dict()), name))
            records = db.execute("SELECT count(*) FROM records").fetchone()[0]
            if before_commit is not None:
                before_commit()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    finally:
        db.execute("DETACH DATABASE staging")
    return records
