"""Encoding speed: ``Embedder.encode_keys`` against ``SentenceTransformer.encode``.

Run from the repository root (offline)::

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 python benchmarks/encode.py
    python benchmarks/encode.py --repeats 3 --batch-size 32 --limit 1000

Both sides embed the same real, mixed-length texts (every ``pos``, ``neg`` and ``history`` string
of ``data/flagembedding-toy/*.json``, deduplicated) with the zoo model ``minilm``
(all-MiniLM-L6-v2, mean pooling, no instructions), the same batch size and the same token budget
(the ``qa`` task's key budget, 256 tokens).  Each side gets one warm-up call, then is timed
``--repeats`` times (best kept), the two sides taking turns to go first.

Printed: texts/second for both, the speed ratio ours/sentence-transformers and the largest cosine
deviation ``1 - min(row cosine)``; then the same for bfloat16 (ours in bfloat16 against
sentence-transformers in float32 and in bfloat16, deviations against the float32 reference).

Target: ratio >= 1.0 in float32, with embeddings identical to within a cosine deviation of 1e-6.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "flagembedding-toy"
FIELDS = ("pos", "neg", "history")
MODEL = "minilm"
TASK = "qa"


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


def time_pair(
    runs: dict[str, Callable[[], np.ndarray]], repeats: int
) -> tuple[dict[str, float], dict[str, float], dict[str, np.ndarray]]:
    """Warm each run up once, then time each ``repeats`` times, alternating which goes first.

    Returns the best wall time of each run, the process CPU time of that call, and its output.
    """
    outputs = {name: np.asarray(run()) for name, run in runs.items()}  # warm-up
    best = {name: (float("inf"), float("inf")) for name in runs}
    names = list(runs)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            start, cpu = time.perf_counter(), time.process_time()
            outputs[name] = np.asarray(runs[name]())
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            best[name] = min(best[name], (wall, cpu))
    return {name: wall for name, (wall, _) in best.items()}, {name: cpu for name, (_, cpu) in best.items()}, outputs


def report(label: str, n: int, seconds: float, cpu: float) -> None:
    print(f"  {label:<34} {seconds:8.3f} s  {n / seconds:9.1f} texts/s   (process CPU {cpu:7.2f} s)")


def load_st(path: Path, max_length: int, dtype: torch.dtype):
    from sentence_transformers import SentenceTransformer

    if dtype == torch.float32:
        st = SentenceTransformer(str(path), device="cpu")
    else:
        try:
            st = SentenceTransformer(str(path), device="cpu", model_kwargs={"dtype": dtype})
        except TypeError:
            st = SentenceTransformer(str(path), device="cpu", model_kwargs={"torch_dtype": dtype})
        if next(st.parameters()).dtype != dtype:
            st = st.to(dtype)
    st.max_seq_length = max_length
    return st


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32, help="texts per batch, both sides (default 32)")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per side; the best is kept (default 1)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N texts")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--no-bf16", action="store_true", help="skip the bfloat16 comparison")
    parser.add_argument("--data", type=Path, default=DATA_DIR, help=f"folder of *.json files (default {DATA_DIR})")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)

    from llm_embedder.models import zoo
    from llm_embedder.models.embedder import Embedder

    texts = load_texts(args.data, args.limit)
    if not texts:
        raise SystemExit(f"no texts found in {args.data}")
    path = zoo.resolve(MODEL)
    ours = Embedder.from_pretrained(MODEL)
    max_length = ours.tasks.get_task(TASK).key_max_length
    st = load_st(path, max_length, torch.float32)

    attn = getattr(ours.model.config, "_attn_implementation", "?")
    st_attn = getattr(st[0].auto_model.config, "_attn_implementation", "?")
    print(
        f"texts: {len(texts)} (from {args.data}), batch size {args.batch_size}, max length {max_length}, "
        f"task {TASK!r}, repeats {args.repeats}"
    )
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"attention: ours {attn}, sentence-transformers {st_attn}"
    )

    def run_ours(model: Embedder) -> Callable[[], np.ndarray]:
        return lambda: model.encode_keys(texts, TASK, batch_size=args.batch_size, show_progress=False)

    def run_st(model) -> Callable[[], np.ndarray]:
        return lambda: model.encode(
            texts, batch_size=args.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )

    n = len(texts)
    print("\nfloat32")
    times, cpu, outs = time_pair({"ours": run_ours(ours), "st": run_st(st)}, args.repeats)
    report("ours (Embedder.encode_keys)", n, times["ours"], cpu["ours"])
    report("sentence-transformers", n, times["st"], cpu["st"])
    reference = outs["st"]
    print(f"  speed ratio ours/ST: {times['st'] / times['ours']:.3f}  (CPU-time ratio {cpu['st'] / cpu['ours']:.3f})")
    print(f"  cosine deviation (1 - min cos): {1 - min_cosine(outs['ours'], reference):.3e}")

    if args.no_bf16:
        return
    del ours
    ours_bf16 = Embedder.from_pretrained(MODEL, dtype="bfloat16")
    st_bf16 = load_st(path, max_length, torch.bfloat16)
    print(
        f"\nbfloat16 (ours {next(ours_bf16.model.parameters()).dtype}, "
        f"sentence-transformers {next(st_bf16.parameters()).dtype})"
    )
    times_bf, cpu_bf, outs_bf = time_pair({"ours": run_ours(ours_bf16), "st": run_st(st_bf16)}, args.repeats)
    report("ours bf16", n, times_bf["ours"], cpu_bf["ours"])
    report("sentence-transformers bf16", n, times_bf["st"], cpu_bf["st"])
    report("sentence-transformers fp32 (above)", n, times["st"], cpu["st"])
    print(f"  speed ratio ours bf16 / ST fp32: {times['st'] / times_bf['ours']:.3f}")
    print(f"  speed ratio ours bf16 / ST bf16: {times_bf['st'] / times_bf['ours']:.3f}")
    print(f"  cosine deviation vs fp32 reference, ours bf16: {1 - min_cosine(outs_bf['ours'], reference):.3e}")
    print(f"  cosine deviation vs fp32 reference, ST bf16:   {1 - min_cosine(outs_bf['st'], reference):.3e}")
    print(f"  cosine deviation ours bf16 vs ST bf16:         {1 - min_cosine(outs_bf['ours'], outs_bf['st']):.3e}")


if __name__ == "__main__":
    main()
