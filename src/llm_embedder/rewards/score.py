"""LLM rewards: how likely the LLM finds the expected output with each candidate in its prompt.

The reward of a candidate is the mean log-likelihood per token of an answer (the geometric-mean
form of the paper's Eq. 1, as the released data stores it), given the task's template filled with
the candidate, the query and the answer.  With several answers every one is scored and the
rewards are aggregated (mean by default, or max), never a random pick.

Work is cut into chunks of records in input order.  Inside a chunk, candidates are sorted by
length and batched to a token budget; a finished chunk is appended to the output at once.  A
killed run restarted with the same command keeps the complete chunks whose bytes match the digest
recorded when each was written (a damaged line is scored again, never copied), redoes the rest, and
ends with the same file.  Under ``torchrun`` chunks are dealt to ranks round-robin and merged in input
order at the end.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from llm_embedder import distributed as dist_utils
from llm_embedder.data.records import record_candidates
from llm_embedder.errors import InputError
from llm_embedder.fileio import atomic_path, iter_jsonl
from llm_embedder.fingerprint import settings_digest, weights_digest
from llm_embedder.freshness import finish_partial, resume_partial
from llm_embedder.models.lm import CausalLM, Span
from llm_embedder.outputs import Output, claim, manifest_path
from llm_embedder.tasks import DEFAULT_TASKS, Task, TaskTable

AGGREGATIONS = ("mean", "max")


@dataclass
class ScoreSettings:
    max_key_tokens: int = 512
    """Candidates longer than this many LLM tokens are cut (the original used 512)."""
    aggregate: str = "mean"
    """How rewards of several answers combine: mean or max."""
    token_budget: int = 16384
    """Padded tokens per forward pass."""
    max_batch_size: int = 64
    chunk_records: int = 64
    """Records per unit of work written at once (and redone at most after a kill)."""
    full_logits: bool = False

    def __post_init__(self) -> None:
        if self.aggregate not in AGGREGATIONS:
            raise ValueError(f"aggregate={self.aggregate!r}; expected one of {AGGREGATIONS}")
        for name in ("max_key_tokens", "token_budget", "max_batch_size", "chunk_records"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                # 0 or less would cut every candidate to nothing and score them all alike
                raise ValueError(f"--{name.replace('_', '-')}: expected a positive integer, got {value!r}")


def default_scoring_dtype(device: str = "auto") -> str:
    """The LLM dtype for rewards when none is given: float32 on a CPU, bfloat16 on a GPU that has it.

    bf16 on a CPU is faster but changed which candidate ranks first too often: it fails the rule
    (top-1 agreement with float32 >= 0.95 and mean Kendall tau >= 0.9 on every task) that rewards,
    which matter only through their order within a query, must meet (docs/experiments/speed.md,
    rewards in bf16)."""
    import torch

    from llm_embedder.models.loading import resolve_device

    if resolve_device(device).type == "cuda" and torch.cuda.is_bf16_supported():
        return "bfloat16"
    return "float32"


# Candidates scored per second by SmolLM2-135M on a 2-core CPU with AMX (the demo data, keys of at
# most 128 tokens), for the time estimate the pipeline's score stage prints: a rough figure, since a
# second heavy job on the same cores halves it (where it comes from: docs/experiments/speed.md, scoring rate).
SCORE_RATE_CPU = {"float32": 5, "bfloat16": 15}


def scoring_estimate(candidates: int, dtype: str | None) -> str:
    """A rough time for scoring ``candidates`` (candidate, answer) pairs on a CPU, for a progress line."""
    rate = SCORE_RATE_CPU.get(dtype or "float32", SCORE_RATE_CPU["float32"])
    return f"~{candidates / rate / 60:.0f} min at ~{rate}/s on 2 CPU cores"


@dataclass
class ScoreJob:
    """One record to score: its candidates' spans, one per (candidate, answer)."""

    line: int
    record: dict[str, Any]
    spans: list[Span]
    num_candidates: int
    num_answers: int


def _answers(record: dict[str, Any], path: str | Path, line: int) -> list[str]:
    answers = record.get("answers")
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) and a.strip() for a in answers):
        raise InputError(path, line, "answers", "missing or empty: the reward is the likelihood of an answer")
    return answers


def _truncate_tokens(tokenizer: Any, text: str, max_tokens: int) -> str:
    """Cut ``text`` after its ``max_tokens``-th token, at a character boundary of that token."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if len(enc["input_ids"]) <= max_tokens:
        return text
    offsets = enc["offset_mapping"]
    end = offsets[max_tokens - 1][1] if max_tokens > 0 else 0
    # A character split over several byte tokens: cut before it, not after it (always shorter).
    return text[: min(end, offsets[max_tokens][0])]


def _token_across(tokenizer: Any, prefix: str, answer: str) -> bool:
    """Whether a token of ``prefix + answer`` would hold non-space characters of both: lrlm chunks
    are cut mid-word ("...web" + "page ..."), and scoring such a token scores the prefix's text."""
    if not prefix or not answer or prefix[-1].isspace() or answer[0].isspace():
        return False
    enc = tokenizer(prefix + answer, add_special_tokens=False, return_offsets_mapping=True)
    return any(s < len(prefix) < e and prefix[s:].strip() for s, e in enc["offset_mapping"])


def _span_apart(tokenizer: Any, prefix: str, answer: str, suffix: str) -> Span:
    """The prefix and the answer tokenized apart and concatenated (as the original did for lrlm)."""
    head = tokenizer(prefix, add_special_tokens=True, return_offsets_mapping=True)
    ids = list(head["input_ids"])
    if ids and ids[-1] == tokenizer.eos_token_id and tuple(head["offset_mapping"][-1]) == (0, 0):
        ids.pop()  # an appended EOS is not part of the text
    tail = tokenizer(answer + suffix, add_special_tokens=False, return_offsets_mapping=True)
    scored = [i for i, (s, e) in enumerate(tail["offset_mapping"]) if s < len(answer) and e > s]
    return Span(ids + list(tail["input_ids"]), len(ids) + scored[0], len(ids) + scored[-1] + 1)


def build_span(
    lm: CausalLM, task: Task, fields: dict[str, str], key: str, answer: str, settings: ScoreSettings
) -> Span:
    """Tokens of the filled template with exactly the answer's tokens scored.

    The candidate is cut to ``max_key_tokens`` and, if the whole still exceeds the LLM's window,
    cut further so that the query and the answer always fit.
    """
    tok = lm.tokenizer
    strip = str.strip if task.lm_strip else str
    key = _truncate_tokens(tok, strip(key), settings.max_key_tokens)
    prefix_template, _, suffix_template = task.lm_template.partition("{answer}")
    values = {**fields, "query": strip(fields.get("query", "")), "answer": strip(answer)}

    def span(key_text: str) -> Span:
        filled = {**values, "key": key_text}
        prefix, suffix = prefix_template.format(**filled), suffix_template.format(**filled)
        if _token_across(tok, prefix, values["answer"]):
            return _span_apart(tok, prefix, values["answer"], suffix)
        return lm.make_span(prefix, values["answer"], suffix, max_length=10**9)

    result = span(key)
    # Cut again while it does not fit: tokens can merge differently at the new end of the key.
    while (excess := len(result.ids) - lm.context_window) > 0:
        key_tokens = len(tok(key, add_special_tokens=False)["input_ids"])
        if excess >= key_tokens:
            raise ValueError(
                f"the prompt needs {len(result.ids) - key_tokens} tokens without the candidate; "
                f"the LLM window is {lm.context_window}"
            )
        key = _truncate_tokens(tok, key, key_tokens - excess)
        result = span(key)
    return result


def prepare_job(lm: CausalLM, tasks: TaskTable, record: dict, path: str | Path, line: int, settings: ScoreSettings):
    """Validate one record and build its spans (errors name file, line and field)."""
    for field in ("query", "task"):
        if not isinstance(record.get(field), str):
            raise InputError(path, line, field, "missing or not a string")
    if record["task"] not in tasks:
        raise InputError(path, line, "task", f"unknown task {record['task']!r}; known: {', '.join(tasks)}")
    task = tasks[record["task"]]
    if task.lm_template is None:
        raise InputError(path, line, "task", f"task {task.name!r} has no LLM template, so no reward")
    answers = _answers(record, path, line)
    candidates = record_candidates(record, path, line)
    if not candidates:
        raise InputError(path, line, "neg", "no candidates to score (pos, neg and history are empty)")
    needed = {f for _, f, _, _ in string.Formatter().parse(task.lm_template) if f} - {"key", "answer"}
    fields = {}
    for name in needed:
        if not isinstance(record.get(name), str):
            raise InputError(path, line, name, f"needed by the {task.name} template {task.lm_template!r}")
        fields[name] = record[name]
    try:
        spans = [build_span(lm, task, fields, c, a, settings) for c in candidates for a in answers]
    except ValueError as exc:
        raise InputError(path, line, None, str(exc)) from None
    return ScoreJob(line, record, spans, len(candidates), len(answers))


def _aggregate(values: list[float], num_candidates: int, num_answers: int, how: str) -> list[float]:
    table = np.asarray(values, dtype=np.float64).reshape(num_candidates, num_answers)
    return (table.mean(axis=1) if how == "mean" else table.max(axis=1)).tolist()


def _chunks(n: int, size: int) -> list[range]:
    return [range(s, min(s + size, n)) for s in range(0, n, size)]


def _complete_lines(path: Path) -> int:
    """Number of complete JSON lines; a torn last line (from a kill) is cut off."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep < len(data):
        with path.open("r+b") as handle:
            handle.truncate(keep)
    return data[:keep].count(b"\n")


def _trim_to(path: Path, lines: int) -> None:
    data = path.read_bytes()
    cut = 0
    for _ in range(lines):
        cut = data.index(b"\n", cut) + 1
    with path.open("r+b") as handle:
        handle.truncate(cut)


def score_file(
    lm: CausalLM,
    input_path: str | Path,
    output_path: str | Path,
    *,
    tasks: TaskTable = DEFAULT_TASKS,
    settings: ScoreSettings | None = None,
    show_progress: bool = True,
    overwrite: bool = False,
    restart: bool = False,
) -> int:
    """Add ``teacher_scores`` (aligned with ``pos + neg``, or ``history``) to every record; returns
    the number of records scored in this call.

    Work in progress lives in a hidden ``.NAME.partial`` next to the output and is renamed when
    complete.  A rerun resumes it only when the input, the LLM's weights, the task table and the
    settings are those it was started with (else it stops and says what changed; ``restart``
    starts over).  An existing output that ``score`` did not write is refused unless ``overwrite``.
    """
    settings = settings or ScoreSettings()
    input_path, output_path = Path(input_path), Path(output_path)
    world, rank = dist_utils.world_size(), dist_utils.rank()
    output = score_output(lm, input_path, output_path, tasks, settings, overwrite=overwrite)
    # Validate everything before scoring anything: a bad line 9,000 should not cost an hour first.
    jobs = [prepare_job(lm, tasks, record, input_path, line, settings) for line, record in iter_jsonl(input_path)]
    chunks = _chunks(len(jobs), settings.chunk_records)
    mine = [c for i, c in enumerate(chunks) if i % world == rank]
    part = _part_path(output_path, rank, world)
    digests = _digests_path(part)
    part.parent.mkdir(parents=True, exist_ok=True)
    state = resume_partial(output, part, restart)
    if state == "done" and world == 1 and _complete_lines(output_path) != len(jobs):
        # Ours and current, but short (written in place by an older version, or cut): finish it.
        os.replace(output_path, part)
        output.seal(part)
        _record_digests(part, digests, [len(c) for c in mine])
    elif state == "done":
        return 0
    elif state == "fresh":
        digests.unlink(missing_ok=True)

    # Resume: keep whole chunks only, each as it was written (its digest), so the remaining batches are
    # exactly those of a fresh run.
    done_chunks = _verified_chunks(part, digests, [len(c) for c in mine])
    if part.exists():
        _complete_lines(part)
        _trim_to(part, sum(len(c) for c in mine[:done_chunks]))
    _keep_digests(digests, done_chunks)
    todo = mine[done_chunks:]

    total = sum(len(jobs[i].spans) for c in todo for i in c)
    scored = 0
    with (
        tqdm(
            total=total, desc=f"score[{rank}]" if world > 1 else "score", unit="cand", disable=not show_progress
        ) as bar,
        part.open("a", encoding="utf-8") as out,
        digests.open("a", encoding="utf-8") as chunk_digests,
    ):
        for chunk in todo:
            spans = [s for i in chunk for s in jobs[i].spans]
            sums = lm.span_log_probs(
                spans, settings.token_budget, settings.max_batch_size, settings.full_logits, on_batch=bar.update
            )
            position = 0
            lines = []
            for i in chunk:
                job = jobs[i]
                n = len(job.spans)
                means = [s / c for s, c in sums[position : position + n]]
                position += n
                record = dict(job.record)
                record["teacher_scores"] = _aggregate(means, job.num_candidates, job.num_answers, settings.aggregate)
                lines.append(json.dumps(record, ensure_ascii=False) + "\n")
            text = "".join(lines)
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
            chunk_digests.write(_chunk_digest(text.encode("utf-8")) + "\n")  # after the lines: a kill redoes them
            chunk_digests.flush()
            os.fsync(chunk_digests.fileno())
            scored += len(chunk)
    if world > 1:
        _merge_parts(output, chunks, world)
    else:
        finish_partial(output, part)
        digests.unlink(missing_ok=True)
    return scored


def _digests_path(part: Path) -> Path:
    return part.with_name(f"{part.name}.digests")


def _chunk_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def _chunk_bytes(part: Path, sizes: list[int]) -> list[bytes]:
    """The complete chunks at the start of ``part`` (``sizes`` lines each), as bytes."""
    data = part.read_bytes() if part.exists() else b""
    found, start = [], 0
    for size in sizes:
        end = start
        for _ in range(size):
            end = data.find(b"\n", end) + 1
            if end == 0:
                return found
        found.append(data[start:end])
        start = end
    return found


def _verified_chunks(part: Path, digests: Path, sizes: list[int]) -> int:
    """How many chunks at the start of ``part`` match the digests recorded as they were written."""
    recorded = digests.read_text(encoding="utf-8").split() if digests.exists() else []
    done = 0
    for data, digest in zip(_chunk_bytes(part, sizes), recorded, strict=False):
        if _chunk_digest(data) != digest:
            break
        done += 1
    return done


def _record_digests(part: Path, digests: Path, sizes: list[int]) -> None:
    with atomic_path(digests) as tmp:
        tmp.write_text("".join(_chunk_digest(c) + "\n" for c in _chunk_bytes(part, sizes)), encoding="utf-8")


def _keep_digests(digests: Path, count: int) -> None:
    recorded = digests.read_text(encoding="utf-8").split() if digests.exists() else []
    if len(recorded) != count or not digests.exists():
        with atomic_path(digests) as tmp:
            tmp.write_text("".join(d + "\n" for d in recorded[:count]), encoding="utf-8")


def score_output(
    lm: CausalLM,
    input_path: Path,
    output_path: Path,
    tasks: TaskTable,
    settings: ScoreSettings,
    overwrite: bool = False,
) -> Output:
    """The output as ``score`` claims it: what its scores depend on is the input's bytes, the LLM's
    weights, the task table, the settings and the number of ranks (which chunks each one holds)."""
    identity = {
        **dataclasses.asdict(settings),
        "lm": weights_digest(lm.model),
        "tasks": settings_digest({name: task.to_dict() for name, task in tasks.items()}),
        "world_size": dist_utils.world_size(),
    }
    return claim(output_path, "score", inputs={"input": input_path}, settings=identity, overwrite=overwrite)


def _part_path(output_path: Path, rank: int, world: int) -> Path:
    suffix = "partial" if world == 1 else f"part-{rank}-of-{world}"
    return output_path.with_name(f".{output_path.name}.{suffix}")


def _merge_parts(output: Output, chunks: list[range], world: int) -> None:
    """Rank 0 interleaves the ranks' parts back into input order."""
    import torch.distributed as dist

    dist.barrier()
    if dist_utils.rank() == 0:
        parts = [_part_path(output.path, r, world) for r in range(world)]
        readers: list[Iterator[str]] = [iter(p.read_text(encoding="utf-8").splitlines(keepends=True)) for p in parts]
        output.seal()
        with atomic_path(output.path) as tmp, tmp.open("w", encoding="utf-8") as out:
            for i, chunk in enumerate(chunks):
                for _ in chunk:
                    out.write(next(readers[i % world]))
        for p in parts:
            p.unlink()
            manifest_path(p).unlink(missing_ok=True)
            _digests_path(p).unlink(missing_ok=True)
    dist.barrier()
