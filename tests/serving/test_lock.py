"""One process per data dir: a second store or server is refused with one line naming the holder; a dead
holder's lock is no obstacle; the data survives both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from processes import cli, subprocess_env
from serving_helpers import open_test_store

from llm_embedder.serving.lock import LOCK_FILE, DataDirLocked


def test_second_store_is_refused_until_the_first_closes(store_kind, tmp_path):
    first = open_test_store(store_kind, tmp_path / "d")
    with pytest.raises(DataDirLocked, match=f"in use by process {os.getpid()} .*one server per data dir"):
        open_test_store(store_kind, tmp_path / "d")
    first.close()
    second = open_test_store(store_kind, tmp_path / "d")  # released on close
    second.close()


_HOLDER = """
import sys, time
from llm_embedder.serving.stores.sqlite_faiss import SqliteFaissStore
store = SqliteFaissStore(sys.argv[1])
from llm_embedder.serving.stores.base import CollectionSpec
store.create(CollectionSpec("ex", "examples", "icl", "f", 4))
print("ready", flush=True)
time.sleep(120)
"""


def test_lock_of_a_killed_process_is_stale_and_a_live_one_is_named(tmp_path):
    from llm_embedder.serving.stores.sqlite_faiss import SqliteFaissStore

    data = tmp_path / "d"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(data)], env=subprocess_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(DataDirLocked, match=f"in use by process {holder.pid} "):
            SqliteFaissStore(data)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert str(holder.pid) in (data / LOCK_FILE).read_text()  # the dead holder's record is still there
    store = SqliteFaissStore(data)  # and is no obstacle
    assert [s.name for s in store.specs()] == ["ex"]
    store.close()


def test_second_server_is_refused_with_one_line(tiny_encoder_dir, tmp_path):
    from llm_embedder.serving.stores.sqlite_faiss import SqliteFaissStore

    store = SqliteFaissStore(tmp_path / "d")  # stands for the first server
    try:
        cmd = cli("serve", "--model", str(tiny_encoder_dir), "--device", "cpu", "--data-dir", str(tmp_path / "d"))
        proc = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    finally:
        store.close()
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("llm-embedder: error: data dir") and f"in use by process {os.getpid()}" in lines[0]
