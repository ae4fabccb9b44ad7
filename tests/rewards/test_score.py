"""LLM rewards: span log-probabilities, answer boundaries, aggregation, alignment, input errors,
kill-and-resume, torchrun sharding, and (integration) the real SmolLM2-135M-Instruct."""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from processes import CLI_MODULE, cli, subprocess_env, torchrun

from llm_embedder.cli import main as cli_main
from llm_embedder.errors import InputError
from llm_embedder.models.lm import CausalLM, Span
from llm_embedder.rewards import score as score_module
from llm_embedder.rewards.score import ScoreSettings, build_span, prepare_job, score_file, score_output
from llm_embedder.tasks import DEFAULT_TASKS


# ---------------------------------------------------------------------------- helpers
@torch.inference_mode()
def slow_mean(lm: CausalLM, span: Span) -> float:
    """The reference: one text alone, full logits, log-softmax, mean over the answer tokens."""
    ids = torch.tensor([list(span.ids)], device=lm.device)
    log_probs = torch.log_softmax(lm.model(input_ids=ids).logits[0].double(), dim=-1)
    end = len(span.ids) if span.end is None else span.end
    targets = ids[0, span.start : end]
    return float(log_probs[span.start - 1 : end - 1].gather(1, targets[:, None]).sum()) / (end - span.start)


def write_records(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def window_lm(tokenizer, window: int) -> CausalLM:
    """A tiny random LM with a small window, sharing the tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=window,
    )
    torch.manual_seed(1)
    return CausalLM(LlamaForCausalLM(config).eval(), tokenizer, "window-lm")


def qa_record(query: str, pos: list[str], neg: list[str], answers: list[str], **extra) -> dict:
    return {"query": query, "pos": pos, "neg": neg, "answers": answers, "task": "qa", **extra}


PASSAGES = [
    "Paris is the capital and most populous city of France.",
    "The quick brown fox jumps over the lazy dog, again and again, until the dog finally wakes up and barks.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "The Manhattan Project produced the first nuclear weapons during the Second World War; it was led by "
    "the United States with the support of the United Kingdom and Canada.",
    "Bananas are rich in potassium.",
]


# ---------------------------------------------------------------------------- span_log_probs
def _random_spans(vocab: int) -> list[Span]:
    rng = random.Random(0)
    spans = []
    for n in [3, 17, 40, 9, 120, 64, 2, 33, 200, 5, 51, 11, 80]:
        ids = [rng.randrange(vocab) for _ in range(n)]
        start = rng.randrange(1, n)
        end = rng.choice([None, rng.randrange(start + 1, n + 1)])
        spans.append(Span(ids, start, end))
    return spans


@pytest.mark.parametrize("full_logits", [False, True])
def test_span_log_probs_equals_one_text_at_a_time(tiny_lm, full_logits):
    spans = _random_spans(len(tiny_lm.tokenizer))
    batches: list[int] = []
    # budget 150 < the 200-token span: that one goes alone; the rest fill several batches.
    got = tiny_lm.span_log_probs(
        spans, token_budget=150, max_batch_size=4, full_logits=full_logits, on_batch=batches.append
    )
    assert len(batches) >= 5 and sum(batches) == len(spans) and max(batches) <= 4
    assert len(got) == len(spans)
    for span, (total, count) in zip(spans, got, strict=True):
        end = len(span.ids) if span.end is None else span.end
        assert count == end - span.start
        assert total / count == pytest.approx(slow_mean(tiny_lm, span), abs=1e-4)


def test_span_log_probs_does_not_depend_on_batching(tiny_lm):
    spans = _random_spans(len(tiny_lm.tokenizer))
    one = tiny_lm.span_log_probs(spans, token_budget=10**6, max_batch_size=64)
    many = tiny_lm.span_log_probs(spans, token_budget=64, max_batch_size=2)
    for (a, n), (b, m) in zip(one, many, strict=True):
        assert n == m and a / n == pytest.approx(b / m, abs=1e-5)


def test_span_log_probs_shares_one_pass_among_options(tiny_lm):
    """Options after one prompt (same tokens up to the last scored one) cost one forward pass."""
    rng = random.Random(1)
    vocab = len(tiny_lm.tokenizer)
    prompt = [rng.randrange(vocab) for _ in range(30)]
    options = [Span([*prompt, rng.randrange(vocab)], len(prompt)) for _ in range(4)]
    # Same fed tokens but a different first scored position: its own pass.
    longer = Span([*prompt, options[0].ids[-1]], len(prompt) - 3)
    # Tokens after the scored span are never fed, so they change nothing.
    with_suffix = Span([*options[1].ids, 7, 8, 9], len(prompt), len(prompt) + 1)
    spans = [*options, longer, with_suffix]
    calls = []
    hook = tiny_lm.model.base_model.register_forward_hook(lambda m, a, kw: calls.append(1), with_kwargs=False)
    try:
        got = tiny_lm.span_log_probs(spans, max_batch_size=1)
    finally:
        hook.remove()
    assert len(calls) == 2
    for span, (total, count) in zip(spans, got, strict=True):
        end = len(span.ids) if span.end is None else span.end
        assert count == end - span.start
        assert total / count == pytest.approx(slow_mean(tiny_lm, span), abs=1e-4)
    assert got[5] == pytest.approx(got[1])


def _plan_cost(sizes, lengths, budget, most, overhead):
    """Padded tokens plus overhead of a batch plan over lengths sorted longest first; None if not allowed."""
    total, at = 0, 0
    for n in sizes:
        if n > most or (n > 1 and n * lengths[at] > budget):
            return None
        total, at = total + overhead + n * lengths[at], at + n
    return total


def test_batch_plan_is_the_cheapest_within_the_limits():
    from itertools import combinations

    from llm_embedder.models.lm import _plan_batches

    rng = random.Random(3)
    for _ in range(40):
        lengths = sorted((rng.randrange(1, 60) for _ in range(rng.randrange(1, 9))), reverse=True)
        budget, most, overhead = rng.choice([40, 100, 10**6]), rng.choice([1, 2, 3, 64]), rng.choice([0, 5, 50])
        limits = (lengths, budget, most, overhead)

        plan = _plan_batches(lengths, budget, most, overhead)
        assert sum(plan) == len(lengths) and _plan_cost(plan, *limits) is not None
        every = []  # all ways to cut the sorted list into consecutive batches
        for k in range(len(lengths)):
            for cuts in combinations(range(1, len(lengths)), k):
                edges = [0, *cuts, len(lengths)]
                every.append([b - a for a, b in zip(edges, edges[1:], strict=False)])
        costs = [_plan_cost(sizes, *limits) for sizes in every]
        assert _plan_cost(plan, *limits) == min(c for c in costs if c is not None)
    # a long span goes alone; equal lengths fill batches to the budget
    assert _plan_batches([500, 10, 10], 100, 64, 32) == [1, 2]
    assert sorted(_plan_batches([10] * 25, 100, 64, 32)) == [5, 10, 10]


def test_span_needs_a_prefix_and_a_non_empty_target():
    assert Span([5, 6, 7], 1).end is None
    for args in [([5, 6, 7], 0), ([5, 6, 7], 2, 2), ([5, 6], 1, 3), ([5], 1)]:
        with pytest.raises(ValueError, match="scored span"):
            Span(*args)


# ---------------------------------------------------------------------------- answer boundaries
def _boundary_records(toy_records) -> dict[str, list[dict]]:
    icl = toy_records("icl")[0]
    return {
        "qa": [{**r, "neg": r["neg"][:3]} for r in toy_records("qa")],
        "convsearch": [{**r, "neg": r["neg"][:2]} for r in toy_records("convsearch")],
        "chat": toy_records("chat"),
        # lrlm chunks are cut mid-text: some answers start in the middle of a word.
        "lrlm": [{**r, "neg": r["neg"][:3]} for r in toy_records("lrlm")],
        # the toy icl records carry no answers: give them one label, and one mid-sentence output.
        "icl": [
            {**icl, "neg": icl["neg"][:2], "answers": ["positive"]},
            {**icl, "neg": icl["neg"][:2], "answers": ["He was born in Toledo , Ohio ."]},
        ],
    }


@pytest.mark.parametrize("task_name", ["qa", "convsearch", "icl", "chat", "lrlm"])
def test_exactly_the_answer_tokens_are_scored(lm_tokenizer, toy_records, task_name):
    lm = window_lm(lm_tokenizer, 10**5)  # a window that cuts nothing
    task = DEFAULT_TASKS[task_name]
    settings = ScoreSettings(max_key_tokens=10**6)
    strip = str.strip if task.lm_strip else str
    prefix_template = task.lm_template.partition("{answer}")[0]
    checked = 0
    for line, record in enumerate(_boundary_records(toy_records)[task_name], start=1):
        job = prepare_job(lm, DEFAULT_TASKS, record, "toy", line, settings)
        candidates = record["history"] if "history" in record else record["pos"] + record["neg"]
        assert len(job.spans) == len(candidates) * len(record["answers"])
        fields = {k: strip(v) if k == "query" else v for k, v in record.items() if isinstance(v, str)}
        for i, span in enumerate(job.spans):
            key, answer = candidates[i // job.num_answers], strip(record["answers"][i % job.num_answers])
            prefix = prefix_template.format(**{**fields, "key": strip(key)})
            assert span.end in (None, len(span.ids))
            scored = lm_tokenizer.decode(span.ids[span.start : span.end])
            before = lm_tokenizer.decode(span.ids[: span.start])
            assert scored in (answer, " " + answer), (task_name, line, scored[:30], answer[:30])
            # no prefix token is scored: the tokens before the span are the prefix itself
            # (less the space that the BPE glued to the first answer token)
            assert before == (prefix[:-1] if scored.startswith(" ") and not answer.startswith(" ") else prefix)
            checked += 1
    assert checked >= 10


def test_candidates_are_cut_to_max_key_tokens(lm_tokenizer, toy_records):
    lm = window_lm(lm_tokenizer, 10**5)  # a window that cuts nothing
    task = DEFAULT_TASKS["qa"]
    record = toy_records("qa")[0]
    key = " ".join(record["neg"][:4])
    enc = lm_tokenizer(key, add_special_tokens=False, return_offsets_mapping=True)
    assert len(enc["input_ids"]) > 200
    fields = {"query": record["query"]}
    cut = build_span(lm, task, fields, key, "Paris", ScoreSettings(max_key_tokens=50))
    whole = build_span(lm, task, fields, key, "Paris", ScoreSettings(max_key_tokens=10**6))
    by_hand = build_span(lm, task, fields, key[: enc["offset_mapping"][49][1]], "Paris", ScoreSettings())
    assert list(cut.ids) == list(by_hand.ids)
    assert len(cut.ids) < len(whole.ids)
    text = lm_tokenizer.decode(cut.ids)
    kept = text.removeprefix("Knowledge: ").partition("\n\nQuestion:")[0]
    assert key.startswith(kept) and len(lm_tokenizer(kept, add_special_tokens=False)["input_ids"]) <= 50
    assert lm_tokenizer.decode(cut.ids[cut.start :]) == " Paris"


def test_window_cuts_the_candidate_further(lm_tokenizer, toy_records):
    window = 64
    lm = window_lm(lm_tokenizer, window)
    task = DEFAULT_TASKS["qa"]
    record = toy_records("qa")[0]
    fields = {"query": "What is the capital of France?"}
    answer = "Paris is the capital of France."
    settings = ScoreSettings(max_key_tokens=100)
    spans = []
    words = " ".join(record["neg"][:3]).split()
    for n in range(5, 160, 7):  # many key lengths: each must end up within the window
        key = " ".join(words[:n])
        span = build_span(lm, task, fields, key, answer, settings)
        assert len(span.ids) <= window
        assert lm_tokenizer.decode(span.ids[span.start :]) == " " + answer
        kept = lm_tokenizer.decode(span.ids).removeprefix("Knowledge: ").partition("\n\nQuestion:")[0]
        assert key.startswith(kept)
        spans.append(span)
    assert len(spans[-1].ids) in (window - 1, window)  # cut to the window, not below it by much
    # characters split over several byte tokens (and keys whose cut end merges anew) still fit
    for key in ["“Peterson tells WebMD.” " * 12, "日本語のテキストです。" * 9, "🙂🙃 emoji " * 20]:
        for n in range(len(key) // 3, len(key), 5):
            span = build_span(lm, task, fields, key[:n], answer, settings)
            assert len(span.ids) <= window and key.startswith(lm_tokenizer.decode(span.ids).partition("\n\n")[0][11:])
    # the short ones fit and are not cut
    assert lm_tokenizer.decode(spans[0].ids).startswith("Knowledge: " + " ".join(words[:5]) + "\n\n")
    # and the LM scores them (positions stay inside its window)
    got = lm.span_log_probs(spans[-3:])
    for span, (total, count) in zip(spans[-3:], got, strict=True):
        assert total / count == pytest.approx(slow_mean(lm, span), abs=1e-4)

    # a prompt that does not fit even without the candidate is an error naming the line
    long_query = " ".join(words[:80])
    with pytest.raises(ValueError, match="window"):
        build_span(lm, task, {"query": long_query}, "short key", answer, settings)
    bad = qa_record(long_query, ["short key"], [], [answer])
    with pytest.raises(InputError, match="window") as info:
        prepare_job(lm, DEFAULT_TASKS, bad, "in.jsonl", 7, settings)
    assert (info.value.path, info.value.line) == ("in.jsonl", 7)


# ---------------------------------------------------------------------------- score_file
def test_several_answers_aggregate_by_mean_and_max(tiny_lm, tmp_path):
    answers = ["Paris", "The capital is Paris, a city of France.", "water"]
    records = [
        qa_record("What is the capital of France?", PASSAGES[:1], PASSAGES[1:4], answers),
        qa_record("What does the fox do?", PASSAGES[1:2], PASSAGES[4:], answers[1:]),
    ]
    src = write_records(tmp_path / "in.jsonl", records)
    single = []  # one file per answer: the reward of every candidate for that answer alone
    for j in range(len(answers)):
        rows = [{**r, "answers": [r["answers"][j]]} for r in records if j < len(r["answers"])]
        out = tmp_path / f"single{j}.jsonl"
        score_file(tiny_lm, write_records(tmp_path / f"in{j}.jsonl", rows), out, show_progress=False)
        single.append(read_records(out))
    for how in ("mean", "max"):
        out = tmp_path / f"{how}.jsonl"
        assert score_file(tiny_lm, src, out, settings=ScoreSettings(aggregate=how), show_progress=False) == 2
        got = read_records(out)
        for i, record in enumerate(records):
            table = torch.tensor([single[j][i]["teacher_scores"] for j in range(len(record["answers"]))])
            expected = table.mean(0) if how == "mean" else table.max(0).values
            assert got[i]["teacher_scores"] == pytest.approx(expected.tolist(), abs=1e-5)
    mean = read_records(tmp_path / "mean.jsonl")[0]["teacher_scores"]
    best = read_records(tmp_path / "max.jsonl")[0]["teacher_scores"]
    assert (
        all(b >= m for b, m in zip(best, mean, strict=True))
        and max(b - m for b, m in zip(best, mean, strict=True)) > 1e-3
    )

    # deterministic: the same command gives the same bytes
    again = tmp_path / "again.jsonl"
    score_file(tiny_lm, src, again, settings=ScoreSettings(aggregate="mean"), show_progress=False)
    assert again.read_bytes() == (tmp_path / "mean.jsonl").read_bytes()
    with pytest.raises(ValueError, match="aggregate"):
        ScoreSettings(aggregate="median")


def test_teacher_scores_follow_pos_neg_and_history(tiny_lm, toy_records, tmp_path):
    chat = toy_records("chat")[0]
    records = [
        # lengths in no particular order, so the length sort inside must be undone
        qa_record(
            "capital of France?",
            [PASSAGES[3]],
            [PASSAGES[4], PASSAGES[0], PASSAGES[1]],
            ["Paris"],
            teacher_scores=[9.0, 9.0, 9.0, 9.0],
            query_id=17,
        ),
        {**chat, "history": chat["history"][:4]},
        qa_record("boiling point of water?", [], [PASSAGES[2], PASSAGES[1]], ["100 degrees Celsius"]),
    ]
    src = write_records(tmp_path / "in.jsonl", records)
    out = tmp_path / "out.jsonl"
    settings = ScoreSettings(chunk_records=2, token_budget=256, max_batch_size=3)
    assert score_file(tiny_lm, src, out, settings=settings, show_progress=False) == 3
    got = read_records(out)
    assert len(got) == 3
    for record, scored in zip(records, got, strict=True):
        assert {k: v for k, v in scored.items() if k != "teacher_scores"} == {
            k: v for k, v in record.items() if k != "teacher_scores"
        }
        candidates = record["history"] if "history" in record else record["pos"] + record["neg"]
        task = DEFAULT_TASKS[record["task"]]
        fields = {"query": record["query"]}
        expected = [
            slow_mean(tiny_lm, build_span(tiny_lm, task, fields, c, record["answers"][0], settings)) for c in candidates
        ]
        assert scored["teacher_scores"] == pytest.approx(expected, abs=1e-4)
        assert len(set(scored["teacher_scores"])) == len(candidates)


def test_output_must_differ_from_input(tiny_lm, tmp_path):
    src = write_records(tmp_path / "in.jsonl", [qa_record("q", ["a"], [], ["b"])])
    with pytest.raises(ValueError, match="the output is the input"):
        score_file(tiny_lm, src, tmp_path / "." / "in.jsonl", show_progress=False)


BAD_RECORDS = {
    "no answers": ({"query": "q", "task": "qa", "pos": ["p"]}, "answers"),
    "empty answer": (qa_record("q", ["p"], [], [" "]), "answers"),
    "no candidates": (qa_record("q", [], [], ["a"]), "neg"),
    "no pos, neg or history": ({"query": "q", "task": "qa", "answers": ["a"]}, "pos"),
    "unknown task": ({**qa_record("q", ["p"], [], ["a"]), "task": "poetry"}, "task"),
    "tool has no template": ({**qa_record("q", ["p"], [], ["a"]), "task": "tool"}, "task"),
    "lrlm without context": ({"query": "q", "task": "lrlm", "neg": ["x"], "answers": ["a"]}, "context"),
    "no query": ({"task": "qa", "pos": ["p"], "answers": ["a"]}, "query"),
}


@pytest.mark.parametrize("case", list(BAD_RECORDS))
def test_bad_record_fails_before_anything_is_written(tiny_lm, tmp_path, case):
    bad, field = BAD_RECORDS[case]
    good = [qa_record("capital of France?", PASSAGES[:1], PASSAGES[1:2], ["Paris"])] * 2
    src = write_records(tmp_path / "in.jsonl", [*good, bad])
    out = tmp_path / "out.jsonl"
    with pytest.raises(InputError) as info:
        score_file(tiny_lm, src, out, settings=ScoreSettings(chunk_records=1), show_progress=False)
    assert (info.value.path, info.value.line, info.value.field) == (str(src), 3, field)
    assert f"in.jsonl:3: field {field!r}" in str(info.value)
    assert not out.exists()  # validation comes first: no chunk was written


def test_bad_record_leaves_a_previous_partial_output_alone(tiny_lm, tmp_path):
    good = [qa_record("capital of France?", PASSAGES[:1], PASSAGES[1:3], ["Paris"])] * 3
    out = tmp_path / "out.jsonl"
    score_file(tiny_lm, write_records(tmp_path / "in.jsonl", good), out, show_progress=False)
    before = out.read_bytes()
    src = write_records(tmp_path / "in.jsonl", [*good[:2], BAD_RECORDS["no answers"][0]])
    with pytest.raises(InputError, match=r"in\.jsonl:3"):
        score_file(tiny_lm, src, out, show_progress=False)
    assert out.read_bytes() == before and all(len(r["teacher_scores"]) == 3 for r in read_records(out))


def test_cli_reports_the_bad_line(tiny_lm_dir, tmp_path, capsys):
    src = write_records(tmp_path / "in.jsonl", [qa_record("q", ["p"], [], ["a"]), {"query": "q", "task": "qa"}])
    out = tmp_path / "out.jsonl"
    assert cli_main(["-q", "score", "--lm", str(tiny_lm_dir), "--input", str(src), "--output", str(out)]) == 2
    assert re.search(r"in\.jsonl:2: field 'answers'", capsys.readouterr().err)
    assert not out.exists()


# ---------------------------------------------------------------------------- resume and sharding
def resume_records(toy_records, n: int) -> list[dict]:
    """Toy-derived qa records: 8 candidates of ~100 tokens and a ~50-token answer each."""
    qa = toy_records("qa")
    records = []
    for i in range(n):
        r = qa[i % len(qa)]
        negs = r["neg"][(i // len(qa)) * 7 :][:7]
        records.append(
            {
                "query": r["query"],
                "query_id": i,
                "pos": [r["pos"][0][:400]],
                "neg": [t[:400] for t in negs],
                "answers": [" ".join(r["answers"][0].split()[:40])],
                "task": "qa",
            }
        )
    return records


def _one_thread_reference(lm, src: Path, out: Path, settings: ScoreSettings) -> bytes:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocesses (OMP_NUM_THREADS=1): same kernels, same bits
    try:
        score_file(lm, src, out, settings=settings, show_progress=False)
    finally:
        torch.set_num_threads(threads)
    return out.read_bytes()


def test_torn_or_partial_output_is_repaired_on_resume(tiny_lm, toy_records, tmp_path):
    src = write_records(tmp_path / "in.jsonl", resume_records(toy_records, 6))
    settings = ScoreSettings(chunk_records=2)
    full = tmp_path / "full.jsonl"
    score_file(tiny_lm, src, full, settings=settings, show_progress=False)
    lines = full.read_bytes().splitlines(keepends=True)
    assert len(lines) == 6
    for kept, scored_again in [
        (b"".join(lines[:3]) + lines[3][:57], 4),  # torn mid-line in the second chunk
        (b"".join(lines[:3]), 4),  # whole lines, but a chunk half done
        (b"".join(lines[:4]), 2),  # two complete chunks
        (lines[0][:10], 6),  # nothing complete
    ]:
        out = tmp_path / "out.jsonl"
        out.unlink(missing_ok=True)
        # work in progress is a hidden partial file with the manifest of the run that began it
        partial = tmp_path / ".out.jsonl.partial"
        partial.write_bytes(kept)
        score_output(tiny_lm, src, out, DEFAULT_TASKS, settings).seal(partial)
        # and the digest of each chunk as it was written (a chunk without one is scored again)
        score_module._record_digests(partial, score_module._digests_path(partial), [2, 2, 2])
        assert score_file(tiny_lm, src, out, settings=settings, show_progress=False) == scored_again
        assert out.read_bytes() == full.read_bytes()
        assert not partial.exists()
    # a finished output is left as it is
    assert score_file(tiny_lm, src, out, settings=settings, show_progress=False) == 0
    assert out.read_bytes() == full.read_bytes()
    # a partial of an older version (no digests) keeps nothing it cannot check
    out.unlink()
    partial.write_bytes(b"".join(lines[:4]))
    score_output(tiny_lm, src, out, DEFAULT_TASKS, settings).seal(partial)
    assert score_file(tiny_lm, src, out, settings=settings, show_progress=False) == 6
    assert out.read_bytes() == full.read_bytes()


def test_killed_score_command_resumes_to_the_same_file(tiny_lm, tiny_lm_dir, toy_records, tmp_path):
    records = resume_records(toy_records, 24)
    src = write_records(tmp_path / "in.jsonl", records)
    reference = _one_thread_reference(tiny_lm, src, tmp_path / "reference.jsonl", ScoreSettings(chunk_records=2))
    out, part = tmp_path / "out.jsonl", tmp_path / ".out.jsonl.partial"
    cmd = cli("score", "--lm", str(tiny_lm_dir), "--input", str(src), "--output", str(out), "--chunk-records", "2")
    cmd += ["--dtype", "float32"]  # the reference's dtype, whatever the default
    proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if part.exists() and part.read_bytes().count(b"\n") >= 1:
                break
            time.sleep(0.02)
        finished_early = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=60)
    assert not finished_early, f"the run ended before it could be killed (rc={proc.returncode}): {err[-2000:]!r}"
    assert not out.exists()  # work in progress never sits under the final name
    partial = part.read_bytes()
    assert 1 <= partial.count(b"\n") < len(records), "the kill should land in the middle of the run"

    done = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.read_bytes() == reference
    whole_chunks = partial.splitlines(keepends=True)[: partial.count(b"\n") // 2 * 2]
    assert reference.startswith(b"".join(whole_chunks))
    assert [r["query_id"] for r in read_records(out)] == list(range(len(records)))


def test_two_process_torchrun_matches_one_process(tiny_lm, tiny_lm_dir, toy_records, tmp_path):
    records = resume_records(toy_records, 9)
    src = write_records(tmp_path / "in.jsonl", records)
    single = tmp_path / "single.jsonl"
    score_file(tiny_lm, src, single, settings=ScoreSettings(chunk_records=2), show_progress=False)
    out_dir = tmp_path / "sharded"
    out_dir.mkdir()
    out = out_dir / "out.jsonl"
    args = ["score", "--lm", str(tiny_lm_dir), "--device", "cpu", "--dtype", "float32", "--input", str(src)]
    args += ["--output", str(out)]
    proc = torchrun(2, [*CLI_MODULE, *args, "--chunk-records", "2"], subprocess_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    # parts merged and removed; the output carries its manifest
    assert sorted(p.name for p in out_dir.iterdir()) == [".out.jsonl.manifest.json", "out.jsonl"]
    expected, got = read_records(single), read_records(out)
    assert [r["query_id"] for r in got] == list(range(len(records)))
    for e, g in zip(expected, got, strict=True):
        assert {k: v for k, v in g.items() if k != "teacher_scores"} == {
            k: v for k, v in e.items() if k != "teacher_scores"
        }
        assert g["teacher_scores"] == pytest.approx(e["teacher_scores"], abs=1e-5)


# ---------------------------------------------------------------------------- the real SmolLM2
@pytest.fixture(scope="module")
def smollm2():
    return CausalLM.from_pretrained("smollm2-135m", device="cpu", dtype="float32")


@pytest.mark.integration
def test_smollm2_prefers_the_candidate_with_the_answer(smollm2, tmp_path):
    # a real fact and two planted ones that the model cannot know without the candidate
    records = [
        qa_record(
            "What is the capital of France?",
            ["Paris is the capital of France."],
            ["The quick brown fox jumps over the lazy dog.", "Bananas are rich in potassium."],
            ["Paris"],
        ),
        qa_record(
            "What is the wifi password of the Blue Lagoon hotel?",
            ["The wifi password of the Blue Lagoon hotel is marmalade42."],
            ["Paris is the capital of France.", PASSAGES[4]],
            ["marmalade42"],
        ),
        qa_record(
            "Who painted the ceiling of the Velvet Chapel?",
            ["The ceiling of the Velvet Chapel was painted by Orsolya Kertész in 1911."],
            [PASSAGES[2], PASSAGES[1]],
            ["Orsolya Kertész"],
        ),
    ]
    out = tmp_path / "out.jsonl"
    score_file(smollm2, write_records(tmp_path / "in.jsonl", records), out, show_progress=False)
    for record, scored in zip(records, read_records(out), strict=True):
        pos, *negs = scored["teacher_scores"]
        assert all(pos > n + 0.5 for n in negs), scored["teacher_scores"]
        # and each reward is the slow reference's mean log-likelihood of the answer tokens
        task, fields = DEFAULT_TASKS["qa"], {"query": record["query"]}
        for candidate, score in zip(record["pos"] + record["neg"], scored["teacher_scores"], strict=True):
            span = build_span(smollm2, task, fields, candidate, record["answers"][0], ScoreSettings())
            assert score == pytest.approx(slow_mean(smollm2, span), abs=1e-4)


@pytest.mark.integration
def test_smollm2_spans_of_real_records_equal_the_reference(smollm2, toy_records):
    chat, qa = toy_records("chat")[0], toy_records("qa")[0]
    jobs = [
        prepare_job(smollm2, DEFAULT_TASKS, {**chat, "history": chat["history"][:3]}, "chat.json", 1, ScoreSettings()),
        prepare_job(smollm2, DEFAULT_TASKS, {**qa, "neg": qa["neg"][:2]}, "qa.json", 1, ScoreSettings()),
    ]
    spans = [s for job in jobs for s in job.spans]
    for (total, count), span in zip(smollm2.span_log_probs(spans, token_budget=512), spans, strict=True):
        assert total / count == pytest.approx(slow_mean(smollm2, span), abs=1e-4)
        assert -12 < total / count < 0
