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

Fidelity (``--fidelity``): every variant encodes every query and key of the demo's retrieval
columns (qa-retrieval, tool, convsearch) in the test and ood-test splits (943 queries and 11,106
keys at the default size ``small``), taking turns per (column, split, side) so that a change of load
spreads over all; the speed ratio to sentence-transformers float32 is measured on that same work,
and each variant is judged against ours torch float32 by the fidelity rule
(``llm_embedder/evaluation/fidelity.py``: mean cosine >= 0.999, top-10 overlap >= 0.95, the paired
difference of each column's leaderboard metric, cluster-bootstrapped over both splits, with an
interval holding 0 inside +-0.01, at least 600 queries).  The machine's load average is recorded
before and after, ``--out`` takes the whole record as JSON, and with ``--save-verdicts`` the library's
encodings' verdicts and speeds are saved for this machine (``models/verdicts.py``), which ``--backend
auto`` then follows (opt-in: a saved verdict changes what ``serve`` and ``encode`` pick by default)::

    python benchmarks/encode.py --fidelity --demo DIR --out fidelity.json
    python benchmarks/encode.py --fidelity --demo DIR --splits test --variants "torch bfloat16"   # cheaper

Goals (issues 12 and 22): one variant at least 6x the reference that passes the fidelity rule, and
a float32 variant at least 2x.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
# The leaderboard's retrieval columns: (column, task, metric, test file, corpus file, key template), in
# each split folder of the demo data.
COLUMNS = (
    ("qa-retrieval", "qa", "ndcg@10", "qa/retrieval/test.json", "qa/retrieval/corpus.json", "{title} {text}"),
    ("tool", "tool", "ndcg@5", "tool/toolbench/test.json", "tool/toolbench/corpus.json", "{text}"),
    (
        "convsearch",
        "convsearch",
        "ndcg@3",
        "convsearch/qrecc/test.concat.json",
        "convsearch/qrecc/corpus.json",
        "{text}",
    ),
)
SPLITS = {"test": "eval", "ood-test": "ood-test"}
REFERENCE = "torch float32"
ST = "sentence-transformers float32"
OUT_KIND = "llm-embedder benchmark: encode --fidelity"


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
    parser.add_argument(
        "--fidelity", action="store_true", help="speed and the fidelity rule on the demo's test+ood-test"
    )
    parser.add_argument("--out", type=Path, default=None, help="--fidelity: write the record as JSON here")
    parser.add_argument(
        "--save-verdicts", action="store_true", help="--fidelity: save this machine's verdicts (auto follows them)"
    )
    parser.add_argument(
        "--compile", action="store_true", help="--fidelity: add each torch encoding judged under torch.compile"
    )
    parser.add_argument(
        "--splits", default=",".join(SPLITS), help=f"--fidelity: demo splits judged (default {','.join(SPLITS)})"
    )
    parser.add_argument(
        "--variants",
        default=None,
        help="--fidelity: comma-separated encodings judged besides torch and onnx float32 (default: "
        + ", ".join(f"{b} {d}" for b, d in VARIANTS[1:])
        + ")",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.fidelity:
        fidelity_main(args, argv)
        return

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


# ----------------------------------------------------------------------------- --fidelity
@dataclass
class Part:
    """One column's queries and keys in one split."""

    column: str
    task: str
    metric: str
    split: str
    queries: list[str]
    labels: list[dict[int, float]]
    clusters: list[str] | None
    unit: str | None
    key_ids: list[int]
    keys: list[str]


def load_parts(demo: Path, splits: Sequence[str] = tuple(SPLITS)) -> list[Part]:
    """The retrieval columns of the demo data, per split (labels and clusters as the evaluator reads them)."""
    from llm_embedder.fileio import read_jsonl
    from llm_embedder.retrieval.corpus import Corpus

    parts = []
    for column, task, metric, test_file, corpus_file, template in COLUMNS:
        for split in splits:
            folder = SPLITS[split]
            rows = read_jsonl(demo / folder / test_file)
            corpus = Corpus.from_jsonl(demo / folder / corpus_file, key_template=template)
            labels = [
                dict(zip(r["pos_index"], r.get("pos_relevance") or [1.0] * len(r["pos_index"]), strict=True))
                for r in rows
            ]
            clustered = all(r.get("cluster") is not None for r in rows)
            units = {r.get("cluster_unit") for r in rows}
            parts.append(
                Part(
                    column,
                    task,
                    metric,
                    split,
                    [r["query"] for r in rows],
                    labels,
                    [f"{split}/{r['cluster']}" for r in rows] if clustered else None,
                    units.pop() if clustered and len(units) == 1 else None,
                    list(corpus.ids),
                    list(corpus.texts),
                )
            )
    return parts


def make_variants(args) -> dict[str, Any]:
    """Our encoders by name (the float32 reference first)."""
    from llm_embedder.models.embedder import Embedder

    chosen = (
        VARIANTS[1:] if args.variants is None else [tuple(v.split()) for v in args.variants.split(",") if v.strip()]
    )
    unknown = [" ".join(v) for v in chosen if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {', '.join(unknown)}; known: {', '.join(' '.join(v) for v in VARIANTS)}")
    out = {}
    # Both float32 encodings are always judged: the verdicts must hold the default (onnx float32),
    # or a run of a few variants would have ``auto`` fall back to a slower float32.
    always = [VARIANTS[0], *([("onnx", "float32")] if importlib.util.find_spec("onnxruntime") else [])]
    for backend, dtype in [*always, *(v for v in chosen if v not in always)]:
        out[f"{backend} {dtype}"] = Embedder.from_pretrained(
            MODEL, device="cpu", backend=backend, dtype=dtype, batch_size=args.batch_size
        )
    if args.compile:
        for name in [n for n in out if n.startswith("torch ")]:
            compiled = Embedder.from_pretrained(MODEL, device="cpu", dtype=name.split()[1], batch_size=args.batch_size)
            compiled.model = torch.compile(compiled.model, dynamic=True)
            out[f"{name} compiled"] = compiled
    return out


def encode_part(runner, part: Part, side: str) -> np.ndarray:
    """``runner`` (an Embedder, or a SentenceTransformer given the task's texts and budget) on one side of a part."""
    texts = part.queries if side == "queries" else part.keys
    if hasattr(runner, "encode_queries"):
        encode = runner.encode_queries if side == "queries" else runner.encode_keys
        return encode(texts, part.task, show_progress=False)
    st, table, batch_size = runner
    spec = table.get_task(part.task)
    st.max_seq_length = spec.query_max_length if side == "queries" else spec.key_max_length
    shown = [spec.query_text(t) if side == "queries" else spec.key_text(t) for t in texts]
    return st.encode(
        shown, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )


def judge_variant(parts: list[Part], ref: dict, cand: dict, rule) -> Any:
    """The fidelity rule on one variant's vectors against the reference's, columns pooled over splits."""
    from llm_embedder.evaluation import fidelity

    cosines, overlaps, per_column = [], [], {}
    for i, part in enumerate(parts):
        (rq, rk), (cq, ck) = ref[i], cand[i]
        cosines += [fidelity.row_cosines(rq, cq), fidelity.row_cosines(rk, ck)]
        ref_top, cand_top = (
            fidelity.top_k(rq, rk, max(rule.overlap_k, 10)),
            fidelity.top_k(cq, ck, max(rule.overlap_k, 10)),
        )
        overlaps.append(fidelity.overlaps(ref_top[:, : rule.overlap_k], cand_top[:, : rule.overlap_k]))
        column = per_column.setdefault(
            part.column, {"metric": part.metric, "ref": [], "cand": [], "clusters": [], "units": set()}
        )
        column["ref"] += list(fidelity.per_query_metric(ref_top, part.key_ids, part.labels, part.metric))
        column["cand"] += list(fidelity.per_query_metric(cand_top, part.key_ids, part.labels, part.metric))
        column["clusters"] += part.clusters if part.clusters is not None else [None] * len(part.queries)
        column["units"].add(part.unit)
    checks = []
    for name, c in per_column.items():
        clustered = None not in c["clusters"]
        unit = c["units"].pop() if clustered and len(c["units"]) == 1 else "cluster"
        checks.append(
            fidelity.check_column(
                name, c["metric"], c["ref"], c["cand"], c["clusters"] if clustered else None, unit, rule
            )
        )
    return fidelity.judge(checks, np.concatenate(cosines), np.concatenate(overlaps), rule)


def _check_out(path: Path) -> None:
    """Refuse, before any work, an ``--out`` that is a folder or a file this benchmark did not write."""
    if path.is_dir():
        raise SystemExit(f"--out {path} is a folder; give a file name")
    if path.exists():
        try:
            ours = json.loads(path.read_text(encoding="utf-8")).get("kind") == OUT_KIND
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise SystemExit(f"--out {path} exists and is not an output of this benchmark; choose another name")


def _write_out(path: Path, record: dict) -> None:
    from llm_embedder.fileio import write_json

    _check_out(path)
    write_json(path, record)


def _cell(column: dict) -> str:
    low, high = column["interval"]
    return f"{column['difference']:+.4f} [{low:+.4f}, {high:+.4f}]"


def fidelity_main(args, argv: Sequence[str] | None) -> None:
    from llm_embedder.evaluation.fidelity import RULE
    from llm_embedder.models import verdicts, zoo
    from llm_embedder.models.cpu import bf16_speedup
    from llm_embedder.models.loading import cpu_has_bf16, default_encoding

    if args.out is not None:
        _check_out(args.out)
    splits = [x.strip() for x in args.splits.split(",") if x.strip()]
    if not splits or set(splits) - set(SPLITS):
        raise SystemExit(f"--splits: choose among {', '.join(SPLITS)}, got {args.splits!r}")
    load_before = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        demo = args.demo or build_demo(Path(tmp) / "demo", size=args.demo_size)
        parts = load_parts(demo, splits)
    embedders = make_variants(args)
    reference = embedders[REFERENCE]
    st = load_st(zoo.resolve(MODEL), reference.tasks.get_task(TASK).key_max_length)
    runners: dict[str, Any] = {ST: (st, reference.tasks, args.batch_size), **embedders}
    n_queries, n_keys = sum(len(p.queries) for p in parts), sum(len(p.keys) for p in parts)
    print(
        f"{n_queries} queries and {n_keys} keys ({', '.join(sorted({p.column for p in parts}))}; "
        f"{', '.join(splits)}) from {args.demo or f'a fresh {args.demo_size} demo build'}; batch size {args.batch_size}"
    )
    print(
        f"{verdicts.cpu_model()}, {os.cpu_count()} CPUs, bf16 units: {cpu_has_bf16()}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, load average before {load_before[0]:.2f}"
    )

    # Warm-up (lazy initialisation, kernel choice, compilation) on a spread of 64 keys, untimed.
    spread = Part("warm-up", TASK, "ndcg@10", "", [], [], None, None, [], [p.keys[0] for p in parts] * 11)
    for runner in runners.values():
        encode_part(runner, spread, "keys")
    names = list(runners)
    seconds = dict.fromkeys(names, 0.0)
    vectors: dict[str, list[list[np.ndarray]]] = {name: [[None, None] for _ in parts] for name in names}
    chunk = 0
    for i, part in enumerate(parts):
        for s, side in enumerate(("queries", "keys")):
            for name in names[chunk % len(names) :] + names[: chunk % len(names)]:
                begin = time.perf_counter()
                vectors[name][i][s] = np.asarray(encode_part(runners[name], part, side), dtype=np.float32)
                seconds[name] += time.perf_counter() - begin
            chunk += 1
            texts_done = len(part.queries if side == "queries" else part.keys)
            print(
                f"  {part.column} {part.split} {side}: {texts_done} texts x {len(names)} variants, "
                f"{time.perf_counter() - started:.0f} s so far",
                file=sys.stderr,
                flush=True,
            )
    load_after = os.getloadavg()

    texts = n_queries + n_keys
    results = {}
    for name in names:
        verdict = judge_variant(parts, vectors[REFERENCE], vectors[name], RULE)
        results[name] = {
            "seconds": seconds[name],
            "texts_per_s": texts / seconds[name],
            "ratio_to_st_float32": seconds[ST] / seconds[name],
            "verdict": verdict.to_dict(),
        }
    columns = [c[0] for c in COLUMNS]
    print(f"\n{'variant':<32} {'texts/s':>8} {'x ST':>5} {'mean cos':>9} {'top-10':>6}", end="")
    print("".join(f" {c + ' diff [95% interval]':>30}" for c in columns), " verdict")
    for name in names:
        r, v = results[name], results[name]["verdict"]
        by_column = {c["name"]: c for c in v["columns"]}
        cells = "".join(f" {_cell(by_column[c]):>30}" for c in columns)
        print(
            f"{name:<32} {r['texts_per_s']:8.1f} {r['ratio_to_st_float32']:5.2f} {v['mean_cosine']:9.6f} "
            f"{v['overlap']:6.3f}{cells}  {'pass' if v['passed'] else 'FAIL'}"
        )
    ref_columns = {c["name"]: c for c in results[REFERENCE]["verdict"]["columns"]}
    print(
        "float32 reference: "
        + ", ".join(f"{c} {ref_columns[c]['metric']} {ref_columns[c]['reference']:.4f}" for c in columns)
    )
    for name in names:
        for reason in results[name]["verdict"]["reasons"]:
            print(f"  {name}: {reason}")

    arch = verdicts.architecture(reference.model.config)
    judged = n_queries >= RULE.min_queries
    saved = None
    if judged and args.save_verdicts:
        encodings = [
            {
                "backend": name.split()[0],
                "dtype": name.split()[1],
                "passed": results[name]["verdict"]["passed"],
                "texts_per_s": results[name]["texts_per_s"],
                "ratio_to_st_float32": results[name]["ratio_to_st_float32"],
            }
            for name in embedders
            if len(name.split()) == 2  # the library's own encodings (not a benchmark-only lever)
        ]
        saved = verdicts.write_verdicts(
            {
                "architecture": arch,
                "model": MODEL,
                "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "threads": torch.get_num_threads(),
                "load_average": {"before": list(load_before), "after": list(load_after)},
                "encodings": encodings,
            }
        )
    backend, dtype = default_encoding(torch.device("cpu"), arch)
    print(
        f"\nload average after {load_after[0]:.2f}; {time.perf_counter() - started:.0f} s in all; "
        + (
            f"verdicts saved to {saved}"
            if saved
            else "verdicts not saved" + ("" if judged else f" (fewer than {RULE.min_queries} queries)")
        )
    )
    print(f"--backend auto on this machine for {MODEL}'s architecture: backend {backend}, dtype {dtype}")
    if args.out is not None:
        _write_out(
            args.out,
            {
                "kind": OUT_KIND,
                "command": ["benchmarks/encode.py", *(sys.argv[1:] if argv is None else argv)],
                "machine": verdicts.machine(),
                "threads": torch.get_num_threads(),
                "bf16_probe": bf16_speedup(),
                "batch_size": args.batch_size,
                "load_average": {"before": list(load_before), "after": list(load_after)},
                "splits": splits,
                "queries": n_queries,
                "keys": n_keys,
                "reference": REFERENCE,
                "speed_reference": ST,
                "variants": results,
                "auto": {"backend": backend, "dtype": dtype},
                "verdicts_file": str(saved) if saved else None,
            },
        )
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
