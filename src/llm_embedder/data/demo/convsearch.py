"""convsearch: conversational search over knowledge, sessions of questions about one Wikipedia article."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from llm_embedder.data.demo.common import (
    EVAL_SPLITS,
    DemoSize,
    TaskData,
    halve_ood,
    norm_text,
    ood_linked,
    round_robin,
    shuffled,
    train_corpus_path,
)
from llm_embedder.data.demo.qa import article_cluster, contains_word, passage_clozes
from llm_embedder.data.demo.wikipedia import Article, passage_corpus, passage_rows, passage_text

REFERENCES = ("pronoun", "ellipsis")
_POSSESSIVE = {"it": "its", "they": "their", "he": "his", "she": "her"}


def _count(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text))


_PERSONAL_CATEGORY = re.compile(r"\b(?:gods|deities|demigods|characters)\b", re.I)


def pronoun_of(article: Article) -> str:
    """How a later question refers to the article's subject: he/she for a person (a biography, or a
    god or character by its categories; she when the article says she/her more than he/his), they
    when the article writes "<title> are/were/have" more than "is/was/has", else it."""
    text = article.text
    if article.is_biography or any(_PERSONAL_CATEGORY.search(c) for c in article.categories):
        male, female = _count(r"\b(?:he|his|him)\b", text.lower()), _count(r"\b(?:she|her)\b", text.lower())
        return "she" if female > male else "he"
    subject = re.escape(article.subject)
    plural = _count(rf"\b{subject} (?:are|were|have)\b", text) > _count(rf"\b{subject} (?:is|was|has)\b", text)
    return "they" if plural else "it"


def _names(article: Article, pronoun: str) -> list[str]:
    """How the text names the subject: the title; a person also by the surname."""
    return [article.subject] + ([article.subject.split()[-1]] if pronoun in ("he", "she") else [])


def _mentions(article: Article, pronoun: str) -> re.Pattern:
    """A mention of the subject, with a leading "the" and a possessive "'s"; not inside quotes or
    a word ("d'Andorra"), not followed by a longer name ("Alabama River", "Andorra la Vella")."""
    names = _names(article, pronoun)
    alternatives = "|".join(re.escape(n) for n in sorted(set(names), key=len, reverse=True))
    longer = r"(?! (?:[A-Z]|(?:la|le|de|del|da|von|van|of|al)\b))"
    return re.compile(rf"(?<![\w'’\"“-])(?:[Tt]he )?(?:{alternatives})('s|’s)?(?![\w-]){longer}")


_PREPOSITION_BEFORE = re.compile(
    r"\b(?:about|after|against|at|before|between|by|for|from|in|into|like|of|on|over|than|to|toward|towards|"
    r"under|upon|with|without)\s+$",
    re.I,
)
_OBJECT = {"it": "it", "they": "them", "he": "him", "she": "her"}
_NAME_BEFORE = re.compile(r"(?:[A-Z][\w.]*\s+(?:of\s+)?|\d+(?:st|nd|rd|th)\s+|['’]s\s+)$")
"""Before a mention, a capitalised word (and "of"), an ordinal or a possessive: the mention is part
of a longer name or a modifier ("High Court of Andorra", "the 88th Academy Awards ceremony")."""


def refer_back(question: str, article: Article, pronoun: str) -> tuple[str, str] | None:
    """The question as a later turn: mentions of the subject replaced by its pronoun ("pronoun"),
    or unchanged when it names no subject ("ellipsis"); None when the subject still shows (in a
    longer name, say)."""

    def replace(m: re.Match) -> str:
        if _NAME_BEFORE.search(question[: m.start()]):
            return m.group()
        word = _POSSESSIVE[pronoun] if m.group(1) else pronoun
        if not m.group(1) and _PREPOSITION_BEFORE.search(question[: m.start()]):
            word = _OBJECT[pronoun]
        start = m.start() == 0 or question[: m.start()].rstrip().endswith((".", "?", "!"))
        return word.capitalize() if start else word

    changed, n = _mentions(article, pronoun).subn(replace, question)
    if any(re.search(rf"(?<!\w){re.escape(name)}(?!\w)", changed, re.I) for name in _names(article, pronoun)):
        return None
    return changed, "pronoun" if n else "ellipsis"


@dataclass(frozen=True)
class Turn:
    question: str
    answer: str
    passage: int
    reference: str
    """``first`` (names the subject), ``pronoun`` or ``ellipsis``."""
    number: int
    """1 for the first turn of the session."""
    answer_passages: tuple[int, ...] = ()
    """The article's other passages that contain the answer: the ones that answer the question."""

    @property
    def answered(self) -> str:
        """The question with its blank filled: the turn as context for later ones."""
        return self.question.replace("____", self.answer)


def sessions_of(article: Article, rng: np.random.Generator) -> list[list[Turn]]:
    """Sessions of 2-4 turns about the article, each question from another passage; later turns
    prefer sentences that mention the subject (they become pronoun questions) and follow the
    document order."""
    pronoun = pronoun_of(article)
    mentions = _mentions(article, pronoun)
    texts = [passage_text(sentences) for sentences in article.passages]
    clozes = passage_clozes(article, rng, prefer=lambda sentence: bool(mentions.search(sentence)))
    naming = [pc for pc in clozes if mentions.search(pc[1].sentence)]
    other = [pc for pc in clozes if not mentions.search(pc[1].sentence)]
    out: list[list[Turn]] = []
    while len(naming) + len(other) >= 2:
        k = int(rng.integers(2, 5))
        first = (other or naming).pop()
        later = []
        while len(later) < k - 1 and (naming or other):
            later.append((naming or other).pop())
        later.sort(key=lambda pc: pc[0])
        p, cloze = first
        blanked = cloze.query[len(article.title) + 2 :]  # the sentence without the "<title>: " prefix
        question = blanked if mentions.search(blanked) else f"{article.subject}: {blanked}"
        turns = [Turn(question, cloze.answer, p, "first", 1)]
        for p, cloze in later:
            answered_in = tuple(q for q, text in enumerate(texts) if q != p and contains_word(text, cloze.answer))
            asked = refer_back(cloze.query[len(article.title) + 2 :], article, pronoun)
            if asked is not None and answered_in:
                turns.append(Turn(asked[0], cloze.answer, p, asked[1], len(turns) + 1, answered_in))
        if len(turns) >= 2:
            out.append(turns)
    return out


def concat_query(turns: list[Turn]) -> str:
    """QReCC's "concat" form: the last question, then the earlier turns (question with its answer
    filled in), most recent first."""
    return " ".join([turns[-1].question] + [t.answered for t in reversed(turns[:-1])])


def build_convsearch(parts: dict[str, list[Article]], size: DemoSize, rng: np.random.Generator) -> TaskData:
    """Conversational search over knowledge (QReCC-style), from the Wikipedia sample of qa.

    A session is 2-4 cloze questions (qa's rule) about one article, from different passages.  The
    first question names the subject (its sentence mentions the title, else it is prefixed
    ``"<title>: "``).  Later questions prefer sentences that name the subject and follow the
    document order; in them every mention of the subject (the title with an optional "the" and
    "'s"; people: also the surname; not inside a longer name) becomes he/she/it/they (him/her/them
    after a preposition, its/his/her/their for "'s"): he/she when the article is a biography or about
    a god or character by its categories, they when it writes "<title> are/were/have" more than
    "is/was/has".  A sentence that does not name the subject stays as it is (ellipsis); a later
    question that still names the subject is dropped.  The rule is mechanical, and a few questions
    read awkwardly ("It practitioners ...").

    Each later turn (2nd, 3rd, 4th) is a record: ``query`` = the current question, then the earlier
    turns (the question with its answer filled in), most recent first (QReCC's "concat" form);
    ``answers`` = [the blanked span]; ``pos`` = the article's other passages that contain the
    answer (as a word).  The passage a later question was cut from is in no corpus, so the question
    cannot find its own sentence word for word: a positive states the answer in other words, and
    the subject (named only in the earlier turns) tells which article to look in.  A turn without
    such a passage is no record.  Records also carry ``question`` (the current one), ``subject``,
    ``turn``, ``reference`` (pronoun or ellipsis) and ``cluster`` (the article: its turns are not
    independent).  Sessions are taken from the split's articles in turn; train, dev, test and ood
    share no article (ood: the biographies of the same Wikipedia sample, then split by article into
    ood-dev and ood-test, the halves of ``partition_articles``).

    Corpus rows are ``{"title", "text": "<title> <passage>"}``.  Corpus (test and dev): every
    positive plus a seeded sample of the other passages of the in-domain articles (the same and
    other subjects).  Corpus (ood-dev and ood-test, one file): the ood positives plus a sample of
    all other passages.  Training corpus (``corpus-train/convsearch.jsonl``, ``pos_index`` of the
    training records): every passage of the train articles that no question was cut from, so no
    dev, test or ood passage.
    """
    n_test = size.test_of("convsearch")
    splits = (("test", n_test), ("dev", n_test), ("train", size.train), ("ood", n_test))
    sessions = {split: [(a, sessions_of(a, rng)) for a in shuffled(parts[split], rng)] for split, _ in splits}
    # no passage a later question was cut from is in a corpus: the question must not find its own sentence
    cut_from = {(a.title, t.passage) for found in sessions.values() for a, ss in found for s in ss for t in s[1:]}
    records: dict[str, list[tuple[Article, Turn, str, list[int]]]] = {}
    seen: set[str] = set()
    for split, need in splits:
        groups = []
        for article, article_sessions in sessions[split]:
            group = []
            for turns in article_sessions:
                for t in range(1, len(turns)):
                    query = concat_query(turns[: t + 1])
                    answering = [q for q in turns[t].answer_passages if (article.title, q) not in cut_from]
                    if answering and norm_text(query) not in seen:
                        seen.add(norm_text(query))
                        group.append((article, turns[t], query, answering))
            groups.append(group)
        records[split] = round_robin(groups, need)
        if len(records[split]) < need and split != "ood":
            raise RuntimeError(f"convsearch: only {len(records[split])} {split} turns, {need} needed")

    in_domain = parts["test"] + parts["dev"] + parts["train"]
    chosen = [(a, q) for split in ("test", "dev", "train") for a, _, _, pos in records[split] for q in pos]
    ood_chosen = [(a, q) for a, _, _, pos in records["ood"] for q in pos]
    corpora = {
        "in": passage_corpus(chosen, in_domain, size.convsearch_corpus, rng, exclude=cut_from),
        "ood": passage_corpus(ood_chosen, parts["ood"] + in_domain, size.convsearch_corpus, rng, exclude=cut_from),
    }
    # the key is "<title> <passage>", as for qa, in one field: the harness reads convsearch with "{text}"
    for rows, _ in corpora.values():
        rows[:] = [{"title": r["title"], "text": f"{r['title']} {r['text']}"} for r in rows]

    def record(
        i: int, article: Article, turn: Turn, query: str, pos: list[int], rows: dict[tuple[str, int], int]
    ) -> dict[str, Any]:
        return {
            "query": query,
            "question": turn.question,
            "answers": [turn.answer],
            "pos_index": sorted(rows[article.title, q] for q in pos),
            "subject": article.title,
            "turn": turn.number,
            "reference": turn.reference,
            **article_cluster(article),
            "query_id": i,
        }

    files: dict[str, list[dict[str, Any]]] = {}
    ood_side = {a.title: half for half in ("ood-dev", "ood-test") for a in parts[half]}
    halves = halve_ood(records, lambda r: ood_side[r[0].title])
    for split, folder in EVAL_SPLITS.items():
        rows, row_of = corpora["ood" if split.startswith("ood") else "in"]
        files[f"{folder}/convsearch/qrecc/test.concat.json"] = [
            record(i, a, t, q, pos, row_of) for i, (a, t, q, pos) in enumerate(halves[split])
        ]
    files["eval/convsearch/qrecc/corpus.json"] = corpora["in"][0]
    files["ood-test/convsearch/qrecc/corpus.json"] = corpora["ood"][0]
    # the training corpus: every passage of the train articles that no question was cut from
    every_passage = {(a.title, q) for a in parts["train"] for q in range(len(a.passages))}
    rows, row_of = passage_rows(every_passage - cut_from, parts["train"])
    rows[:] = [{"title": r["title"], "text": f"{r['title']} {r['text']}"} for r in rows]
    files[train_corpus_path("convsearch")] = rows
    train = [
        {
            **(r := record(i, a, t, q, pos, row_of)),
            "pos": [rows[j]["text"] for j in r["pos_index"]],
            "task": "convsearch",
        }
        for i, (a, t, q, pos) in enumerate(records["train"])
    ]
    return TaskData(
        train,
        "convsearch/qrecc/test.concat.json",
        files,
        train_corpus=train_corpus_path("convsearch"),
        linked={
            "dev/convsearch/qrecc/corpus.json": "eval/convsearch/qrecc/corpus.json",
            **ood_linked(["convsearch/qrecc/corpus.json"]),
        },
        notes={
            "test_references": {
                r: sum(t.reference == r for _, t, _, _ in records["test"]) for r in ("pronoun", "ellipsis")
            }
        },
    )
