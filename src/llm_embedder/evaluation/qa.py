"""Knowledge for questions: multiple choice (MMLU-style) and open answers (PopQA-style).

Both retrieve the top-k passages of a corpus for each question and put as many of them as fit in
the knowledge budget in front of the question, best first.  Keys are encoded with at most
``key_max_length`` = 128 tokens, as the original MMLU and PopQA evaluations did (training uses 256).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llm_embedder.errors import InputError
from llm_embedder.evaluation.base import EvalResult, cluster_fields, fit_passages, load_records, require_lm
from llm_embedder.evaluation.metrics import contains_answer, popqa_match
from llm_embedder.evaluation.retrievers import Retriever
from llm_embedder.models.lm import CausalLM
from llm_embedder.retrieval.corpus import Corpus

LETTERS = "ABCDEFGHIJ"
# The original evaluation's retrieval key budget for MMLU and PopQA.
QA_KEY_MAX_LENGTH = 128

# The four MMLU categories of the original evaluation and their 57 subjects (18, 12, 13, 14).
MMLU_CATEGORIES = {
    "STEM": [
        "abstract_algebra",
        "astronomy",
        "college_biology",
        "college_chemistry",
        "college_computer_science",
        "college_mathematics",
        "college_physics",
        "computer_security",
        "conceptual_physics",
        "electrical_engineering",
        "elementary_mathematics",
        "high_school_biology",
        "high_school_chemistry",
        "high_school_computer_science",
        "high_school_mathematics",
        "high_school_physics",
        "high_school_statistics",
        "machine_learning",
    ],
    "Social Sciences": [
        "econometrics",
        "high_school_geography",
        "high_school_government_and_politics",
        "high_school_macroeconomics",
        "high_school_microeconomics",
        "high_school_psychology",
        "human_sexuality",
        "professional_psychology",
        "public_relations",
        "security_studies",
        "sociology",
        "us_foreign_policy",
    ],
    "Humanities": [
        "formal_logic",
        "high_school_european_history",
        "high_school_us_history",
        "high_school_world_history",
        "international_law",
        "jurisprudence",
        "logical_fallacies",
        "moral_disputes",
        "moral_scenarios",
        "philosophy",
        "prehistory",
        "professional_law",
        "world_religions",
    ],
    "Others": [
        "anatomy",
        "business_ethics",
        "clinical_knowledge",
        "college_medicine",
        "global_facts",
        "human_aging",
        "management",
        "marketing",
        "medical_genetics",
        "miscellaneous",
        "nutrition",
        "professional_accounting",
        "professional_medicine",
        "virology",
    ],
}
SUBJECT_CATEGORY = {subject: category for category, subjects in MMLU_CATEGORIES.items() for subject in subjects}


def category_scores(subject_acc: dict[str, float]) -> dict[str, float]:
    """``category/<name>``: the mean accuracy of the category's subjects present (as the original:
    a mean over subjects, not questions).  Subjects outside the 57 of MMLU belong to no category."""
    per_category = defaultdict(list)
    for subject, acc in subject_acc.items():
        category = SUBJECT_CATEGORY.get(subject.strip().lower().replace(" ", "_"))
        if category is not None:
            per_category[category].append(acc)
    return {f"category/{c}": sum(v) / len(v) for c in MMLU_CATEGORIES if (v := per_category.get(c))}


def _knowledge(lm: CausalLM, corpus: Corpus | None, ids: list[int], budget: int, header: str) -> str:
    if corpus is None or not ids:
        return ""
    text_of = dict(zip(corpus.ids, corpus.texts, strict=True))
    kept = fit_passages(lm, [text_of[i] for i in ids], budget)
    return header + "\n".join(kept) + "\n\n" if kept else ""


def _retrieve(evaluator, retriever: Retriever, queries: list[str]) -> tuple[Corpus | None, list[list[int]] | None]:
    """The corpus and each query's top-k ids, keys cut to the evaluator's ``key_max_length``; none without retrieval."""
    if retriever.name == "none":
        return None, None
    corpus = Corpus.from_jsonl(evaluator.corpus_file, evaluator.key_template)
    hits = retriever.search(evaluator.task, queries, corpus, evaluator.top_k, key_max_length=evaluator.key_max_length)
    return corpus, hits


@dataclass
class MultipleChoiceQA:
    """Accuracy of picking the option letter the LLM finds most likely, with retrieved knowledge.

    Eval records: ``query``, ``choices`` (list), ``answer`` (index or letter), ``subject``.
    ``accuracy`` averages per subject first (as the MMLU leaderboard does); ``accuracy_micro`` per
    question; ``category/STEM``, ``category/Social Sciences``, ``category/Humanities`` and
    ``category/Others`` average the subjects of each of the original's four categories.
    """

    eval_file: Path
    corpus_file: Path
    key_template: str = "{title} {text}"
    top_k: int = 3
    knowledge_tokens: int = 512
    key_max_length: int | None = QA_KEY_MAX_LENGTH
    limit: int | None = None
    name: str = "mmlu"
    task: str = "qa"

    def run(self, lm: CausalLM | None, retriever: Retriever, show_progress: bool = False) -> EvalResult:
        lm = require_lm(lm, self.name)
        rows = load_records(
            self.eval_file, {"query": str, "choices": list, "answer": (int, str), "subject": str}, self.limit
        )
        gold = [self._gold(line, r) for line, r in rows]
        corpus, hits = _retrieve(self, retriever, [r["query"] for _, r in rows])
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
            **category_scores(subject_acc),
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
    """Greedy answers with retrieved knowledge, scored as the original PopQA evaluation did.

    Eval records: ``query`` and ``answers`` (or PopQA's ``possible_answers``, a list or a JSON list);
    optionally ``prop_id`` (the relation) and ``obj`` (the answer a demonstration shows).

    Few-shot demonstrations ("Q: ... A: ...") come from ``demos_file`` (records of the same shape,
    e.g. training questions) when given, else from the other records of the eval file, seeded: when
    records carry ``prop_id``, as the original, one per *other* relation (drawn from that relation's
    first ``relation_pool`` records, in relation order) answered with ``obj``; else ``few_shot``
    records answered with their first answer.  Never a demonstration from the question's own
    ``cluster`` (its article, where records name it), none that shows one of its gold answers, and
    never the question itself.  ``few_shot=0``: no demonstrations.

    ``accuracy`` is the original rule (an answer, its lower case or its capitalisation is a substring
    of the generation); ``accuracy_normalized`` matches SQuAD-normalised answers as whole words.
    ``answer_loglik``: the mean log-likelihood per token of the first gold answer, a steadier
    signal than generation for small LMs.
    """

    eval_file: Path
    corpus_file: Path
    key_template: str = "{title} {text}"
    top_k: int = 3
    knowledge_tokens: int = 512
    key_max_length: int | None = QA_KEY_MAX_LENGTH
    few_shot: int = 3
    relation_pool: int = 15
    max_new_tokens: int = 16
    limit: int | None = None
    seed: int = 0
    demos_file: Path | None = None
    name: str = "popqa"
    task: str = "qa"

    def _answers(self, line: int, record: dict, path: Path | None = None) -> list[str]:
        answers = record.get("answers", record.get("possible_answers"))
        if isinstance(answers, str):
            try:
                answers = json.loads(answers)
            except json.JSONDecodeError:
                answers = [answers]
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
            raise InputError(path or self.eval_file, line, "answers", "missing: a list of gold answers")
        return answers

    def _demos(self, rows: list[tuple[int, dict]], answers: list[list[str]]) -> list[list[tuple[str, str]]]:
        """Per record, its demonstrations as (question, answer shown)."""
        if self.few_shot <= 0:
            return [[] for _ in rows]
        path = self.demos_file or self.eval_file
        source = load_records(self.demos_file, {"query": str}) if self.demos_file else rows
        shown = [self._shown_answer(line, r, self._answers(line, r, path), path) for line, r in source]

        def allowed(i: int, j: int) -> bool:
            record, demo = rows[i][1], source[j][1]
            if (self.demos_file is None and j == i) or demo["query"] == record["query"]:
                return False
            if record.get("cluster") is not None and demo.get("cluster") == record["cluster"]:
                return False  # the question's own article would hint at its answer
            return shown[j].lower() not in {a.lower() for a in answers[i]}

        if any("prop_id" in r for _, r in source):
            missing = next((line for line, r in source if "prop_id" not in r), None)
            if missing is not None:
                raise InputError(path, missing, "prop_id", "missing, while other records name their relation")
            by_relation: dict = defaultdict(list)
            for j, (_, r) in enumerate(source):
                by_relation[r["prop_id"]].append(j)
            relations = sorted(by_relation, key=lambda v: (isinstance(v, str), v))
            out = []
            for i, (_, r) in enumerate(rows):
                rng = np.random.default_rng((self.seed, i))
                picks = []
                for k in relations:
                    pool = [j for j in by_relation[k][: self.relation_pool] if allowed(i, j)]
                    if k != r.get("prop_id") and pool:
                        picks.append(int(rng.choice(pool)))
                out.append([(source[j][1]["query"], shown[j]) for j in picks])
            return out
        out = []
        for i in range(len(rows)):
            rng = np.random.default_rng((self.seed, i))
            picks = [j for j in rng.permutation(len(source)).tolist() if allowed(i, j)][: self.few_shot]
            out.append([(source[j][1]["query"], shown[j]) for j in picks])
        return out

    def _shown_answer(self, line: int, record: dict, answers: list[str], path: Path) -> str:
        obj = record.get("obj", answers[0])
        if not isinstance(obj, str):
            raise InputError(path, line, "obj", f"expected a string, got {type(obj).__name__}")
        return obj

    def run(self, lm: CausalLM | None, retriever: Retriever, show_progress: bool = False) -> EvalResult:
        lm = require_lm(lm, self.name)
        rows = load_records(self.eval_file, {"query": str}, self.limit)
        answers = [self._answers(line, r) for line, r in rows]
        corpus, hits = _retrieve(self, retriever, [r["query"] for _, r in rows])
        prompts, spans, details = [], [], []
        for i, ((_, r), demos) in enumerate(zip(rows, self._demos(rows, answers), strict=True)):
            ids = hits[i] if hits else []
            shots = "".join(f"Q: {question} A: {shown}\n\n" for question, shown in demos)
            prompt = _knowledge(lm, corpus, ids, self.knowledge_tokens, "Knowledge: ") + shots + f"Q: {r['query']} A:"
            prompts.append(prompt)
            spans.append(lm.make_span(prompt, f" {answers[i][0]}"))
            details.append({"query": r["query"], "retrieved": ids, "answers": answers[i], **cluster_fields(r)})
        # One pass over each long prompt serves both the generation and the answer's likelihood.
        generations, scores = lm.generate_and_score(prompts, spans, max_new_tokens=self.max_new_tokens)
        logliks = [s / c for s, c in scores]
        for d, text, ll in zip(details, generations, logliks, strict=True):
            d.update(
                generation=text,
                correct=popqa_match(text, d["answers"]),
                correct_normalized=contains_answer(text, d["answers"]),
                answer_loglik=ll,
            )
        metrics = {
            "accuracy": sum(d["correct"] for d in details) / len(details),
            "accuracy_normalized": sum(d["correct_normalized"] for d in details) / len(details),
            "answer_loglik": sum(logliks) / len(logliks),
        }
        return EvalResult(metrics, "accuracy", details=details)
