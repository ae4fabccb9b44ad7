"""Data cards: per task, what the paper's task is, what ours is, how they differ, and a sample."""

from __future__ import annotations

import json
from typing import Any

from llm_embedder.data.demo.common import TASK_ORDER, cut_words

# task -> (the paper's task, ours, how they differ)
CARDS: dict[str, tuple[str, str, str]] = {
    "qa": (
        "knowledge retrieval for question answering: trained on MS MARCO and NQ, evaluated on PopQA (open "
        "questions about long-tail entities, answer found in the generation) and MMLU (multiple choice), the "
        "LLM reading retrieved Wikipedia passages.",
        "cloze questions cut from Wikipedia sentences (`<title>: ... ____ ...`, answer = the blanked year or "
        "name); popqa and mmlu (multiple choice with three distractors of the same kind from the same article) read "
        "the qa-retrieval corpus, which holds no question's own passage, with few-shot demonstrations from the "
        "training questions. The qa-retrieval column (nDCG@10) reads `qa/retrieval/test.json` + "
        "`corpus.json`: the popqa questions, then further cloze questions of the split's articles up to the test "
        "size, whose positives are the article's other passages that contain the answer (as a word, case "
        "ignored; questions without one are dropped); the corpus is the qa corpus plus those positives, without "
        "the passage any qa question (train, dev, test, ood) was cut from, so no question finds its own sentence. "
        "Training questions are made the same way (positives: the article's other passages that state the "
        "answer) and mine their negatives from the training corpus: the train articles' passages, none "
        "a question was cut from.",
        "cloze statements, not natural questions; one small Wikipedia sample (97 articles), not the full dump; "
        "MMLU-style questions are the same cloze questions with choices, not exam questions.",
    ),
    "icl": (
        "in-context example retrieval: for a query of one of 30 FLAN/UPRISE task sets, retrieve demonstrations "
        "from the pooled training examples; the LLM answers with them (accuracy over held-out tasks).",
        "four small real task sets (movie-review sentiment, chat-message topic, word analogies, trivia), a pool "
        "of demonstrations per task; ood: two other task sets of the same sources (other topics, grammatical "
        "analogies).",
        "4 task sets instead of 30, short inputs; the evaluation tasks are the training tasks (held-out tasks "
        "only in ood).",
    ),
    "chat": (
        "long-conversation memory (Multi-Session Chat): retrieve earlier exchanges of the same conversation "
        "that help the LLM predict the next response (perplexity).",
        "chitchat-dataset conversations between two people: the query is a late turn, the candidates are the "
        "6-8 earlier exchanges of the same conversation, the answer the next turn; ood: conversations of the "
        "same chat set started from held-back prompts.",
        "one session, not several; open chit-chat without persona facts, so memory helps less than in MSC.",
    ),
    "lrlm": (
        "long-range language modelling (Books3, ArXiv, CodeParrot, PG19): retrieve earlier chunks of a long "
        "document for the chunk being predicted (perplexity).",
        "whole Wikipedia articles (15,000-30,000 characters of prose); the last 8 chunks of 128 LM tokens are "
        "predicted; training records are ~500-character chunks with 8 earlier chunks as candidates; ood: "
        "biographies of the same Wikipedia sample.",
        "encyclopaedic articles much shorter than books, so the memory is a few dozen chunks, not thousands.",
    ),
    "tool": (
        "tool retrieval (ToolBench): retrieve the API document that serves an instruction (nDCG@5).",
        "BFCL requests with exactly one gold function; the positive is that function's document (name, "
        "description, parameters); ood: the live BFCL files (real users' requests and functions: another tool "
        "family of the same leaderboard).",
        "BFCL's functions (Python/Java/JavaScript libraries, user APIs) instead of RapidAPI endpoints; a corpus "
        "of ~1,500 documents, not 10,000+.",
    ),
    "convsearch": (
        "conversational search (QReCC): given a conversation whose last question depends on earlier turns, "
        "retrieve the web passage that answers it (nDCG@3); the query is the question followed by the context.",
        "sessions of 2-4 cloze questions about one Wikipedia article; later questions refer to the subject by a "
        "pronoun or leave it out; the query is the last question then the earlier turns (QReCC's concat form); "
        "the positives are the article's other passages that contain the answer (the passage the question was "
        "cut from is in no corpus); the corpus mixes passages of many articles.",
        "questions are cloze statements and the pronoun substitution is mechanical; sessions are short and stay "
        "on one subject (QReCC's drift between topics is absent).",
    ),
}


def _sample(record: dict[str, Any]) -> str:
    """A record as one JSON line, long strings and lists shortened."""

    def short(value: Any) -> Any:
        if isinstance(value, str):
            return cut_words(value, 240)
        if isinstance(value, list):
            return [short(v) for v in value[:3]] + (["…"] if len(value) > 3 else [])
        return value

    return json.dumps({k: short(v) for k, v in record.items()}, ensure_ascii=False)


def data_cards(samples: dict[str, dict[str, Any]]) -> list[str]:
    """The cards as Markdown lines; ``samples`` holds one test record per task."""
    lines = ["## Data cards", ""]
    for task in TASK_ORDER:
        paper, ours, differ = CARDS[task]
        lines += [
            f"### {task}",
            "",
            f"- **In the paper:** {paper}",
            f"- **Here:** {ours}",
            f"- **How they differ:** {differ}",
            "- **Sample (test):**",
            "",
            "```json",
            _sample(samples[task]),
            "```",
            "",
        ]
    return lines
