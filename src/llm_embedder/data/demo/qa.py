"""qa: PopQA-style cloze questions and MMLU-style multiple choice over Wikipedia passages."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from llm_embedder.data.demo.common import (
    EVAL_SPLITS,
    HELD_OUT,
    DemoSize,
    TaskData,
    halve_ood,
    norm_text,
    ood_linked,
    round_robin,
    shuffled,
    train_corpus_path,
    word_count,
)
from llm_embedder.data.demo.wikipedia import GAP, Article, passage_corpus, passage_rows, passage_text, split_sentences

_YEAR = re.compile(r"(?<![\d$£€.,])\b(1[0-9]{3}|20[0-2][0-9])\b(?![\d,])")
_UPPER, _LOWER = "A-ZÀ-ÖØ-Þ", "a-zß-öø-ÿ"
_NAME = re.compile(
    rf"(?<![\w'’–-])[{_UPPER}][{_LOWER}]+"
    rf"(?:[ -](?:(?:of|de|da|del|von|van|the|la|le|al) )?[{_UPPER}][{_LOWER}]+){{0,3}}"
    r"(?![\w'’–-])(?!\s?\d)"
)
_JOINERS = {"of", "de", "da", "del", "von", "van", "the", "la", "le", "al"}
_NOT_NAMES_TEXT = (
    "The A An In On At He She It They We I This That These Those His Her Its Their Our However After Before During "
    "Although While When Where Since As By For From With Of And But Or If There Some Many Most Other Such Both Each "
    "All One Two Three Four Five First Second Third Later Also Then Today According Although Because Despite "
    "Following Under Over Between Among Within Without Through Until Unlike Like Another Several Following "
    "January February March April May June July August September October November December "
    "Monday Tuesday Wednesday Thursday Friday Saturday Sunday Mr Mrs Dr St Saint Sir God"
)
_NOT_NAMES = frozenset(_NOT_NAMES_TEXT.split())


@dataclass(frozen=True)
class Cloze:
    query: str
    answer: str
    kind: str
    """``year`` or ``name``."""
    sentence: str


def cloze_spans(sentence: str, title: str, lower_words: frozenset[str] = frozenset()) -> list[tuple[int, int, str]]:
    """Blankable spans of a sentence: 4-digit years and capitalised names (1-4 words, not the
    first word, not a function word, sharing no word with the article title, once in the sentence,
    and not made only of words the article also writes in lower case, like "Office" or "Western")."""
    title_words = {w.lower() for w in re.findall(r"[A-Za-z]+", title) if len(w) > 2}
    spans = []
    for m in _YEAR.finditer(sentence):
        if sentence.count(m.group()) == 1 and m.group() not in title:
            spans.append((m.start(), m.end(), "year"))
    for m in _NAME.finditer(sentence):
        words = m.group().replace("-", " ").split()
        if m.start() == 0 or words[0] in _NOT_NAMES or (len(words) == 1 and len(words[0]) < 4):
            continue
        if sentence[: m.start()].rstrip().endswith((".", ":", '"', "(")):
            continue
        if {w.lower() for w in words} & title_words or sentence.count(m.group()) != 1:
            continue
        if all(w.lower() in lower_words for w in words if w not in _JOINERS):
            continue
        spans.append((m.start(), m.end(), "name"))
    return spans


def make_cloze(
    sentence: str, title: str, rng: np.random.Generator, lower_words: frozenset[str] = frozenset()
) -> Cloze | None:
    """A fill-in-the-blank question from one Wikipedia sentence, or None when it is unsuitable.

    Query: ``"<article title>: <sentence with one span replaced by ____>"``; answer: the span.
    """
    if GAP in sentence or not 10 <= word_count(sentence) <= 45 or not sentence.endswith("."):
        return None
    if re.search(r"[\[\]{}|=<>_]|\(\s*\)|\s[,.;]", sentence) or sentence.count('"') % 2:
        return None
    spans = cloze_spans(sentence, title, lower_words)
    if not spans:
        return None
    start, end, kind = spans[int(rng.integers(len(spans)))]
    query = f"{title}: {sentence[:start]}____{sentence[end:]}"
    return Cloze(query, sentence[start:end], kind, sentence)


def contains_word(text: str, span: str, ignore_case: bool = False) -> bool:
    """Whether ``span`` occurs in ``text`` as a whole word (not inside a longer word or hyphenated compound)."""
    return re.search(rf"(?<![\w-]){re.escape(span)}(?![\w-])", text, re.I if ignore_case else 0) is not None


def _article_spans(article: Article) -> dict[str, list[str]]:
    """All blankable years and names of an article, sorted: the distractors of its multiple-choice questions."""
    found: dict[str, set[str]] = {"year": set(), "name": set()}
    for paragraph in article.paragraphs:
        for sentence in split_sentences(paragraph.replace(GAP, "")):
            for start, end, kind in cloze_spans(sentence, article.title, article.lower_words):
                found[kind].add(sentence[start:end])
    return {k: sorted(v) for k, v in found.items()}


def passage_clozes(
    article: Article, rng: np.random.Generator, prefer: Callable[[str], bool] | None = None
) -> list[tuple[int, Cloze]]:
    """At most one cloze question per passage of the article: ``(passage index, cloze)``, passages
    in a seeded order, the question from the first sentence (in a seeded order, those ``prefer``
    accepts first) that makes one."""
    out = []
    for p in rng.permutation(len(article.passages)).tolist():
        sentences = article.passages[p]
        order = rng.permutation(len(sentences)).tolist()
        if prefer is not None:
            order = [s for s in order if prefer(sentences[s])] + [s for s in order if not prefer(sentences[s])]
        for s in order:
            cloze = make_cloze(sentences[s], article.title, rng, article.lower_words)
            if cloze:
                out.append((p, cloze))
                break
    return out


def _multiple_choice(picks: list[tuple[Article, int, Cloze]], rng: np.random.Generator) -> list[dict[str, Any]]:
    """MMLU-style records of the questions whose article offers three distractors of the answer's kind."""
    out: list[dict[str, Any]] = []
    for article, _, c in picks:
        pool = [s for s in _article_spans(article)[c.kind] if s.lower() != c.answer.lower() and s not in c.sentence]
        if c.kind == "name":
            gold_words = set(c.answer.lower().split())
            pool = [s for s in pool if not set(s.lower().split()) & gold_words]
        if len(pool) < 3:
            continue
        distractors = [pool[i] for i in rng.choice(len(pool), 3, replace=False).tolist()]
        gold = int(rng.integers(4))
        choices = distractors[:gold] + [c.answer] + distractors[gold:]
        out.append(
            {"query": c.query, "choices": choices, "answer": gold, "subject": article.title, "query_id": len(out)}
        )
    return out


Pick = tuple[Article, int, Cloze]


def article_cluster(article: Article) -> dict[str, str]:
    """An eval record's cluster: questions cut from one article are not independent (the leaderboard
    resamples whole articles)."""
    return {"cluster": article.title, "cluster_unit": "article"}


def _retrieval_files(
    picks: dict[str, list[Pick]],
    candidates: dict[str, list[Pick]],
    need: int,
    train_need: int,
    corpora: dict[str, tuple[dict[tuple[str, int], int], list[Article]]],
    train_pool: list[Article],
    ood_side: dict[str, str],
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int], list[tuple[Pick, list[int]]]]:
    """The qa retrieval column's files (``qa/retrieval/test.json`` + ``corpus.json`` per evaluation
    folder), where a question cannot find the sentence it was cut from, the training questions
    made the same way (third item: ``(pick, positive rows)``, rows of the training corpus) and the
    training corpus (``corpus-train/qa.jsonl``: every passage of the ``train_pool`` articles but the
    source passages, so no dev, test or ood passage).

    Questions: the split's popqa (train: first training) questions, then its further cloze
    questions (``candidates``, the same round-robin order; the first ones are its prefix) up to
    ``need`` (train: ``train_need``).  Positives: the other passages of the question's article that
    contain the answer as a word (case ignored), none of them a question's source passage; a
    question without one is dropped, and a further question cut from an earlier question's positive
    too.  Corpus: the qa corpus's passages plus every positive, less the source passage of every
    popqa/train question of any split and of every further question; ``corpora`` maps ``in``/``ood``
    to the qa corpus's (title, passage) -> row and its article pool.  The ``ood`` questions are halved
    by their article's side (``ood_side``: title -> ``ood-dev`` or ``ood-test``), which share the
    ``ood`` corpus.
    """
    source = {(a.title, p) for found in picks.values() for a, p, _ in found}
    used: set[tuple[str, int]] = set()  # every chosen positive: no later question may be cut from one
    positives: dict[str, list[tuple[Pick, list[int]]]] = {}
    for split in (*HELD_OUT, "train"):
        positives[split] = []
        wanted = train_need if split == "train" else need
        for n, (a, p, c) in enumerate(candidates[split]):
            if len(positives[split]) == wanted:
                break
            extra = n >= len(picks[split])
            if extra and (a.title, p) in used:
                continue
            pos = [
                q
                for q, sentences in enumerate(a.passages)
                if q != p
                and (a.title, q) not in source
                and contains_word(passage_text(sentences), c.answer, ignore_case=True)
            ]
            if pos:
                positives[split].append(((a, p, c), pos))
                used |= {(a.title, q) for q in pos}
                source |= {(a.title, p)} if extra else set()
    files: dict[str, list[dict[str, Any]]] = {}
    rows_of: dict[str, dict[tuple[str, int], int]] = {}
    for name, (row_of, pool) in corpora.items():
        splits = ("ood",) if name == "ood" else ("test", "dev", "train")
        keys = set(row_of) | {(a.title, q) for s in splits for (a, _, _), pos in positives[s] for q in pos}
        rows, rows_of[name] = passage_rows(keys - source, pool)
        files[f"{EVAL_SPLITS['ood-test' if name == 'ood' else 'test']}/qa/retrieval/corpus.json"] = rows
    halves = halve_ood(positives, lambda found: ood_side[found[0][0].title])
    for split, folder in EVAL_SPLITS.items():
        row = rows_of["ood" if split.startswith("ood") else "in"]
        files[f"{folder}/qa/retrieval/test.json"] = [
            {
                "query": c.query,
                "answers": [c.answer],
                "pos_index": [row[a.title, q] for q in pos],
                "answer_kind": c.kind,
                **article_cluster(a),
                "query_id": i,
            }
            for i, ((a, _, c), pos) in enumerate(halves[split])
        ]
    every_passage = {(a.title, q) for a in train_pool for q in range(len(a.passages))}
    files[train_corpus_path("qa")], train_row_of = passage_rows(every_passage - source, train_pool)
    train = [(pick, [train_row_of[pick[0].title, q] for q in pos]) for pick, pos in positives["train"]]
    return files, {f"retrieval_{split}": len(found) for split, found in positives.items()}, train


def build_qa(parts: dict[str, list[Article]], size: DemoSize, rng: np.random.Generator) -> TaskData:
    """Open-QA (PopQA-style) and multiple-choice (MMLU-style) cloze questions over Wikipedia passages.

    Passages: each article paragraph, split into passages of at most ~110 words at sentence ends.
    Questions (cloze, not natural questions): a sentence of 10-45 words of a passage with one span
    replaced by ``____``, prefixed by the article title: ``"<title>: <sentence with ____>"``.  The
    span is a 4-digit year or a capitalised name of 1-4 words that is not the first word, shares no
    word with the title, occurs once in the sentence and is not a word the article also writes in
    lower case.  ``answers`` = [the span].  At most one question per passage, taken from the split's
    articles in turn (one per article per round).  Train, dev, test and ood use different articles
    (ood: the biographies of the same Wikipedia sample); the ood questions are then split by article
    into ood-dev and ood-test (the article halves of ``partition_articles``), which share the ood
    corpora.

    Training records are made as the qa retrieval column's questions (below): ``pos`` = the article's
    other passages that contain the answer (as ``"<title> <text>"``, the eval key template) with
    their ``pos_index`` in the training corpus, ``corpus-train/qa.jsonl``: every passage of the train
    articles but the ones a question was cut from (no dev, test or ood passage is in it).

    The qa retrieval column reads ``qa/retrieval/test.json`` + ``corpus.json`` (see
    ``_retrieval_files``): the same questions, then more, against a corpus without the passage any
    question was cut from, since a cloze question finds the sentence it was cut from word for word.
    popqa and mmlu read that corpus too (``qa/nq/corpus.json`` and ``qa/msmarco/corpus.json`` are
    the same file): their knowledge must state the answer elsewhere.  Their questions' records
    carry no ``pos_index`` (``qa/nq/test.json`` is the same file as ``qa/popqa/test.json``); every
    record names its article as ``cluster``.  popqa's few-shot demonstrations are the training
    questions (``qa/popqa/demos.json``), never a test question or one of its article.

    Multiple choice (``qa/mmlu``): each question whose article offers three other spans of the same
    kind (years or names) not in the sentence; the choices are those three and the answer in a
    random order; the subject is the article title.

    The qa corpus the retrieval corpus starts from (test and dev): every train, dev and test
    question's passage plus a seeded sample of the other passages of those articles.  Its ood
    counterpart: the ood questions' passages plus a seeded sample of all other passages.  Negatives
    are left to mining.
    """
    seen: set[str] = set()
    picks: dict[str, list[Pick]] = {}
    candidates: dict[str, list[Pick]] = {}  # every cloze question of the split, in round-robin order
    for split, need in (("test", size.test), ("dev", size.test), ("train", size.train), ("ood", size.test)):
        groups = []
        for article in shuffled(parts[split], rng):
            group = []
            for p, cloze in passage_clozes(article, rng):
                if norm_text(cloze.query) not in seen:
                    seen.add(norm_text(cloze.query))
                    group.append((article, p, cloze))
            groups.append(group)
        candidates[split] = round_robin(groups, sum(map(len, groups)))
        picks[split] = candidates[split][:need]
        if len(picks[split]) < need and split != "ood":
            raise RuntimeError(f"qa: only {len(picks[split])} {split} questions could be made, {need} needed")

    in_domain = parts["test"] + parts["dev"] + parts["train"]
    chosen = [(a, p) for split in ("test", "dev", "train") for a, p, _ in picks[split]]
    _, row_of = passage_corpus(chosen, in_domain, size.qa_corpus, rng)
    _, ood_row_of = passage_corpus([(a, p) for a, p, _ in picks["ood"]], parts["ood"] + in_domain, size.qa_corpus, rng)

    def key(row: dict[str, str]) -> str:  # the corpus row as the eval key template "{title} {text}" renders it
        return f"{row['title']} {row['text']}"

    # The popqa and mmlu questions read the qa-retrieval corpus: a cloze question's own sentence in
    # the knowledge would reward finding it word for word, not finding what states the answer.
    files: dict[str, list[dict[str, Any]]] = {}
    linked: dict[str, str] = {}
    notes: dict[str, Any] = {"articles": {k: len(v) for k, v in parts.items()}}
    ood_side = {a.title: half for half in ("ood-dev", "ood-test") for a in parts[half]}
    picked = halve_ood(picks, lambda pick: ood_side[pick[0].title])
    # drawn for test, dev and the whole of ood in turn, then halved: the halves hold what ood held
    choices = halve_ood({s: _multiple_choice(picks[s], rng) for s in HELD_OUT}, lambda r: ood_side[r["subject"]])
    for split, folder in EVAL_SPLITS.items():
        files[f"{folder}/qa/popqa/test.json"] = [
            {"query": c.query, "answers": [c.answer], "answer_kind": c.kind, **article_cluster(a), "query_id": i}
            for i, (a, _, c) in enumerate(picked[split])
        ]
        files[f"{folder}/qa/mmlu/test.json"] = mmlu = [{**r, "query_id": i} for i, r in enumerate(choices[split])]
        linked[f"{folder}/qa/nq/test.json"] = f"{folder}/qa/popqa/test.json"
        retrieval_corpus = f"{'ood-test' if split.startswith('ood') else 'eval'}/qa/retrieval/corpus.json"
        linked[f"{folder}/qa/nq/corpus.json"] = retrieval_corpus
        if mmlu:
            linked[f"{folder}/qa/msmarco/corpus.json"] = retrieval_corpus
        notes[f"mmlu_{split}"] = len(mmlu)
    retrieval, counts, positives = _retrieval_files(
        picks,
        candidates,
        size.test,
        size.train,
        {"in": (row_of, in_domain), "ood": (ood_row_of, parts["ood"] + in_domain)},
        parts["train"],
        ood_side,
    )
    if len(positives) < size.train:
        raise RuntimeError(f"qa: only {len(positives)} train questions have an answering passage, {size.train} needed")
    files |= retrieval
    linked["dev/qa/retrieval/corpus.json"] = "eval/qa/retrieval/corpus.json"
    linked |= ood_linked(["qa/retrieval/corpus.json"])
    notes |= counts
    # Training asks what the qa-retrieval column asks: another passage that states the answer, from a
    # corpus where no question's own sentence is (a cloze question finds it word for word, which
    # teaches nothing the base encoder cannot do) and no held-out article is.
    corpus_file = train_corpus_path("qa")
    rows = files[corpus_file]
    train = [
        {
            "query": c.query,
            "answers": [c.answer],
            "pos": [key(rows[r]) for r in pos],
            "pos_index": pos,
            "task": "qa",
            "query_id": i,
        }
        for i, ((_, _, c), pos) in enumerate(positives)
    ]
    # popqa's few-shot demonstrations: training questions (other articles than any held-out question's)
    files["eval/qa/popqa/demos.json"] = [
        {"query": c.query, "answers": [c.answer], **article_cluster(a), "query_id": i}
        for i, ((a, _, c), _) in enumerate(positives)
    ]
    demos = "eval/qa/popqa/demos.json"
    linked |= {f"{folder}/qa/popqa/demos.json": demos for folder in EVAL_SPLITS.values() if folder != "eval"}
    return TaskData(train, "qa/popqa/test.json", files, train_corpus=corpus_file, linked=linked, notes=notes)
