"""In-context learning: retrieve demonstrations from a pool, then classify or generate.

Demonstrations are added best first while they fit the budget, then laid out with the most
relevant one next to the query (the original kept the least relevant ones when it had to cut).
Classification picks the option with the highest mean log-likelihood per token, the option written
after the context as ``"\n " + option`` (the original's layout); generation is
greedy up to a newline and scored by exact match and F1.  The score is the mean over task names.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llm_embedder.errors import InputError
from llm_embedder.evaluation.base import EvalResult, cluster_fields, fit_passages, load_records, require_lm
from llm_embedder.evaluation.metrics import exact_match, token_f1
from llm_embedder.evaluation.retrievers import Retriever
from llm_embedder.models.lm import CausalLM
from llm_embedder.retrieval.corpus import Corpus


@dataclass
class InContextLearning:
    """Eval records: ``query``, ``answers`` (list), ``task_name``, and ``options`` for classification
    (then ``answers[0]`` is the correct option's index, or its text).  Corpus rows: ``contents``."""

    eval_file: Path
    corpus_file: Path
    key_template: str = "{contents}"
    top_k: int = 8
    context_tokens: int = 1024
    max_new_tokens: int = 64
    limit: int | None = None
    name: str = "icl"
    task: str = "icl"

    def _gold_option(self, line: int, record: dict) -> int:
        answer, options = record["answers"][0], record["options"]
        if isinstance(answer, str) and answer.strip().isdigit() and int(answer) < len(options):
            return int(answer)
        if answer in options:
            return options.index(answer)
        raise InputError(self.eval_file, line, "answers", f"{answer!r} is neither an option index nor an option")

    def run(self, lm: CausalLM | None, retriever: Retriever, show_progress: bool = False) -> EvalResult:
        lm = require_lm(lm, self.name)
        rows = load_records(self.eval_file, {"query": str, "answers": list, "task_name": str}, self.limit)
        corpus = None if retriever.name == "none" else Corpus.from_jsonl(self.corpus_file, self.key_template)
        hits = retriever.search(self.task, [r["query"] for _, r in rows], corpus, self.top_k) if corpus else None
        text_of = dict(zip(corpus.ids, corpus.texts, strict=True)) if corpus else {}
        details, spans, prompts = [], [], []
        for i, (line, r) in enumerate(rows):
            ids = hits[i] if hits else []
            room = self.context_tokens - len(lm.tokenizer(r["query"], add_special_tokens=False)["input_ids"])
            demos = fit_passages(lm, [text_of[j] for j in ids], room, cut=False)  # whole demos only
            context = "\n".join([*reversed(demos), r["query"]])
            detail = {"query": r["query"], "task_name": r["task_name"], "retrieved": ids[: len(demos)]}
            detail |= cluster_fields(r)
            if isinstance(r.get("options"), list) and r["options"]:
                detail["gold"] = self._gold_option(line, r)
                detail["n_options"] = len(r["options"])
                # As the original: the option after a newline and a space, so " negative" is one word token.
                spans += [lm.make_span(context + "\n ", option) for option in r["options"]]
            else:
                prompts.append((i, context + "\n"))
            details.append(detail)
        scores = lm.span_log_probs(spans)
        generations = lm.generate([p for _, p in prompts], max_new_tokens=self.max_new_tokens)
        position = 0
        per_task: dict[str, list[float]] = defaultdict(list)
        for detail in details:
            if "n_options" in detail:
                option_scores = [s / c for s, c in scores[position : position + detail["n_options"]]]
                position += detail["n_options"]
                detail["prediction"] = int(np.argmax(option_scores))
                detail["score"] = float(detail["prediction"] == detail["gold"])
        for (i, _), text in zip(prompts, generations, strict=True):
            answers = rows[i][1]["answers"]
            details[i].update(prediction=text.strip(), score=exact_match(text, answers), f1=token_f1(text, answers))
        for detail in details:
            per_task[detail["task_name"]].append(detail["score"])
        task_scores = {name: sum(v) / len(v) for name, v in sorted(per_task.items())}
        metrics = {
            "score": sum(task_scores.values()) / len(task_scores),
            **{f"score/{k}": v for k, v in task_scores.items()},
        }
        return EvalResult(metrics, "score", details=details)
