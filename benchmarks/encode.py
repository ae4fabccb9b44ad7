"""Encoding speed and quality of every backend/dtype, against ``SentenceTransformer.encode`` float32.

Run from the repository root (offline)::

    python benchmarks/encode.py                       # builds the demo data in a temporary folder
    python benchmarks/encode.py --demo DIR --repeats 2 --limit 1000

Speed: every variant embeds the same real, mixed-length texts (every ``pos``, ``neg`` and
``history`` string of ``data/flagembedding-toy/*.json``, deduplicated: 1,912 texts of 20 to 8,400
characters) with the zoo model ``minilm`` (all-MiniLM-L6-v2, mean pooling, no instructions), the same
batch size and token budget (the ``qa`` key budget).  Each variant gets one warm-up call, then is
timed ``--repeats`` times (best kept), variants taking turns in a rotating order so that a change
of load on a shared machine spreads over all of them.

Variants: sentence-transformers float32 (the reference), ours torch float32, torch bfloat16, onnx
float32 and onnx int8 (onnxruntime dynamic quantisation).  Printed for each: texts/s, the speed
ratio to the reference, the largest cosine deviation ``1 - min(row cosine)`` from the reference
vectors, and the retrieval quality: nDCG@10 on the demo's qa (the qa-retrieval files), tool
(toolbench) and convsearch (qrecc) test splits, Flat inner-product search over each corpus.

Goals (issue 12): one variant at least 6x the reference with nDCG@10 within 0.005 of float32 on
each task, and a float32 variant at least 2x.  ``default_encoding`` (models/loading.py) follows the
outcome on this kind of CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "flagembedding-toy"
FIELDS = ("pos", "neg", "history")
MODEL = "minilm"
TASK = "qa"
# (task, test file, corpus file, key template) of the demo data: the retrieval-labelled test splits.
QUALITY = (
    ("qa", "eval/qa/retrieval/test.json", "eval/qa/retrieval/corpus.json", "{title} {text}"),
    ("tool", "eval/tool/toolbench/test.json", "eval/tool/toolbench/corpus.json", "{text}"),
    ("convsearch", "eval/convsearch/qrecc/test.concat.json", "eval/convsearch/qrecc/corpus.json", "{text}"),
)
VARIANTS = (("torch", "float32"), ("torch", "bfloat16"), ("onnx", "float32"), ("onnx", "int8"))


def load_texts(data_dir: Path, limit: int | None = None) -> list[str]:
    """Every pos/neg/history string of the toy files (JSON lines), deduplicated, in file order."""
    seen: dict[str, None] = {}
    for file in sorted(data_dir.glob("*.json")):
        for line in file.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            for name in FIELDS:
                for text in record.get(name) or ():
                    if isinstance(text, str) and text.strip():
                        seen.setdefault(text, None)
    texts = list(seen)
    return texts[:limit] if limit else texts


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(cos.min())


def time_rotating(
    runs: dict[str, Callable[[], np.ndarray]], warm: dict[str, Callable[[], np.ndarray]], repeats: int
) -> tuple[dict[str, float], dict]:
    """Warm each run up (``warm``), then time each ``repeats`` times, rotating which goes first; best time kept."""
    for run in warm.values():
        run()
    best, outputs = dict.fromkeys(runs, float("inf")), {}
    names = list(runs)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            outputs[name] = np.asarray(runs[name]())
            best[name] = min(best[name], time.perf_counter() - start)
    return best, outputs


def build_demo(target: Path, size: str = "small") -> Path:
    """``llm-embedder data build-demo`` into ``target`` (also used by benchmarks/score.py)."""
    cmd = [sys.executable, "-m", "llm_embedder.cli", "-q", "data", "build-demo", "--out", str(target), "--size", size]
    subprocess.run(cmd, check=True)
    return target


def ndcg_at_10(embedder, demo: Path) -> dict[str, float]:
    """nDCG@10 of Flat inner-product search on each retrieval-labelled demo test split."""
    from llm_embedder.evaluation.metrics import ndcg_at_k
    from llm_embedder.fileio import read_jsonl
    from llm_embedder.retrieval.corpus import Corpus

    out = {}
    for task, test_file, corpus_file, template in QUALITY:
        rows = read_jsonl(demo / test_file)
        corpus = Corpus.from_jsonl(demo / corpus_file, key_template=template)
        keys = embedder.encode_keys(corpus.texts, task, show_progress=False)
        queries = embedder.encode_queries([r["query"] for r in rows], task, show_progress=False)
        top = np.argsort(-(queries @ keys.T), axis=1, kind="stable")[:, :10]
        scores = [
            ndcg_at_k([corpus.ids[j] for j in ranking], dict.fromkeys(r["pos_index"], 1.0), 10)
            for ranking, r in zip(top, rows, strict=True)
        ]
        out[task] = float(np.mean(scores))
    return out


def load_st(path: Path, max_length: int):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(path), device="cpu")
    st.max_seq_length = max_length
    return st


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32, help="texts per batch, every variant (default 32)")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per variant; the best is kept (default 1)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N texts for speed")
    parser.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads (default: torch's)")
    parser.add_argument("--data", type=Path, default=DATA_DIR, help=f"folder of *.json files (default {DATA_DIR})")
    parser.add_argument("--demo", type=Path, default=None, help="demo data folder (default: build one in a temp dir)")
    parser.add_argument("--demo-size", choices=("small", "quick"), default="small", help="demo data size built")
    parser.add_argument("--no-quality", action="store_true", help="skip nDCG@10")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from llm_embedder.models import zoo
    from llm_embedder.models.embedder import Embedder
    from llm_embedder.models.loading import cpu_has_bf16, default_encoding

    texts = load_texts(args.data, args.limit)
    lengths = np.array([len(t) for t in texts])
    embedders = {
        f"{backend} {dtype}": Embedder.from_pretrained(MODEL, device="cpu", backend=backend, dtype=dtype)
        for backend, dtype in VARIANTS
    }
    max_length = embedders["torch float32"].tasks.get_task(TASK).key_max_length
    st = load_st(zoo.resolve(MODEL), max_length)
    print(
        f"{len(texts)} texts (from {args.data}; {lengths.min()}-{lengths.max()} chars, "
        f"median {np.median(lengths):.0f}), batch size {args.batch_size}, max length {max_length}, "
        f"repeats {args.repeats}"
    )
    print(
        f"{platform.processor() or platform.machine()}, bf16 units: {cpu_has_bf16()}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )

    def variants(batch: list[str]) -> dict[str, Callable[[], np.ndarray]]:
        runs: dict[str, Callable[[], np.ndarray]] = {
            "sentence-transformers float32": lambda: st.encode(
                batch,
                batch_size=args.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        }
        for name, emb in embedders.items():
            runs[f"ours {name}"] = lambda emb=emb: emb.encode_keys(
                batch, TASK, batch_size=args.batch_size, show_progress=False
            )
        return runs

    # Warm-up on a spread of 64 texts (lazy initialisation, oneDNN/onnxruntime kernel choice).
    runs = variants(texts)
    seconds, outputs = time_rotating(runs, variants(texts[:: max(1, len(texts) // 64)]), args.repeats)
    reference_name = "sentence-transformers float32"
    reference = outputs[reference_name]

    quality: dict[str, dict[str, float]] = {}
    if not args.no_quality:
        with tempfile.TemporaryDirectory() as tmp:
            demo = args.demo or build_demo(Path(tmp) / "demo", size=args.demo_size)
            for name, emb in embedders.items():
                quality[name] = ndcg_at_10(emb, demo)

    tasks = [q[0] for q in QUALITY]
    header = f"{'variant':<32} {'texts/s':>9} {'ratio':>6} {'1-min cos':>10}"
    if quality:
        header += "".join(f" {'nDCG@10 ' + t:>18}" for t in tasks)
    print("\n" + header)
    base = quality.get("torch float32")
    for name in runs:
        short = name.removeprefix("ours ")
        line = (
            f"{name:<32} {len(texts) / seconds[name]:9.1f} {seconds[reference_name] / seconds[name]:6.2f} "
            f"{1 - min_cosine(outputs[name], reference):10.2e}"
        )
        if short in quality:
            line += "".join(f" {quality[short][t]:8.4f} ({quality[short][t] - base[t]:+.4f})" for t in tasks)
        print(line)
    backend, dtype = default_encoding(torch.device("cpu"))
    print(f"\ndefault on this machine (models/loading.py default_encoding): backend {backend}, dtype {dtype}")


if __name__ == "__main__":
    main()
