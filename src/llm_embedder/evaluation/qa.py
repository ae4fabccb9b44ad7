"""Knowledge for questions: multiple choice (MMLU-style) and open answers (PopQA-style).

Both retrieve the top-k passages of a corpus for each question and put as many of them as fit in
the knowledge budget in front of the question, best first.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llm_embedder.errors import InputError
from llm_embedder.evaluation.base import EvalResult, fit_passages, load_records, require_lm
from llm_embedder.evaluation.metrics import contains_answer
from llm_embedder.evaluation.retrievers import Retriever
from llm_embedder.models.lm import CausalLM
from llm_embedder.retrieval.corpus import Corpus

LETTERS = "ABCDEFGHIJ"


def _knowledge(lm: CausalLM, corpus: Corpus | None, ids: list[int], budget: int, header: str) -> str:
    if corpus is None or not ids:
        return ""
    text_of = dict(zip(corpus.ids, corpus.texts, strict=True))
    kept = fit_passages(lm, [text_of[i] for i in ids], budget)
    return header + "\n".join(kept) + "\n\n" if kept else ""


@dataclass
class MultipleChoiceQA:
    """Accuracy of picking the option letter the LLM finds most likely, with retrieved knowledge.

    Eval records: ``query``, ``choices`` (list), ``answer`` (index or letter), ``subject``.
    ``accuracy`` averages per subject first (as the MMLU leaderboard does); ``accuracy_micro`` per question.
    """

    eval_file: Path
    corpus_file: Path
    key_template: str = "{title} {text}"
    top_k: int = 3
    knowledge_tokens: int = 512
    limit: int | None = None
    name: str = "mmlu"
    task: str = "qa"

    def run(self, lm: CausalLM | None, retriever: Retriever, show_progress: bool = False) -> EvalResult:
        lm = require_lm(lm, self.name)
        rows = load_records(
            self.eval_file, {"query": str, "choices": list, "answer": (int, str), "subject": str}, self.limit
        )
        gold = [self._gold(line, r) for line, r in rows]
        corpus = None if retriever.name == "none" else Corpus.from_jsonl(self.corpus_file, self.key_template)
        hits = retriever.search(self.task, [r["query"] for _, r in rows], corpus, self.top_k) if corpus else None
        spans, details = [], []
        for i, (_, r) in enumerate(rows):
            ids = hits[i] if hits else []
            knowledge = _knowledge(lm, corpus, ids, self.knowledge_tokens, "Knowledge:\n")
            subject = r["subject"].replace("_", " ")
            options = "".join(f"\n{LETTERS[j]}. {c}" for j, c in enumerate(r["choices"]))
            prefix = (
                f"{knowledge}The following are multiple choice questions (with answers) about {subject}.\n\n"
                f"{r['query']}{options}\nAnswer:"
            )
            spans += [lm.make_span(prefix, f" {LETTERS[j]}") for j in range(len(r["choices"]))]
            details.append({"query": r["query"], "subject": r["subject"], "retrieved": ids, "gold": gold[i]})
        scores = lm.span_log_probs(spans)
        position, per_subject = 0, defaultdict(list)
        for i, (_, r) in enumerate(rows):
            option_scores = [s / c for s, c in scores[position : position + len(r["choices"])]]
            position += len(r["choices"])
            prediction = int(np.argmax(option_scores))
            details[i].update(prediction=prediction, option_scores=option_scores)
            per_subject[r["subject"]].append(float(prediction == gold[i]))
        subject_acc = {s: sum(v) / len(v) for s, v in per_subject.items()}
        metrics = {
            "accuracy": sum(subject_acc.values()) / len(subject_acc),
            "accuracy_micro": sum(d["prediction"] == d["gold"] for d in details) / len(details),
            **{f"accuracy/{s}": a for s, a in sorted(subject_acc.items())},
        }
        return EvalResult(metrics, "accuracy", details=details)

    def _gold(self, line: int, record: dict) -> int:
        answer, n = record["answer"], len(record["choices"])
        index = answer
        if isinstance(answer, str):  # one letter; str.index would also accept "AB" (0) and raise on "Z"
            letter = answer.strip().upper()
            index = LETTERS.index(letter) if len(letter) == 1 and letter in LETTERS else None
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
            raise InputError(
                self.eval_file, line, "answer", f"{answer!r} is not an option index or letter for {n} choices"
            )
        return index


@dataclass
class OpenQA:
    """Greedy answers with retrieved knowledge; correct when a gold answer appears in the output.

    Eval records: ``query`` and ``answers`` (or PopQA's ``possible_answers``, a list or a JSON list).
    Few-shot demonstrations ("Q: ... A: ...") come from other records of the same file, seeded.
    Also reports ``answer_loglik``: the mean log-likelihood per token of the first gold answer, a
    steadier signal than generation for small LMs.
    """

    eval_file: Path
    corpus_file: Path
    key_template: str = "{title} {text}"
    top_k: int = 3
    knowledge_tokens: int = 512
    few_shot: int = 3
    max_new_tokens: int = 16
    limit: int | None = None
    seed: int = 0
    name: str = "popqa"
    task: str = "qa"

    def _answers(self, line: int, record: dict) -> list[str]:
        answers = record.get("answers", record.get("possible_answers"))
        if isinstance(answers, str):
            try:
                answers = json.loads(answers)
            except json.JSONDecodeError:
                answers = [answers]
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
            raise InputError(self.eval_file, line, "answers", "missing: a list of gold answers")
        return answers

    def run(self, lm: CausalLM | None, retriever: Retriever, show_progress: bool = False) -> EvalResult:
        lm = require_lm(lm, self.name)
        rows = load_records(self.eval_file, {"query": str}, self.limit)
        answers = [self._answers(line, r) for line, r in rows]
        corpus = None if retriever.name == "none" else Corpus.from_jsonl(self.corpus_file, self.key_template)
        hits = retriever.search(self.task, [r["query"] for _, r in rows], corpus, self.top_k) if corpus else None
        prompts, spans, details = [], [], []
        for i, (_, r) in enumerate(rows):
            ids = hits[i] if hits else []
            rng = np.random.default_rng((self.seed, i))
            others = [j for j in rng.permutation(len(rows)).tolist() if j != i][: self.few_shot]
            demos = "".join(f"Q: {rows[j][1]['query']} A: {answers[j][0]}\n\n" for j in others)
            prompt = _knowledge(lm, corpus, ids, self.knowledge_tokens, "Knowledge: ") + demos + f"Q: {r['query']} A:"
            prompts.append(prompt)
            spans.append(lm.make_span(prompt, f" {answers[i][0]}"))
            details.append({"query": r["query"], "retrieved": ids, "answers": answers[i]})
        generations = lm.generate(prompts, max_new_tokens=self.max_new_tokens)
        logliks = [s / c for s, c in lm.span_log_probs(spans)]
        for d, text, ll in zip(details, generations, logliks, strict=True):
            d.update(generation=text, correct=contains_answer(text, d["answers"]), answer_loglik=ll)
        metrics = {
            "accuracy": sum(d["correct"] for d in details) / len(details),
            "answer_loglik": sum(logliks) / len(logliks),
        }
        return EvalResult(metrics, "accuracy", details=details)
