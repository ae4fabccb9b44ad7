"""Approximate search at scale: Flat against IVF, IVF-SQ8, HNSW (and IVF-PQ) over 1e4 ... 1e6 vectors.

Run from the repository root (offline)::

    python benchmarks/search.py                        # sizes 1e4, 1e5, 1e6
    python benchmarks/search.py --sizes 10000,100000 --hnsw-max 100000

Vectors: real texts where available, repeated with noise beyond.  The base is ``minilm``'s key
vectors of real passages (the demo's qa, tool and convsearch corpora, built in a temporary folder,
or ``--demo DIR``; ``--base N`` of them); the queries are its query vectors of the demo's test
queries and of the toy records.  A corpus of ``n`` vectors repeats the base with Gaussian noise
(``--noise``, the noise's norm relative to the unit vectors), normalised again; queries get the same noise.

For each size and index: build time (train + add), memory (the saved index's bytes), queries/s
over ``--queries`` queries at k=10 (one batch, every thread), and recall@10 against Flat's exact
top 10.  IVF lists ``4 sqrt(n)`` (the ``ivf`` preset of retrieval/dense.py), trained on
``--train-size`` sampled vectors; ``nprobe`` (IVF) and ``efSearch`` (HNSW) are raised until
recall@10 >= ``--target`` (0.95), and the first setting that reaches it is reported.

Goal (issue 12): an approximate index at least 10x Flat's queries/s at recall@10 >= 0.95 at 1e6.
Writes ``--out`` (default runs/bench-search/): search.json and search.png (cost against size).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import faiss  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encode import DATA_DIR, QUALITY, build_demo  # noqa: E402

K = 10
NPROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
EF_SEARCHES = (16, 32, 64, 128, 256, 512)


def real_vectors(demo: Path, base: int) -> tuple[np.ndarray, np.ndarray]:
    """``minilm`` key vectors of up to ``base`` real passages, and query vectors of the real test queries."""
    from llm_embedder.fileio import read_jsonl
    from llm_embedder.models.embedder import Embedder
    from llm_embedder.retrieval.corpus import Corpus

    embedder = Embedder.from_pretrained("minilm", device="cpu", backend="auto")
    texts, queries = [], []
    for _task, test_file, corpus_file, template in QUALITY:
        texts += Corpus.from_jsonl(demo / corpus_file, key_template=template).texts
        queries += [r["query"] for r in read_jsonl(demo / test_file)]
    for file in sorted(DATA_DIR.glob("*.json")):
        queries += [r["query"] for r in read_jsonl(file) if isinstance(r.get("query"), str)]
    texts = [texts[i] for i in np.linspace(0, len(texts) - 1, min(base, len(texts))).round().astype(int)]
    print(f"encoding {len(texts)} passages and {len(queries)} queries ({embedder})", flush=True)
    keys = embedder.encode_keys(texts, "qa", show_progress=False)
    return keys, embedder.encode_queries(queries, "qa", show_progress=False)


def noisy(base: np.ndarray, n: int, noise: float, seed: int) -> np.ndarray:
    """``n`` rows: the base repeated, each copy moved by Gaussian noise of norm ~``noise``, renormalised."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        rows = np.arange(start, min(n, start + 100_000))
        x = base[rows % len(base)] + rng.standard_normal((len(rows), base.shape[1]), dtype=np.float32) * (
            noise / np.sqrt(base.shape[1])
        )
        out[rows] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def index_bytes(index: faiss.Index) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        faiss.write_index(index, f"{tmp}/i")
        return os.path.getsize(f"{tmp}/i")


def timed_search(index: faiss.Index, queries: np.ndarray) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    _, ids = index.search(queries, K)
    return len(queries) / (time.perf_counter() - start), ids


def recall(ids: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / K for a, b in zip(ids, exact, strict=True)]))


def measure(name, factory, vectors, queries, exact, train_size, knob, values, target) -> dict:
    index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    start = time.perf_counter()
    if not index.is_trained:
        sample = vectors[np.sort(np.random.default_rng(0).choice(len(vectors), min(train_size, len(vectors)), False))]
        index.train(sample)
    index.add(vectors)
    build = time.perf_counter() - start
    space = faiss.ParameterSpace()
    row = {"index": name, "factory": factory, "build_s": build, "bytes": index_bytes(index)}
    for value in values:
        if knob:
            space.set_index_parameter(index, knob, value)
        qps, ids = timed_search(index, queries)
        row.update(qps=qps, recall=recall(ids, exact), **({knob: value} if knob else {}))
        if row["recall"] >= target:
            break
    del index
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="corpus sizes (comma-separated)")
    parser.add_argument("--base", type=int, default=2000, help="real passages encoded (default 2000)")
    parser.add_argument("--queries", type=int, default=1000, help="queries searched (default 1000)")
    parser.add_argument("--noise", type=float, default=0.5, help="noise norm of the repeated vectors (default 0.5)")
    parser.add_argument("--train-size", type=int, default=50_000, help="IVF/PQ/SQ training sample (default 5e4)")
    parser.add_argument("--hnsw-max", type=int, default=100_000, help="largest size HNSW is built for (slow)")
    parser.add_argument("--pq", action="store_true", help="also IVF-PQ (48 bytes a vector; slow to train)")
    parser.add_argument("--target", type=float, default=0.95, help="recall@10 the knobs are raised to")
    parser.add_argument("--demo", type=Path, default=None, help="demo data folder (default: build one)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-search"))
    args = parser.parse_args()

    import psutil

    from llm_embedder.retrieval.dense import expand_factory

    with tempfile.TemporaryDirectory() as tmp:
        base, base_queries = real_vectors(args.demo or build_demo(Path(tmp) / "demo"), args.base)
    dim = base.shape[1]
    print(
        f"{len(base)} real key vectors, {len(base_queries)} real queries, dim {dim}; noise {args.noise}; "
        f"{faiss.omp_get_max_threads()} threads; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    rows = []
    header = f"{'n':>8} {'index':<10} {'factory':<16} {'knob':>12} {'recall@10':>9} {'q/s':>9} {'x Flat':>7} "
    print(header + f"{'build s':>8} {'MB':>8} {'RSS GB':>7}")
    for n in (int(float(s)) for s in args.sizes.split(",")):
        vectors = noisy(base, n, args.noise, seed=1)
        queries = noisy(base_queries, args.queries, args.noise, seed=2)
        flat = faiss.IndexFlatIP(dim)
        start = time.perf_counter()
        flat.add(vectors)
        flat_build = time.perf_counter() - start
        flat_qps, exact = timed_search(flat, queries)
        results = [
            {
                "index": "Flat",
                "factory": "Flat",
                "build_s": flat_build,
                "bytes": index_bytes(flat),
                "qps": flat_qps,
                "recall": 1.0,
            }
        ]
        del flat
        nlist_factory = expand_factory("ivf", n, dim)
        candidates = [
            ("IVF", nlist_factory, "nprobe", NPROBES),
            ("IVF-SQ8", expand_factory("ivf-sq8", n, dim), "nprobe", NPROBES),
        ]
        if args.pq:  # PQ48 codebooks train slowly and reached recall@10 ~0.6 only on these vectors
            candidates.append(("IVF-PQ", expand_factory("ivf-pq", n, dim), "nprobe", NPROBES))
        if n <= args.hnsw_max:
            candidates.append(("HNSW", "HNSW32", "efSearch", EF_SEARCHES))
        for name, factory, knob, values in candidates:
            results.append(measure(name, factory, vectors, queries, exact, args.train_size, knob, values, args.target))
        rss = psutil.Process().memory_info().rss / 2**30
        for r in results:
            r.update(n=n, speedup=r["qps"] / flat_qps, rss_gb=rss)
            knob = next((f"{k}={r[k]}" for k in ("nprobe", "efSearch") if k in r), "")
            print(
                f"{n:8d} {r['index']:<10} {r['factory']:<16} {knob:>12} {r['recall']:9.3f} {r['qps']:9.1f} "
                f"{r['speedup']:7.1f} {r['build_s']:8.1f} {r['bytes'] / 2**20:8.1f} {rss:7.2f}",
                flush=True,
            )
        rows += results
        del vectors

    best = [
        r for r in rows if r["n"] == max(x["n"] for x in rows) and r["index"] != "Flat" and r["recall"] >= args.target
    ]
    if best:
        top = max(best, key=lambda r: r["speedup"])
        print(
            f"\nat n={top['n']}: {top['index']} {top['speedup']:.1f}x Flat's queries/s at recall@10 {top['recall']:.3f}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    plot(rows, args.out / "search.png")
    print(f"wrote {args.out}/search.json and search.png")


def plot(rows: list[dict], file: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name in dict.fromkeys(r["index"] for r in rows):
        mine = [r for r in rows if r["index"] == name]
        sizes = [r["n"] for r in mine]
        axes[0].plot(sizes, [1e3 / r["qps"] for r in mine], "o-", label=name)
        axes[1].plot(sizes, [r["build_s"] for r in mine], "o-", label=name)
        axes[2].plot(sizes, [r["bytes"] / 2**20 for r in mine], "o-", label=name)
    for ax, title in zip(axes, ("ms per query (recall@10 >= target)", "build seconds", "index MB"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("vectors")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(file, dpi=110)


if __name__ == "__main__":
    main()
