"""qa: PopQA-style cloze questions and MMLU-style multiple choice over Wikipedia passages."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from llm_embedder.data.demo.common import DemoSize, TaskData, norm_text, word_count
from llm_embedder.data.demo.wikipedia import GAP, Article, split_passages, split_sentences

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


def _article_spans(article: Article) -> dict[str, list[str]]:
    """All blankable years and names of an article, sorted: the distractors of its multiple-choice questions."""
    found: dict[str, set[str]] = {"year": set(), "name": set()}
    for paragraph in article.paragraphs:
        for sentence in split_sentences(paragraph.replace(GAP, "")):
            for start, end, kind in cloze_spans(sentence, article.title, article.lower_words):
                found[kind].add(sentence[start:end])
    return {k: sorted(v) for k, v in found.items()}


def build_qa(articles: list[Article], size: DemoSize, rng: np.random.Generator) -> TaskData:
    """Open-QA (PopQA-style) and multiple-choice (MMLU-style) cloze questions over Wikipedia passages.

    Passages: each article paragraph, split into passages of at most ~110 words at sentence ends.
    Questions (cloze, not natural questions): a sentence of 10-45 words of a passage with one span
    replaced by ``____``, prefixed by the article title: ``"<title>: <sentence with ____>"``.  The
    span is a 4-digit year or a capitalised name of 1-4 words that is not the first word, shares no
    word with the title, occurs once in the sentence and is not a word the article also writes in
    lower case.  ``answers`` = [the span]; ``pos`` = the passage (as ``"<title> <text>"``, the eval
    key template) with its ``pos_index``.  One question per passage, a few per article; test
    questions come from other passages than training ones.  Other passages may contain the answer
    too (unlabelled positives, as in real data).

    Multiple choice (``eval/qa/mmlu``): each test question whose article offers three other spans
    of the same kind (years or names) not in the sentence; the choices are those three and the
    answer in a random order; the subject is the article title.

    The corpus is every question's passage plus a seeded sample of the other passages, in article
    order.  Negatives are left to mining.
    """
    passages: list[tuple[int, list[str]]] = []  # (article index, sentences with GAP marks)
    for a, article in enumerate(articles):
        for paragraph in article.paragraphs:
            passages += [(a, sentences) for sentences in split_passages(paragraph)]
    need = size.train + size.test
    per_article = max(3, math.ceil(need / max(1, len(articles)) * 2))
    used_per_article: dict[int, int] = {}
    seen: set[str] = set()
    picked: list[tuple[int, Cloze]] = []
    for p in rng.permutation(len(passages)).tolist():
        if len(picked) >= need:
            break
        a, sentences = passages[p]
        if used_per_article.get(a, 0) >= per_article:
            continue
        order = rng.permutation(len(sentences)).tolist()
        for s in order:
            cloze = make_cloze(sentences[s], articles[a].title, rng, articles[a].lower_words)
            if cloze and norm_text(cloze.query) not in seen:
                seen.add(norm_text(cloze.query))
                picked.append((p, cloze))
                used_per_article[a] = used_per_article.get(a, 0) + 1
                break
    if len(picked) < need:
        raise RuntimeError(f"qa: only {len(picked)} cloze questions could be made, {need} needed")
    test_picks, train_picks = picked[: size.test], picked[size.test :]

    # corpus: every question's passage plus a seeded sample of the others, in article order
    chosen = {p for p, _ in picked}
    others = [i for i in range(len(passages)) if i not in chosen]
    extra = max(0, size.qa_corpus - len(chosen))
    chosen |= {others[i] for i in rng.permutation(len(others))[:extra].tolist()}
    rows = sorted(chosen)
    row_of = {p: r for r, p in enumerate(rows)}
    corpus = [
        {"title": articles[passages[p][0]].title, "text": " ".join(passages[p][1]).replace(GAP, "").strip()}
        for p in rows
    ]
    corpus = [{**c, "text": re.sub(r"\s{2,}", " ", c["text"])} for c in corpus]

    def key(p: int) -> str:  # the corpus row as the eval key template "{title} {text}" renders it
        return f"{corpus[row_of[p]]['title']} {corpus[row_of[p]]['text']}"

    train = [
        {
            "query": c.query,
            "answers": [c.answer],
            "pos": [key(p)],
            "pos_index": [row_of[p]],
            "task": "qa",
            "query_id": i,
        }
        for i, (p, c) in enumerate(train_picks)
    ]
    popqa = [
        {"query": c.query, "answers": [c.answer], "pos_index": [row_of[p]], "answer_kind": c.kind, "query_id": i}
        for i, (p, c) in enumerate(test_picks)
    ]
    mmlu = []
    for p, c in test_picks:
        article = articles[passages[p][0]]
        pool = [s for s in _article_spans(article)[c.kind] if s.lower() != c.answer.lower() and s not in c.sentence]
        if c.kind == "name":
            gold_words = set(c.answer.lower().split())
            pool = [s for s in pool if not set(s.lower().split()) & gold_words]
        if len(pool) < 3:
            continue
        distractors = [pool[i] for i in rng.choice(len(pool), 3, replace=False).tolist()]
        gold = int(rng.integers(4))
        choices = distractors[:gold] + [c.answer] + distractors[gold:]
        mmlu.append(
            {"query": c.query, "choices": choices, "answer": gold, "subject": article.title, "query_id": len(mmlu)}
        )
    return TaskData(
        train,
        {"qa/popqa/test.json": popqa, "qa/mmlu/test.json": mmlu, "qa/nq/corpus.json": corpus},
        corpus_file="qa/nq/corpus.json",
        linked={"qa/msmarco/corpus.json": "qa/nq/corpus.json"} if mmlu else {},
        notes={"articles": len(articles), "passages_available": len(passages), "mmlu": len(mmlu)},
    )
