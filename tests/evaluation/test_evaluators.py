"""Evaluators: mechanics and exact hand computations with a tiny random LM, input errors, and a
planted-fact check with the real SmolLM2-135M-Instruct (integration)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from llm_embedder.errors import InputError
from llm_embedder.evaluation.icl import InContextLearning
from llm_embedder.evaluation.memory import Conversation, LongText
from llm_embedder.evaluation.qa import MultipleChoiceQA, OpenQA
from llm_embedder.evaluation.retrieval_only import RetrievalOnly
from llm_embedder.evaluation.retrievers import DenseRetriever, NoRetriever, NotApplicable, RecencyRetriever

_WORD_TEXT = """
the a of to in and is was it this that with as at by from what which who how when where cat dog sat mat
quick brown fox jumps over lazy river bank money paris france capital city country music song singer band
water fire earth air sun moon star history science data model language project world hello
"""
WORDS = _WORD_TEXT.split()


# ---------------------------------------------------------------------------- helpers
def write_jsonl(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def words(seed: int, n: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n))


class FixedRetriever:
    """Returns the given ids (search) or pool positions (rank) for query i, cut to k."""

    def __init__(self, picks: list[list[int]], name: str = "fixed"):
        self.picks, self.name = picks, name

    def search(self, task, queries, corpus, k, key_max_length=None):
        self.key_max_length = key_max_length
        return [list(self.picks[i][:k]) for i in range(len(queries))]

    def rank(self, task, queries, pools, k):
        return [list(self.picks[i][:k]) for i in range(len(queries))]


class RecordingLM:
    """Delegates to a real CausalLM and records every scored prefix and generation prompt."""

    def __init__(self, lm, generation: str | None = None):
        self.lm, self.generation = lm, generation
        self.prefixes: list[str] = []
        self.prompts: list[str] = []

    def __getattr__(self, name):
        return getattr(self.lm, name)

    def make_span(self, prefix, target, *args, **kwargs):
        self.prefixes.append(prefix)
        return self.lm.make_span(prefix, target, *args, **kwargs)

    def generate(self, prompts, **kwargs):
        self.prompts += list(prompts)
        if self.generation is not None:
            return [self.generation] * len(prompts)
        return self.lm.generate(prompts, **kwargs)

    def generate_and_score(self, prompts, spans, **kwargs):
        if self.generation is not None:
            return self.generate(prompts, **kwargs), self.lm.span_log_probs(spans)
        self.prompts += list(prompts)
        return self.lm.generate_and_score(prompts, spans, **kwargs)


@torch.inference_mode()
def full_forward_sum(lm, text: str, start_char: int) -> tuple[float, int]:
    """The reference: one plain forward of ``text`` with full logits over the vocabulary; the sum of
    log p of the tokens covering ``text[start_char:]`` and their count."""
    enc = lm.tokenizer(text, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    scored = [i for i, (s, e) in enumerate(offsets) if e > start_char and e > s]
    log_probs = torch.log_softmax(lm.model(input_ids=torch.tensor([ids])).logits[0].double(), dim=-1)
    return sum(float(log_probs[i - 1, ids[i]]) for i in scored), len(scored)


@torch.inference_mode()
def ids_sum(lm, ids: list[int], start: int) -> float:
    """Sum of log p of ``ids[start:]`` from one plain full forward."""
    log_probs = torch.log_softmax(lm.model(input_ids=torch.tensor([ids])).logits[0].double(), dim=-1)
    return sum(float(log_probs[p - 1, ids[p]]) for p in range(start, len(ids)))


# ---------------------------------------------------------------------------- conversation
CHAT = [
    {
        "history": [
            "Speaker 1: I just got back from Paris.\nSpeaker 2: Did you see the river?",
            "  ",
            "Speaker 1: My dog loves the water.\nSpeaker 2: Mine prefers the sun.",
            "Speaker 1: I play music in a band.\nSpeaker 2: What song do you sing?",
        ],
        "query": " Do you still have that dog? ",
        "answers": ["Yes, he still loves the river and the water."],
    },
    {
        "history": ["Speaker 1: The capital city is busy.\nSpeaker 2: I prefer the country."],
        "query": "Did you move to the country?",
        "answers": ["Not yet, but soon."],
    },
]


def chat_reference(lm, picks: list[list[int]]) -> float:
    """exp(mean over examples of the answer's mean NLL), prompts written out by hand."""
    nlls = []
    for record, chosen in zip(CHAT, picks, strict=True):
        pool = [h for h in record["history"] if h.strip()]
        memory = "".join(pool[j].strip() + "\n" for j in sorted(chosen))
        prompt = f"{memory}Speaker 1: {record['query'].strip()}\nSpeaker 2: "
        total, count = full_forward_sum(lm, prompt + record["answers"][0], len(prompt))
        nlls.append(-total / count)
    return math.exp(sum(nlls) / len(nlls))


@pytest.mark.parametrize(
    "retriever,picks",
    [
        (NoRetriever(), [[], []]),
        (RecencyRetriever(), [[2, 1], [0]]),  # the two newest non-empty turns
        (FixedRetriever([[2, 0], [0]]), [[2, 0], [0]]),  # laid out in conversation order
    ],
    ids=["none", "recency", "fixed"],
)
def test_conversation_perplexity_equals_full_forward(eval_lm, tmp_path, retriever, picks):
    file = write_jsonl(tmp_path / "chat" / "test.json", CHAT)
    result = Conversation(file, top_k=2).run(eval_lm, retriever)
    assert result.main_metric == "perplexity" and result.lower_is_better
    assert result.main == pytest.approx(chat_reference(eval_lm, picks), rel=1e-5)
    assert [sorted(d["retrieved"]) for d in result.details] == [sorted(p) for p in picks]
    nll = [d["nll"] for d in result.details]
    tokens = [d["tokens"] for d in result.details]
    assert result.metrics["perplexity_tokens"] == pytest.approx(
        math.exp(sum(n * c for n, c in zip(nll, tokens, strict=True)) / sum(tokens)), rel=1e-9
    )


# ---------------------------------------------------------------------------- long text
CHUNK, WINDOW, TARGETS, TOP_K, MAX_CHARS = 8, 4, 2, 1, 4000


def lrlm_reference(lm, text: str, pick) -> tuple[float, int] | None:
    """Each target chunk alone: [memory chunk + its continuation] + the local window up to the
    target, one plain forward, log-probs of the target's tokens summed.  ``pick(t, chunks, start)``
    gives the memory chunk index (or None)."""
    ids = lm.tokenizer(text[:MAX_CHARS], add_special_tokens=False)["input_ids"]
    n = len(ids) // CHUNK
    if n < WINDOW + 2:
        return None
    ids = ids[len(ids) - n * CHUNK :]
    chunks = [ids[i * CHUNK : (i + 1) * CHUNK] for i in range(n)]
    start = n - WINDOW
    total = 0.0
    for t in range(n - TARGETS, n):
        j = pick(t, chunks, start)
        memory = [] if j is None else chunks[j] + chunks[j + 1]
        local = [tok for c in chunks[start : t + 1] for tok in c]
        total += ids_sum(lm, memory + local, len(memory) + (t - start) * CHUNK)
    return total, TARGETS * CHUNK


def dense_pick(lm, embedder):
    def pick(t, chunks, start):
        query = embedder.encode_queries([lm.tokenizer.decode(chunks[t - 1])], task="lrlm")[0]
        keys = embedder.encode_keys([lm.tokenizer.decode(chunks[c]) for c in range(start - 1)], task="lrlm")
        return int(np.argmax(keys @ query))

    return pick


@pytest.fixture(scope="module")
def lrlm_files(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("lrlm")
    a = write_jsonl(root / "a" / "test.json", [{"text": words(1, 140)}, {"text": words(2, 30)}, {"text": words(3, 90)}])
    b = write_jsonl(root / "b" / "test.json", [{"text": words(4, 110)}])
    return [a, b]


@pytest.mark.parametrize("kind", ["none", "recency", "dense"])
def test_long_text_equals_per_target_reference(eval_lm, tiny_embedder, lrlm_files, kind):
    retriever = {
        "none": NoRetriever(),
        "recency": RecencyRetriever(),
        "dense": DenseRetriever(tiny_embedder, "tiny"),
    }[kind]
    pick = {
        "none": lambda t, chunks, start: None,
        "recency": lambda t, chunks, start: start - 2,  # the newest chunk that has a continuation
        "dense": dense_pick(eval_lm, tiny_embedder),
    }[kind]
    evaluator = LongText(
        lrlm_files, chunk_size=CHUNK, window_chunks=WINDOW, target_chunks=TARGETS, top_k=TOP_K, max_chars=MAX_CHARS
    )
    result = evaluator.run(eval_lm, retriever)
    per_file = {}
    for path in lrlm_files:
        docs = [json.loads(line)["text"] for line in path.read_text().splitlines()]
        sums = [s for s in (lrlm_reference(eval_lm, d, pick) for d in docs) if s is not None]
        per_file[path.parent.name] = sums
    assert result.metrics["documents/a"] == 2 and result.metrics["documents/b"] == 1  # the 30-word one is too short
    ppl = {}
    for name, sums in per_file.items():
        ppl[name] = math.exp(sum(-s / c for s, c in sums) / len(sums))
        assert result.metrics[f"perplexity/{name}"] == pytest.approx(ppl[name], rel=1e-5)
        tokens = math.exp(-sum(s for s, _ in sums) / sum(c for _, c in sums))
        assert result.metrics[f"perplexity_tokens/{name}"] == pytest.approx(tokens, rel=1e-5)
    assert result.main == pytest.approx((ppl["a"] + ppl["b"]) / 2, rel=1e-5)
    assert [d["line"] for d in result.details] == [1, 3, 1]
    if kind == "none":
        assert all(d["retrieved"] == [[], []] for d in result.details)


class PoolRecorder(RecencyRetriever):
    def rank(self, task, queries, pools, k):
        self.pools = pools
        return super().rank(task, queries, pools, k)


def test_long_text_keeps_the_last_max_tokens(eval_lm, tmp_path):
    """A document is left-truncated to its last ``max_tokens`` LM tokens before chunking (the
    original's 32,768): the candidate chunks all come from that tail."""
    text = words(1, 140)
    file = write_jsonl(tmp_path / "x" / "test.json", [{"text": text}])
    ids = eval_lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > 120
    for max_tokens in (len(ids), 84):
        recorder = PoolRecorder()
        LongText([file], chunk_size=CHUNK, window_chunks=WINDOW, target_chunks=TARGETS, top_k=TOP_K,
                 max_tokens=max_tokens).run(eval_lm, recorder)  # fmt: skip
        kept = ids[-max_tokens:]
        n = len(kept) // CHUNK
        kept = kept[len(kept) - n * CHUNK :]
        expected = [eval_lm.tokenizer.decode(kept[c * CHUNK : (c + 1) * CHUNK]) for c in range(n - WINDOW - 1)]
        assert recorder.pools == [expected] * TARGETS
    assert LongText([file]).max_tokens == 32_768


def test_long_text_window_checks(eval_lm, lrlm_files):
    with pytest.raises(ValueError, match=r"lrlm needs 4096 tokens .* the LM's window is 512"):
        LongText(lrlm_files).run(eval_lm, NoRetriever())  # the original's 8 x 2 chunks + 16 chunks of 128
    with pytest.raises(ValueError, match="below window_chunks"):
        LongText(lrlm_files, chunk_size=8, window_chunks=4, target_chunks=4, top_k=1).run(eval_lm, NoRetriever())
    with pytest.raises(ValueError, match="no document is long enough"):
        LongText(lrlm_files, chunk_size=64, window_chunks=4, target_chunks=2, top_k=1).run(eval_lm, NoRetriever())


# ---------------------------------------------------------------------------- multiple choice
MMLU = [
    {"query": "What is 2 + 2?", "choices": ["3", "4", "5", "6"], "answer": 1, "subject": "high_school_math"},
    {"query": "Who came first?", "choices": ["a", "b", "c", "d"], "answer": "C", "subject": "history"},
    {"query": "Which war was longer?", "choices": ["a", "b", "c", "d"], "answer": " d ", "subject": "history"},
    {"query": "When did it end?", "choices": ["a", "b", "c", "d"], "answer": 0, "subject": "history"},
]
PREDICT = {"What is 2 + 2?": "B", "Who came first?": "C", "Which war was longer?": "A", "When did it end?": "B"}


class LetterLM(RecordingLM):
    """Prefers the letter ``predict`` (default ``PREDICT``) names for the question in the prompt."""

    def __init__(self, lm, predict: dict[str, str] | None = None):
        super().__init__(lm)
        self.predict = PREDICT if predict is None else predict

    def span_log_probs(self, spans, **kwargs):
        out = []
        for span in spans:
            prefix = self.lm.tokenizer.decode(span.ids[: span.start])
            letter = self.lm.tokenizer.decode(span.ids[span.start : span.end]).strip()
            (wanted,) = [v for q, v in self.predict.items() if q in prefix]
            out.append((0.0, 1) if letter == wanted else (-3.0, 2))
        return out


def test_multiple_choice_macro_over_subjects(eval_lm, tmp_path):
    test = write_jsonl(tmp_path / "test.json", MMLU)
    corpus = write_jsonl(tmp_path / "corpus.json", [{"title": "T0", "text": "zero"}, {"title": "T1", "text": "one"}])
    lm = LetterLM(eval_lm)
    result = MultipleChoiceQA(test, corpus).run(lm, NoRetriever())
    assert [d["gold"] for d in result.details] == [1, 2, 3, 0]
    assert [d["prediction"] for d in result.details] == [1, 2, 0, 1]
    assert result.metrics["accuracy/high_school_math"] == 1.0
    assert result.metrics["accuracy/history"] == pytest.approx(1 / 3)
    assert result.main == pytest.approx((1 + 1 / 3) / 2)  # macro over subjects
    assert result.metrics["accuracy_micro"] == 0.5
    assert lm.prefixes[0] == (
        "The following are multiple choice questions (with answers) about high school math.\n\n"
        "What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:"
    )
    # With retrieval: the passages in retrieved order under "Knowledge:".
    lm = LetterLM(eval_lm)
    result = MultipleChoiceQA(test, corpus, limit=1).run(lm, FixedRetriever([[1, 0]]))
    assert lm.prefixes[0].startswith("Knowledge:\nT1 one\nT0 zero\n\nThe following are")
    assert result.details[0]["retrieved"] == [1, 0]


def test_multiple_choice_scores_are_mean_option_log_probs(eval_lm, tmp_path):
    test = write_jsonl(tmp_path / "test.json", MMLU[:1])
    corpus = write_jsonl(tmp_path / "corpus.json", [{"title": "", "text": "four"}])
    result = MultipleChoiceQA(test, corpus).run(eval_lm, NoRetriever())
    prompt = (
        "The following are multiple choice questions (with answers) about high school math.\n\n"
        "What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:"
    )
    expected = []
    for letter in "ABCD":
        total, count = full_forward_sum(eval_lm, f"{prompt} {letter}", len(prompt))
        expected.append(total / count)
    assert result.details[0]["option_scores"] == pytest.approx(expected, rel=1e-5)
    assert result.details[0]["prediction"] == int(np.argmax(expected))


def test_multiple_choice_category_scores_and_key_budget(eval_lm, tmp_path):
    """The original's four categories: the mean of their subjects' accuracies; subjects outside
    MMLU's 57 count in ``accuracy`` but in no category.  Retrieval keys are cut to 128 tokens."""
    rows = [  # subject, predicted letter, gold index
        ("abstract_algebra", "A", 0),
        ("college_physics", "B", 0),
        ("college_physics", "A", 0),
        ("sociology", "C", 2),
        ("philosophy", "D", 0),
        ("virology", "B", 1),
        ("Moral Scenarios", "A", 0),  # spaces and capitals: the subject is still found
        ("Quenmar", "A", 1),
    ]
    records = [
        {"query": f"Question {i}?", "choices": ["a", "b", "c", "d"], "answer": gold, "subject": subject}
        for i, (subject, _, gold) in enumerate(rows)
    ]
    test = write_jsonl(tmp_path / "test.json", records)
    corpus = write_jsonl(tmp_path / "corpus.json", [{"title": "T", "text": "zero"}])
    lm = LetterLM(eval_lm, {f"Question {i}?": letter for i, (_, letter, _) in enumerate(rows)})
    retriever = FixedRetriever([[0]] * len(rows))
    result = MultipleChoiceQA(test, corpus).run(lm, retriever)
    assert retriever.key_max_length == 128
    subject = {"abstract_algebra": 1.0, "college_physics": 0.5, "sociology": 1.0, "philosophy": 0.0}
    subject |= {"virology": 1.0, "Moral Scenarios": 1.0, "Quenmar": 0.0}
    assert result.metrics["category/STEM"] == pytest.approx((1.0 + 0.5) / 2)
    assert result.metrics["category/Social Sciences"] == 1.0
    assert result.metrics["category/Humanities"] == pytest.approx((0.0 + 1.0) / 2)
    assert result.metrics["category/Others"] == 1.0
    assert result.main == pytest.approx(sum(subject.values()) / len(subject))


# ---------------------------------------------------------------------------- in-context learning
def test_icl_small_budget_keeps_the_most_relevant_demos(eval_lm, tmp_path):
    demos = [f"Input: {words(10 + i, 6)}\nOutput: {WORDS[i]}" for i in range(4)]
    corpus = write_jsonl(tmp_path / "corpus.json", [{"contents": d, "task_name": "t"} for d in demos])
    query = "Input: the cat sat on the mat\nOutput:"
    test = write_jsonl(tmp_path / "test.json", [{"query": query, "answers": ["cat"], "task_name": "t"}])
    size = [len(eval_lm.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in [query, *demos]]
    order = [[2, 0, 3, 1]]  # best first: demo 2, then 0, 3, 1
    # Room for demos 2 and 0 (each with a separator) and one token short of demo 3.
    budget = size[0] + (size[3] + 1) + (size[1] + 1) + size[4] - 1
    lm = RecordingLM(eval_lm, generation="cat")
    result = InContextLearning(test, corpus, context_tokens=budget).run(lm, FixedRetriever(order))
    assert result.details[0]["retrieved"] == [2, 0]
    assert lm.prompts == [f"{demos[0]}\n{demos[2]}\n{query}\n"]  # the most relevant next to the query
    lm = RecordingLM(eval_lm, generation="cat")
    InContextLearning(test, corpus, context_tokens=10_000).run(lm, FixedRetriever(order))
    assert lm.prompts == ["\n".join([demos[1], demos[3], demos[0], demos[2], query]) + "\n"]


def test_icl_classification_generation_and_task_mean(eval_lm, tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.json", [{"contents": f"demo {w}"} for w in WORDS[:5]])
    options = ["negative", "positive"]
    test = write_jsonl(
        tmp_path / "test.json",
        [
            {"query": "great song! Sentiment?", "answers": ["1"], "options": options, "task_name": "sst2"},
            {"query": "bad band. Sentiment?", "answers": ["negative"], "options": options, "task_name": "sst2"},
            {"query": "capital of france?", "answers": ["The Paris", "paris city"], "task_name": "nq"},
            {"query": "capital of spain?", "answers": ["Madrid"], "task_name": "nq"},
        ],
    )
    lm = RecordingLM(eval_lm, generation=" Paris city ")
    result = InContextLearning(test, corpus, top_k=2).run(lm, FixedRetriever([[0, 1], [1], [2], [3, 4]]))
    cls, gen = result.details[:2], result.details[2:]
    assert [d["gold"] for d in cls] == [1, 0]
    for d, query in zip(cls, ["great song! Sentiment?", "bad band. Sentiment?"], strict=True):
        # The option scored highest by the LM, checked against plain forwards of each option.
        prompt = "\n".join([*reversed([f"demo {WORDS[j]}" for j in d["retrieved"]]), query]) + "\n "
        means = []
        for option in options:
            total, count = full_forward_sum(eval_lm, prompt + option, len(prompt))
            means.append(total / count)
        assert d["prediction"] == int(np.argmax(means))
        assert d["score"] == float(d["prediction"] == d["gold"])
    assert [d["prediction"] for d in gen] == ["Paris city"] * 2
    assert [d["score"] for d in gen] == [1.0, 0.0]  # EM against "paris city"; none for Madrid
    assert gen[0]["f1"] == 1.0 and gen[1]["f1"] == 0.0
    sst2 = (cls[0]["score"] + cls[1]["score"]) / 2
    assert result.metrics["score/sst2"] == sst2 and result.metrics["score/nq"] == 0.5
    assert result.main == pytest.approx((sst2 + 0.5) / 2)  # mean over task names


def test_icl_option_follows_a_newline_and_a_space(eval_lm, tmp_path):
    """The original's option text: "\\n".join(demos + [query]) + "\\n " + option; the scored tokens
    are the option's, " negative" as one word."""
    corpus = write_jsonl(tmp_path / "corpus.json", [{"contents": "good film\npositive"}, {"contents": "bad\nnegative"}])
    options = ["negative", "positive"]
    query = "a dull song"
    record = {"query": query, "answers": ["0"], "options": options, "task_name": "t"}
    test = write_jsonl(tmp_path / "test.json", [record])
    lm = RecordingLM(eval_lm)
    InContextLearning(test, corpus).run(lm, FixedRetriever([[0, 1]]))
    context = "bad\nnegative\ngood film\npositive\na dull song"
    assert lm.prefixes == [context + "\n "] * 2
    span = eval_lm.make_span(context + "\n ", "negative")
    assert list(span.ids) == eval_lm.tokenizer(context + "\n negative")["input_ids"]
    assert eval_lm.tokenizer.decode(span.ids[span.start : span.end]) == " negative"


# ---------------------------------------------------------------------------- open QA
def test_open_qa_few_shot_is_deterministic(eval_lm, tmp_path):
    records = [
        {"query": "Who wrote the song?", "possible_answers": '["Ann", "Anna"]'},
        {"query": "Where is the river?", "answers": ["Paris"]},
        {"query": "What is the capital?", "answers": ["Rome"]},
        {"query": "Which band played?", "answers": ["The Fox"]},
    ]
    test = write_jsonl(tmp_path / "test.json", records)
    corpus = write_jsonl(tmp_path / "corpus.json", [{"title": "River", "text": "The river is in Paris."}])
    runs = []
    for _ in range(2):
        lm = RecordingLM(eval_lm, generation="it is in paris, i think")
        runs.append((OpenQA(test, corpus, few_shot=2).run(lm, NoRetriever()), lm.prompts))
    (first, prompts), (second, prompts_again) = runs
    assert prompts == prompts_again and first.metrics == second.metrics
    for i, prompt in enumerate(prompts):
        blocks = prompt.split("\n\n")
        assert len(blocks) == 3 and blocks[-1] == f"Q: {records[i]['query']} A:"
        for demo in blocks[:2]:
            j = next(j for j, r in enumerate(records) if demo.startswith(f"Q: {r['query']} A: "))
            assert j != i  # never its own answer
            gold = records[j].get("answers") or json.loads(records[j]["possible_answers"])
            assert demo == f"Q: {records[j]['query']} A: {gold[0]}"
    assert [d["correct"] for d in first.details] == [0.0, 1.0, 0.0, 0.0]
    assert first.metrics["accuracy"] == 0.25
    # answer_loglik: the mean log-prob of " <first answer>" after the prompt.
    total, count = full_forward_sum(eval_lm, prompts[1] + " Paris", len(prompts[1]))
    assert first.details[1]["answer_loglik"] == pytest.approx(total / count, rel=1e-5)
    # Retrieved knowledge goes first.
    lm = RecordingLM(eval_lm, generation="x")
    OpenQA(test, corpus, few_shot=0, limit=1).run(lm, FixedRetriever([[0]]))
    assert lm.prompts == ["Knowledge: River The river is in Paris.\n\nQ: Who wrote the song? A:"]


def test_open_qa_demonstrations_from_a_demos_file(eval_lm, tmp_path):
    """With ``demos_file``: demonstrations only from it, never from the question's own cluster
    (article), never one that shows a gold answer of the question; seeded per question; the
    questions' clusters reach the details."""
    questions = [
        {"query": f"Alpha: fact {i} is ____.", "answers": [f"Ans{i}"], "cluster": "Alpha", "cluster_unit": "article"}
        for i in range(3)
    ] + [{"query": "Beta: the river is ____.", "answers": ["Nile"], "cluster": "Beta", "cluster_unit": "article"}]
    demos = [
        {"query": "Alpha: an own-article question ____.", "answers": ["Own"], "cluster": "Alpha"},
        {"query": "Gamma: shows the gold ____.", "answers": ["nile"], "cluster": "Gamma"},  # Beta's answer
        *({"query": f"Delta: other {i} ____.", "answers": [f"D{i}"], "cluster": "Delta"} for i in range(3)),
    ]
    test = write_jsonl(tmp_path / "test.json", questions)
    corpus = write_jsonl(tmp_path / "corpus.json", [{"title": "River", "text": "The river is the Nile."}])
    demos_file = write_jsonl(tmp_path / "demos.json", demos)
    runs = []
    for _ in range(2):
        lm = RecordingLM(eval_lm, generation="x")
        result = OpenQA(test, corpus, few_shot=3, demos_file=demos_file).run(lm, NoRetriever())
        runs.append(lm.prompts)
    assert runs[0] == runs[1]
    shown = {f"Q: {d['query']} A: {d['answers'][0]}": d for d in demos}
    for question, prompt in zip(questions, runs[0], strict=True):
        blocks = prompt.split("\n\n")
        assert blocks[-1] == f"Q: {question['query']} A:" and len(blocks) == 4
        used = [shown[b] for b in blocks[:3]]  # every demonstration is a demos-file record
        assert all(d["cluster"] != question["cluster"] for d in used)
        assert all(d["answers"][0].lower() != question["answers"][0].lower() for d in used)
    # Alpha's questions may use the gold-showing Gamma demo; Beta's may use the Alpha one
    assert any("Gamma" in p for p in runs[0][:3]) and "Gamma" not in runs[0][3]
    assert [d["cluster"] for d in result.details] == ["Alpha"] * 3 + ["Beta"]
    assert {d["cluster_unit"] for d in result.details} == {"article"}


def popqa_records() -> list[dict]:
    """Three relations (prop_id 22, 91, 106) of four questions each; ``obj`` is what a demo shows."""
    out = []
    for prop in (106, 22, 91):
        for n in range(4):
            out.append(
                {"query": f"Question {prop}-{n}?", "possible_answers": [f"Gold {prop}-{n}", "Paris"], "prop_id": prop}
            )
            out[-1]["obj"] = f"Obj {prop}-{n}"
    return out


def test_open_qa_original_demos_and_rule(eval_lm, tmp_path):
    """Demos: one per *other* relation, in relation order, from the first ``relation_pool`` rows of
    each, answered with ``obj``; ``accuracy`` is the original substring rule, ``accuracy_normalized``
    the word match; keys are cut to 128 tokens."""
    records = popqa_records()
    test = write_jsonl(tmp_path / "test.json", records)
    corpus = write_jsonl(tmp_path / "corpus.json", [{"title": "River", "text": "The river is in Paris."}])
    runs = []
    for _ in range(2):
        lm = RecordingLM(eval_lm, generation="PARIS, I think")
        retriever = FixedRetriever([[0]] * len(records))
        result = OpenQA(test, corpus, relation_pool=2, knowledge_tokens=0).run(lm, retriever)
        assert retriever.key_max_length == 128
        runs.append((result, lm.prompts))
    (result, prompts), (again, prompts_again) = runs
    assert prompts == prompts_again and result.metrics == again.metrics
    chosen = set()
    for record, prompt in zip(records, prompts, strict=True):
        blocks = prompt.split("\n\n")
        assert blocks[-1] == f"Q: {record['query']} A:" and len(blocks) == 3
        others = [p for p in (22, 91, 106) if p != record["prop_id"]]  # relation order
        for demo, prop in zip(blocks[:2], others, strict=True):
            n = next(n for n in range(4) if demo.startswith(f"Q: Question {prop}-{n}? A: "))
            assert n < 2 and demo == f"Q: Question {prop}-{n}? A: Obj {prop}-{n}"
            chosen.add((prop, n))
    assert len(chosen) > 3  # seeded per question, not one fixed set
    # "PARIS" is no substring of any form of "Paris" (original rule) but the same word after normalising.
    assert result.metrics["accuracy"] == 0.0 and result.metrics["accuracy_normalized"] == 1.0
    lm = RecordingLM(eval_lm, generation="It is paris")
    assert OpenQA(test, corpus, limit=2).run(lm, NoRetriever()).metrics["accuracy"] == 1.0
    bad = write_jsonl(tmp_path / "bad.json", [records[0], {"query": "q", "answers": ["a"]}])
    with pytest.raises(InputError, match=r"bad.json:2: field 'prop_id'"):
        OpenQA(bad, corpus).run(eval_lm, NoRetriever())


# ---------------------------------------------------------------------------- retrieval only
@pytest.fixture()
def tool_files(tmp_path, toy_records):
    records = toy_records("tool")[:3]
    texts = list(dict.fromkeys(t for r in records for t in r["pos"] + r["neg"]))
    corpus = write_jsonl(tmp_path / "corpus.json", [{"text": t} for t in texts])
    rows = [{"query": r["query"], "pos_index": [texts.index(t) for t in r["pos"]]} for r in records]
    return write_jsonl(tmp_path / "test.json", rows), corpus, rows


def test_retrieval_only_gold_first_scores_one(tool_files):
    test, corpus, rows = tool_files
    gold_first = FixedRetriever([r["pos_index"] + [i for i in range(60) if i not in r["pos_index"]] for r in rows])
    result = RetrievalOnly(test, corpus, "tool", "tool", "ndcg@5").run(None, gold_first)
    for k in (1, 3, 5, 10):
        assert result.metrics[f"ndcg@{k}"] == pytest.approx(1.0) and result.metrics[f"mrr@{k}"] == 1.0
        expected = sum(min(k, len(r["pos_index"])) / len(r["pos_index"]) for r in rows) / len(rows)
        assert result.metrics[f"recall@{k}"] == pytest.approx(expected)
    assert result.main == pytest.approx(1.0)
    assert [d["relevant"] for d in result.details] == [r["pos_index"] for r in rows]
    with pytest.raises(NotApplicable):
        RetrievalOnly(test, corpus, "tool", "tool", "ndcg@5").run(None, NoRetriever())


def test_retrieval_only_graded_labels(tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.json", [{"text": f"doc {i}"} for i in range(5)])
    test = write_jsonl(tmp_path / "test.json", [{"query": "q", "pos_index": [3, 1], "pos_relevance": [2, 1]}])
    best = RetrievalOnly(test, corpus, "c", "convsearch", "ndcg@3").run(None, FixedRetriever([[3, 1, 0]]))
    assert best.main == pytest.approx(1.0)
    swapped = RetrievalOnly(test, corpus, "c", "convsearch", "ndcg@3").run(None, FixedRetriever([[1, 3, 0]]))
    ideal = 2 + 1 / math.log2(3)
    assert swapped.main == pytest.approx((1 + 2 / math.log2(3)) / ideal)


# ---------------------------------------------------------------------------- input errors
def test_missing_field_names_file_line_and_field(eval_lm, tmp_path):
    file = write_jsonl(tmp_path / "msc.json", [CHAT[1], {"history": [], "query": "hi"}])
    with pytest.raises(InputError) as err:
        Conversation(file).run(eval_lm, NoRetriever())
    assert (err.value.path, err.value.line, err.value.field) == (str(file), 2, "answers")
    assert str(err.value) == f"{file}:2: field 'answers': missing"
    mmlu = write_jsonl(tmp_path / "mmlu.json", [{**MMLU[0], "answer": "Z"}])
    with pytest.raises(InputError, match=r"mmlu.json:1: field 'answer': 'Z' is not an option"):
        MultipleChoiceQA(mmlu, tmp_path / "unused.json").run(eval_lm, NoRetriever())
    bad_answer = {"query": "q", "answers": ["maybe"], "options": ["a", "b"], "task_name": "t"}
    icl = write_jsonl(tmp_path / "icl.json", [bad_answer])
    with pytest.raises(InputError, match=r"icl.json:1: field 'answers'"):
        InContextLearning(icl, tmp_path / "unused.json").run(eval_lm, NoRetriever())
    popqa = write_jsonl(tmp_path / "popqa.json", [{"query": "q"}])
    with pytest.raises(InputError, match=r"popqa.json:1: field 'answers'"):
        OpenQA(popqa, tmp_path / "unused.json").run(eval_lm, NoRetriever())
    with pytest.raises(ValueError, match="needs a causal LM"):
        Conversation(file).run(None, NoRetriever())


def test_labels_outside_the_corpus(tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.json", [{"text": "a"}, {"text": "b"}, {"text": "c"}])
    test = write_jsonl(tmp_path / "test.json", [{"query": "q", "pos_index": [1]}, {"query": "r", "pos_index": [2, 7]}])
    outside = r"test.json:2: field 'pos_index': ids \[7\] are not in the corpus \(3 documents\)"
    with pytest.raises(InputError, match=outside):
        RetrievalOnly(test, corpus, "tool", "tool", "ndcg@5").run(None, FixedRetriever([[0], [0]]))
    empty = write_jsonl(tmp_path / "empty.json", [{"query": "q", "pos_index": []}])
    with pytest.raises(InputError, match=r"empty.json:1: field 'pos_index'"):
        RetrievalOnly(empty, corpus, "tool", "tool", "ndcg@5").run(None, FixedRetriever([[0]]))


# ---------------------------------------------------------------------------- planted fact (real LM)
@pytest.mark.integration
def test_planted_fact_helps_the_real_lm(smollm2, tmp_path):
    """An invented fact the LM cannot know: retrieving it must raise the answer's likelihood above
    no retrieval and above an unrelated passage."""
    corpus = write_jsonl(
        tmp_path / "corpus.json",
        [
            {"title": "Veltoria", "text": "The capital of the country Veltoria is Quenmar."},
            {"title": "Rivers", "text": "The Danube flows through ten countries of Europe."},
        ],
    )
    test = write_jsonl(
        tmp_path / "test.json", [{"query": "What is the capital of the country Veltoria?", "answers": ["Quenmar"]}]
    )
    qa = OpenQA(test, corpus, few_shot=0, max_new_tokens=1)  # generation is not what is checked here
    with_fact = qa.run(smollm2, FixedRetriever([[0]], "gold"))
    unrelated = qa.run(smollm2, FixedRetriever([[1]], "unrelated"))
    alone = qa.run(smollm2, NoRetriever())
    ll = {name: r.metrics["answer_loglik"] for name, r in [("fact", with_fact), ("other", unrelated), ("none", alone)]}
    assert ll["fact"] > ll["none"] + 1.0 and ll["fact"] > ll["other"] + 1.0, ll
    assert with_fact.details[0]["retrieved"] == [0] and alone.details[0]["retrieved"] == []
