"""A small six-task LLM-Embedder dataset built from real public text that installs offline from pip.

``llm-embedder data build-demo --out DIR [--seed 0] [--size small|quick]`` writes::

    DIR/train/<task>.json          training records in the released format (JSON lines)
    DIR/eval/...                   the evaluation layout `llm-embedder eval --data DIR/eval` reads
    DIR/corpus/<task>.jsonl        the corpus negatives are mined from (qa, icl, tool, convsearch);
                                   the same file as the task's eval corpus (a hard link, else a copy)
    DIR/SOURCES.md                 every source, its version and licence, and how each task was derived
    DIR/manifest.json              seed, size, source versions and record counts

Sources (none is imported; their data files are read from the installed packages):

- ``gensim`` wheel test data: a 106-article English Wikipedia sample (XML, CC BY-SA), the word2vec
  analogy questions and the Pang & Lee sentence-polarity sample;
- ``bfcl-eval``: Berkeley Function Calling Leaderboard requests and function documents;
- ``chitchat-dataset``: 7,168 open-domain chat conversations;
- ``chatterbot-corpus``: trivia questions with answers and topic-labelled chat openers.

Every random choice comes from a generator seeded by ``(seed, task)``, and nothing depends on set or
hash order, so the same seed and source versions give the same bytes.  Train and test are disjoint:
no query text (case- and space-insensitive) is in both, lrlm uses different documents, and qa
test questions come from passages no training question was made from.  The output folder appears
in one rename when everything is written.
"""

from __future__ import annotations

import bz2
import html
import importlib.metadata
import inspect
import json
import math
import os
import re
import shutil
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from importlib.util import find_spec
from itertools import zip_longest
from pathlib import Path
from typing import Any

import numpy as np

from llm_embedder.fileio import atomic_path

MANIFEST_KIND = "llm-embedder-demo-data"
TASK_ORDER = ("qa", "icl", "chat", "lrlm", "tool", "convsearch")


# ============================================================================ sizes
@dataclass(frozen=True)
class DemoSize:
    """How much of each task to build."""

    train: int
    """Training queries per task."""
    test: int
    """Test queries per task (lrlm: see ``lrlm_test_docs``)."""
    lrlm_test_docs: int
    """Held-out Wikipedia articles for the lrlm evaluation.  Each gives 8 predicted chunks, and each
    of those is a forward pass of up to 4,096 LM tokens (16 retrieved + 16 local chunks of 128), about
    a minute per article and retriever for SmolLM2-135M on 2 CPU cores, hence so few."""
    qa_corpus: int
    tool_corpus: int
    convsearch_corpus: int
    icl_pool_per_task: int
    """Demonstrations per ICL task name in the ICL corpus."""
    candidates: int = 8
    """Candidates of the chat (history entries, at most) and lrlm (earlier chunks) records."""


SIZES: dict[str, DemoSize] = {
    # ~150 train queries per task: recipes/demo.yaml (4 scored candidates per query, the LLM in
    # bfloat16, 80 training steps, the evaluation grid) ran in 15-19 minutes on 2 CPU cores.
    "small": DemoSize(
        train=150, test=48, lrlm_test_docs=3, qa_corpus=2000, tool_corpus=1500, convsearch_corpus=2000,
        icl_pool_per_task=150,
    ),
    # about a third: the recipe's --quick run took 4.2 minutes
    "quick": DemoSize(
        train=50, test=16, lrlm_test_docs=1, qa_corpus=700, tool_corpus=500, convsearch_corpus=700,
        icl_pool_per_task=50,
    ),
}  # fmt: skip


# ============================================================================ sources
class MissingSourceError(RuntimeError):
    """A package the demo data is read from is not installed (the message says how to install it)."""


@dataclass(frozen=True)
class Source:
    module: str
    """Import name, used only to locate the package folder (never imported)."""
    dist: str
    """The pip distribution name."""
    install: str
    licence: str
    files: tuple[str, ...]
    """Data files inside the package folder."""
    content: str


SOURCES: dict[str, Source] = {
    "gensim": Source(
        "gensim",
        "gensim",
        "pip install --no-deps gensim",
        "package LGPL-2.1-only; Wikipedia text CC BY-SA 3.0 (revisions up to May 2016); word2vec analogy "
        "questions Apache-2.0 (word2vec project); Pang & Lee sentence-polarity sample: no explicit licence, "
        "research data redistributed in the gensim wheel",
        (
            "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
            "test/test_data/questions-words.txt",
            "test/test_data/pang_lee_polarity.cor",
        ),
        "wheel test data: a 206-page English Wikipedia XML sample (106 articles, the rest redirects), "
        "the word2vec analogy questions (19,544), 200 movie-review sentences labelled positive/negative",
    ),
    "bfcl": Source(
        "bfcl_eval",
        "bfcl-eval",
        # Its dependencies pin numpy==1.26.4 and faiss-cpu==1.11.0 (and pull in openai, anthropic,
        # ...); only its data files are read, so it is installed without them.
        "pip install --no-deps bfcl-eval",
        "Apache-2.0",
        ("data/BFCL_v4_simple_python.json", "data/possible_answer/BFCL_v4_live_multiple.json"),
        "Berkeley Function Calling Leaderboard v4: user requests with their gold function call and JSON-schema "
        "function documents",
    ),
    "chitchat": Source(
        "chitchat_dataset",
        "chitchat-dataset",
        "pip install --no-deps chitchat-dataset",
        "MIT",
        ("dataset.json",),
        "7,168 open-domain chat conversations between two people (BYU PCC lab)",
    ),
    "chatterbot": Source(
        "chatterbot_corpus",
        "chatterbot-corpus",
        "pip install --no-deps chatterbot-corpus",
        "BSD-3-Clause",
        ("data/english/trivia.yml", "data/english/tech_support.yml"),
        "English dialog snippets in topic files; trivia.yml holds 261 question -> answer pairs",
    ),
}


def locate_sources(names: Iterable[str] | None = None) -> dict[str, Path]:
    """The package folder of each source; one error listing every missing package and its install line."""
    names = list(SOURCES) if names is None else list(names)
    found, missing = {}, []
    for name in names:
        source = SOURCES[name]
        spec = find_spec(source.module)
        folder = Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None
        absent = [] if folder is None else [f for f in source.files if not (folder / f).is_file()]
        if folder is None or absent:
            why = "not installed" if folder is None else f"installed but lacks {absent[0]}"
            missing.append(f"{source.dist} ({why}), install with: {source.install}")
        else:
            found[name] = folder
    if missing:
        raise MissingSourceError(
            "the demo data needs pip packages that are missing: "
            + "; ".join(missing)
            + " (or all of them, pinned: pip install --no-deps -r requirements-demo.txt)"
        )
    return found


def source_versions(names: Iterable[str] | None = None) -> dict[str, str]:
    out = {}
    for name in SOURCES if names is None else names:
        try:
            out[SOURCES[name].dist] = importlib.metadata.version(SOURCES[name].dist)
        except importlib.metadata.PackageNotFoundError:
            out[SOURCES[name].dist] = "unknown"
    return out


# ============================================================================ small helpers
def _norm(text: str) -> str:
    """Key for "the same query": case- and whitespace-insensitive."""
    return " ".join(text.lower().split())


def _words(text: str) -> int:
    return len(text.split())


def _cut_words(text: str, max_chars: int) -> str:
    """``text`` cut at a word boundary to at most ``max_chars`` characters."""
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    return text[:max_chars].rsplit(" ", 1)[0] + " …"


def _rng(seed: int, task: str) -> np.random.Generator:
    return np.random.default_rng([seed, TASK_ORDER.index(task) if task in TASK_ORDER else 99])


def _shuffled(items: list, rng: np.random.Generator) -> list:
    return [items[i] for i in rng.permutation(len(items))]


@dataclass
class TaskData:
    """What one task contributes to the output folder."""

    train: list[dict[str, Any]]
    eval_files: dict[str, list[dict[str, Any]]]
    """Path under ``eval/`` -> records."""
    corpus_file: str | None = None
    """Path under ``eval/`` of the task's corpus, also written as ``corpus/<task>.jsonl``."""
    linked: dict[str, str] = field(default_factory=dict)
    """Extra eval path -> eval path it is the same file as (the MMLU corpus)."""
    notes: dict[str, Any] = field(default_factory=dict)


# ============================================================================ Wikipedia (gensim)
@dataclass
class Article:
    title: str
    paragraphs: list[str]
    """Prose paragraphs; ``\\x00`` marks where a template (e.g. a unit conversion) was dropped."""

    @property
    def text(self) -> str:
        return "\n".join(p.replace(GAP, "") for p in self.paragraphs)

    @cached_property
    def lower_words(self) -> frozenset[str]:
        """Words the article writes in lower case (a capitalised one of them is no proper name)."""
        return frozenset(re.findall(r"(?<![\w'’-])[a-zß-öø-ÿ]+(?![\w'’-])", self.text))


GAP = "\x00"
_SKIP_SECTIONS = {
    "see also", "references", "external links", "further reading", "notes", "bibliography", "sources",
    "footnotes", "citations", "notes and references", "works cited", "gallery", "discography",
    "filmography", "works", "publications", "selected works", "primary sources", "secondary sources",
}  # fmt: skip
_DROP_LINK_PREFIXES = {
    "file", "image", "category", "media", "wikipedia", "wp", "template", "help", "portal", "special",
    "wikt", "wiktionary", "s", "commons", "wikisource", "wikiquote", "q", "b", "n", "v", "meta", "mw",
}  # fmt: skip
_LINK = re.compile(r"\[\[([^\[\]]*)\]\]")
_KEEP_LAST_ARG = re.compile(r"^\s*(lang(-[a-z]+)?|nowrap|transl|nihongo|small|sc|smallcaps|ill)\s*$", re.I)


def _drop_nested(text: str, open_: str, close: str, keep: Callable[[str], str] | None = None) -> str:
    """Remove every balanced ``open_ ... close`` span (nesting allowed); ``keep`` may turn a
    top-level span into replacement text."""
    pattern = re.compile(re.escape(open_) + "|" + re.escape(close))
    out, depth, span_start, keep_from = [], 0, 0, 0
    for m in pattern.finditer(text):
        if m.group() == open_:
            if depth == 0:
                out.append(text[keep_from : m.start()])
                span_start = m.start()
            depth += 1
        elif depth:
            depth -= 1
            if depth == 0:
                keep_from = m.end()
                out.append(keep(text[span_start:keep_from]) if keep else "")
    if depth == 0:
        out.append(text[keep_from:])
    return "".join(out)


def _template_text(template: str) -> str:
    """The visible text of the few inline templates that carry words; ``GAP`` for the rest."""
    inner = template[2:-2]
    if "{{" in inner:
        inner = _drop_nested(inner, "{{", "}}")
    parts = [p.strip() for p in inner.split("|")]
    name = parts[0]
    args = [p for p in parts[1:] if "=" not in p]
    if name.lower() in ("convert", "cvt") and len(args) >= 2 and re.fullmatch(r"[\d.,]+", args[0]):
        unit = args[2] if len(args) >= 3 and args[1] in ("-", "to", "and", "–") else args[1]
        value = f"{args[0]}–{args[2]}" if len(args) >= 3 and args[1] in ("-", "to", "–") else args[0]
        return f"{value} {unit}".replace("–", "-") if unit else value
    if _KEEP_LAST_ARG.match(name) and args:
        return args[-1]
    return GAP


def _link_text(m: re.Match) -> str:
    inner = m.group(1)
    target = inner.split("|", 1)[0]
    if ":" in target and not target.startswith(":"):
        prefix = target.split(":", 1)[0].strip().lower()
        if prefix in _DROP_LINK_PREFIXES or re.fullmatch(r"[a-z]{2,3}(-[a-z]+)*", prefix):
            return ""
    return inner.rsplit("|", 1)[-1].lstrip(":") if "|" in inner else inner.lstrip(":")


def clean_wikitext(text: str) -> list[str]:
    """Prose paragraphs of an article's wikitext.

    Drops comments, references, tables, galleries, maths, files and categories, list and
    indented lines, and the sections after the body (See also, References, ...); keeps the text of
    links; a removed template leaves a ``GAP`` mark (unit conversions and language templates keep
    their text).  A paragraph needs at least 8 words.
    """
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"<ref[^>]*?/>", "", text)
    text = re.sub(r"<ref[^>]*>.*?</ref>", "", text, flags=re.S)
    text = re.sub(
        r"<(gallery|math|timeline|imagemap|score|syntaxhighlight|source|chem|ce|poem|blockquote)\b[^>]*>.*?</\1>",
        "",
        text,
        flags=re.S | re.I,
    )
    text = _drop_nested(text, "{{", "}}", keep=_template_text)
    text = _drop_nested(text, "{|", "|}")
    for _ in range(4):  # innermost links first: file captions contain links
        text, n = _LINK.subn(_link_text, text)
        if not n:
            break
    text = re.sub(r"\[https?://[^\s\]]+ ([^\]]*)\]", r"\1", text)
    text = re.sub(r"\[https?://[^\]]*\]", "", text)
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"<br\s*/?>", " ", text, flags=re.I)
    text = re.sub(r"</?[a-zA-Z][^>]*>", "", text)
    text = html.unescape(text).replace("\u00a0", " ")
    paragraphs, skip = [], False
    for line in text.split("\n"):
        heading = re.match(r"^(=+)\s*(.*?)\s*\1\s*$", line)
        if heading:
            skip = heading.group(2).strip().lower() in _SKIP_SECTIONS
            continue
        line = line.strip()
        if skip or not line or line[0] in "*#:;|!{}=[]":
            continue
        # "( ; )" and "(; , from ..." left by removed pronunciation templates and audio files
        line = re.sub(r"\(\s*(?:[;," + GAP + r"]\s*)+", "(", line)
        line = re.sub(r"\s*\(\s*\)", "", line)
        line = re.sub(r"\s+([,.;:)])", r"\1", line)
        line = re.sub(r"[ \t]{2,}", " ", line).strip()
        if _words(line.replace(GAP, " ")) >= 8:
            paragraphs.append(line)
    return paragraphs


def read_wikipedia(gensim_dir: Path) -> list[Article]:
    """The articles (namespace 0, not redirects) of gensim's Wikipedia sample, in file order."""
    path = gensim_dir / SOURCES["gensim"].files[0]
    root = ET.fromstring(bz2.decompress(path.read_bytes()))
    ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
    articles = []
    for page in root.iter(f"{ns}page"):
        if page.find(f"{ns}redirect") is not None or page.findtext(f"{ns}ns") != "0":
            continue
        title = page.findtext(f"{ns}title") or ""
        if "(disambiguation)" in title or title.startswith("List of"):
            continue
        paragraphs = clean_wikitext(page.findtext(f"{ns}revision/{ns}text") or "")
        if paragraphs:
            articles.append(Article(title, paragraphs))
    return articles


_ABBREV = re.compile(
    r"(\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Gen|Col|Lt|Capt|Gov|Sen|Rev|Prof|Inc|Ltd|Co|No|vs|etc|ca|c|e\.g|i\.e|approx|Mt|Ft)"
    r"|\b[A-Z]|(?:[A-Z]\.){1,}[A-Z])\.$"
)
_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(]?[A-Z0-9])")


def split_sentences(paragraph: str) -> list[str]:
    """A simple splitter: at . ! ? followed by a capital or digit, not after common abbreviations or initials."""
    pieces, start = [], 0
    for m in _SPLIT.finditer(paragraph):
        candidate = paragraph[start : m.end()].rstrip()
        if _ABBREV.search(candidate):
            continue
        pieces.append(candidate)
        start = m.end()
    tail = paragraph[start:].strip()
    if tail:
        pieces.append(tail)
    return pieces


def _passages(paragraph: str, max_words: int = 110) -> list[list[str]]:
    """A paragraph as passages: consecutive sentences packed up to ``max_words`` words."""
    sentences = split_sentences(paragraph)
    if _words(paragraph) <= max_words * 5 // 4:
        return [sentences]
    out: list[list[str]] = [[]]
    for sentence in sentences:
        if out[-1] and _words(" ".join(out[-1] + [sentence])) > max_words:
            out.append([])
        out[-1].append(sentence)
    return out


# ============================================================================ task: qa
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
    if GAP in sentence or not 10 <= _words(sentence) <= 45 or not sentence.endswith("."):
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
            passages += [(a, sentences) for sentences in _passages(paragraph)]
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
            if cloze and _norm(cloze.query) not in seen:
                seen.add(_norm(cloze.query))
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


# ============================================================================ task: lrlm
def chunk_text(text: str, target: int = 500) -> list[str]:
    """Consecutive chunks of about ``target`` characters, cut after a space; they concatenate back to ``text``."""
    chunks, start = [], 0
    while start < len(text):
        end = min(len(text), start + target)
        if end < len(text):
            space = text.rfind(" ", start + target * 4 // 5, end)
            if space > start:
                end = space + 1
        chunks.append(text[start:end])
        start = end
    return chunks


def _article_text(article: Article, max_chars: int) -> str:
    """The article's paragraphs (one per line), whole paragraphs up to ``max_chars``."""
    out, used = [], 0
    for paragraph in article.paragraphs:
        paragraph = re.sub(r"\s{2,}", " ", paragraph.replace(GAP, "")).strip()
        if used + len(paragraph) + 1 > max_chars and out:
            break
        out.append(paragraph)
        used += len(paragraph) + 1
    return "\n".join(out)


def build_lrlm(articles: list[Article], size: DemoSize, rng: np.random.Generator) -> TaskData:
    """Long-range language modelling on whole Wikipedia articles.

    Articles with at least 15,000 characters of prose (paragraphs, one per line) are cut to at most
    30,000 at a paragraph end.  Test: held-out articles (3; quick: 1) as ``{"title", "text"}``; the
    evaluator chunks them into LM tokens.  Train, from the other articles: the text is cut into
    ~500-character chunks at spaces; a record takes chunk ``i`` as ``query``, chunk ``i+1`` as its
    answer, and 8 of the chunks before ``i-1`` (seeded sample, in document order) as ``neg``;
    ``pos`` is empty (the teacher picks the positive) and ``context`` is empty.  A few records per
    article.
    """
    long_ones = [a for a in articles if len(a.text) >= 15_000]
    order = _shuffled(long_ones, rng)
    if len(order) < size.lrlm_test_docs + 5:
        raise RuntimeError(f"lrlm: only {len(order)} long articles")
    test_docs, train_docs = order[: size.lrlm_test_docs], order[size.lrlm_test_docs :]
    test = [{"title": a.title, "text": _article_text(a, 30_000), "query_id": i} for i, a in enumerate(test_docs)]
    per_doc = math.ceil(size.train / len(train_docs)) + 1
    train: list[dict[str, Any]] = []
    seen: set[str] = set()
    k = size.candidates
    for article in train_docs:
        chunks = chunk_text(_article_text(article, 30_000))
        positions = list(range(k + 1, len(chunks) - 2))  # the answer chunk i+1 is not the short tail
        for i in sorted(rng.permutation(positions)[:per_doc].tolist()):
            if len(train) >= size.train or _norm(chunks[i]) in seen:
                continue
            seen.add(_norm(chunks[i]))
            earlier = sorted(rng.choice(i - 1, k, replace=False).tolist())
            train.append(
                {
                    "query": chunks[i],
                    "answers": [chunks[i + 1]],
                    "pos": [],
                    "neg": [chunks[j] for j in earlier],
                    "context": "",
                    "task": "lrlm",
                    "query_id": len(train),
                    "title": article.title,
                }
            )
    return TaskData(
        train,
        {"lrlm/wikipedia/test.json": test},
        notes={"train_documents": len({r["title"] for r in train}), "test_documents": len(test)},
    )


# ============================================================================ task: icl
def read_polarity(gensim_dir: Path) -> list[tuple[str, str]]:
    """``(label, sentence)`` of the Pang & Lee polarity sample (``negative``/``positive``); the file is
    Windows-1252 text (lower-cased and tokenised, as released)."""
    out = []
    for line in (gensim_dir / SOURCES["gensim"].files[2]).read_bytes().decode("cp1252").splitlines():
        label, _, text = line.strip().partition(" ")
        if label in ("__label__neg", "__label__pos") and text.strip():
            out.append(("positive" if label.endswith("pos") else "negative", text.strip()))
    return out


def read_analogies(gensim_dir: Path) -> list[tuple[str, list[str]]]:
    """``(section, [a, b, c, d])`` of the word2vec analogy questions."""
    out, section = [], ""
    for line in (gensim_dir / SOURCES["gensim"].files[1]).read_text(encoding="utf-8").splitlines():
        if line.startswith(":"):
            section = line[1:].strip()
        elif len(line.split()) == 4:
            out.append((section, line.split()))
    return out


def read_chatterbot(chatterbot_dir: Path, name: str) -> list[list[str]]:
    """The conversations (lists of strings) of one English chatterbot-corpus file."""
    import yaml

    data = yaml.safe_load((chatterbot_dir / "data" / "english" / f"{name}.yml").read_text(encoding="utf-8"))
    return [[str(x).strip() for x in conv] for conv in data.get("conversations", []) if isinstance(conv, list)]


TOPICS = ("coding", "money", "movies", "science", "sports", "tech_support")


@dataclass(frozen=True)
class Demo:
    input: str
    output: str
    group: str
    """Demonstrations of the same group are the labelled positives (same class / same relation)."""


def icl_tasks(
    gensim_dir: Path, chatterbot_dir: Path, rng: np.random.Generator
) -> dict[str, tuple[list[Demo], list[str] | None]]:
    """The ICL task names, each with its examples (shuffled, unique inputs) and options (classification) or None."""
    tasks: dict[str, tuple[list[Demo], list[str] | None]] = {}

    sentiment = [
        Demo(f"Review: {text}\nIs this movie review positive or negative?", label, label)
        for label, text in read_polarity(gensim_dir)
    ]
    tasks["sentiment"] = (sentiment, ["negative", "positive"])

    topic_names = [t.replace("_", " ") for t in TOPICS]
    question = "Which topic is this message about: " + ", ".join(topic_names[:-1]) + f" or {topic_names[-1]}?"
    by_topic = []
    for topic, name in zip(TOPICS, topic_names, strict=True):
        firsts = [conv[0] for conv in read_chatterbot(chatterbot_dir, topic) if conv and _words(conv[0]) >= 2]
        by_topic.append(_shuffled([Demo(f"Message: {m}\n{question}", name, name) for m in firsts], rng))
    # round-robin over topics so that every split sees every topic (tech support is 1,000+ long)
    topic_demos = [d for group in zip_longest(*by_topic) for d in group if d is not None]
    tasks["topic"] = (topic_demos, topic_names)

    analogies = [
        Demo(f"Complete the analogy: {a} is to {b} as {c} is to", d, section)
        for section, (a, b, c, d) in read_analogies(gensim_dir)
    ]
    tasks["analogy"] = (analogies, None)

    trivia = [
        Demo(f"Question: {conv[0]}", conv[1].rstrip(". "), "trivia")
        for conv in read_chatterbot(chatterbot_dir, "trivia")
        if len(conv) >= 2 and conv[1].rstrip(". ")
    ]
    tasks["trivia"] = (trivia, None)

    out = {}
    for name, (demos, options) in tasks.items():
        demos = demos if name == "topic" else _shuffled(demos, rng)
        unique, seen = [], set()
        for d in demos:
            if _norm(d.input) not in seen:
                seen.add(_norm(d.input))
                unique.append(d)
        out[name] = (unique, options)
    return out


def _split_counts(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


def build_icl(gensim_dir: Path, chatterbot_dir: Path, size: DemoSize, rng: np.random.Generator) -> TaskData:
    """In-context learning over four real task names.

    - ``sentiment`` (classification): a Pang & Lee movie-review sentence -> positive / negative;
    - ``topic`` (classification): the first message of a chatterbot-corpus conversation -> the topic
      file it comes from (coding, money, movies, science, sports, tech support);
    - ``analogy`` (generation): a word2vec analogy question "a is to b as c is to" -> d;
    - ``trivia`` (generation): a chatterbot trivia question -> its answer.

    Each task's unique examples are shuffled and split into test queries, training queries and the
    demonstration pool (the corpus, ``contents`` = "input\\noutput"); the three are disjoint.  A
    training record's ``pos`` are 3 pool demonstrations of the same group (class, analogy relation,
    or any trivia) drawn at random; the LLM teacher re-ranks them later; negatives are mined.
    """
    tasks = icl_tasks(gensim_dir, chatterbot_dir, rng)
    names = list(tasks)
    test_n = _split_counts(size.test, len(names))
    train_n = _split_counts(size.train, len(names))
    corpus: list[dict[str, Any]] = []
    train, test = [], []
    for t, name in enumerate(names):
        demos, options = tasks[name]
        a, b = test_n[t], test_n[t] + train_n[t]
        if len(demos) < b + 10:
            raise RuntimeError(f"icl/{name}: {len(demos)} examples, {b + 10} needed")
        pool = demos[b : b + size.icl_pool_per_task]
        start = len(corpus)
        corpus += [{"contents": f"{d.input}\n{d.output}", "task_name": name} for d in pool]
        by_group: dict[str, list[int]] = {}
        for j, d in enumerate(pool):
            by_group.setdefault(d.group, []).append(start + j)
        for d in demos[:a]:
            record = {"query": d.input, "answers": [d.output], "task_name": name}
            if options:
                record["options"] = options
            test.append(record)
        for d in demos[a:b]:
            same = by_group.get(d.group) or list(range(start, len(corpus)))
            pos = sorted(rng.choice(same, min(3, len(same)), replace=False).tolist())
            train.append(
                {
                    "query": d.input,
                    "answers": [d.output],
                    "pos": [corpus[i]["contents"] for i in pos],
                    "pos_index": pos,
                    "task": "icl",
                    "task_name": name,
                }
            )
    for i, r in enumerate(train):
        r["query_id"] = i
    for i, r in enumerate(test):
        r["query_id"] = i
    return TaskData(
        train,
        {"icl/icl/test.json": test, "icl/icl/corpus.json": corpus},
        corpus_file="icl/icl/corpus.json",
        notes={"task_names": names},
    )


# ============================================================================ chitchat: chat and convsearch
def read_chitchat(chitchat_dir: Path) -> list[list[str]]:
    """Conversations (sorted by id) as turns: consecutive messages of one sender joined by spaces.
    Only conversations whose turns alternate between two senders are kept."""
    data = json.loads((chitchat_dir / "dataset.json").read_text(encoding="utf-8"))
    out = []
    for key in sorted(data):
        groups = data[key].get("messages", [])
        turns, senders = [], []
        for group in groups:
            text = " ".join(" ".join(str(m.get("text", "")).split()) for m in group).strip()
            sender = group[0].get("sender") if group else None
            if not text or sender is None:
                turns = []
                break
            if senders and sender == senders[-1]:
                turns[-1] += " " + text
                continue
            turns.append(text)
            senders.append(sender)
        if len(turns) >= 6 and len(set(senders)) == 2:
            out.append([_cut_words(t, 400) for t in turns])
    return out


def build_chat(conversations: list[list[str]], size: DemoSize, rng: np.random.Generator) -> TaskData:
    """MSC-style memory: the conversation's earlier exchanges are the candidates.

    For each conversation (one record each, train and test from different conversations) an even
    turn ``q`` (12-16, so 6-8 earlier exchanges) is the ``query``, the next turn the answer; the
    ``history`` is the earlier turns in pairs ``"Speaker 1: ...\\nSpeaker 2: ..."`` where Speaker 1
    is the query's speaker.  Query and answer need 4+ words.
    """
    k = size.candidates
    records, seen = [], set()
    for turns in conversations:
        options = [
            q
            for q in range(12, 2 * k + 1, 2)
            if q + 1 < len(turns) and _words(turns[q]) >= 4 and _words(turns[q + 1]) >= 4
        ]
        if not options or len(records) >= size.train + size.test:
            continue
        q = options[int(rng.integers(len(options)))]
        if _norm(turns[q]) in seen:
            continue
        seen.add(_norm(turns[q]))
        history = [f"Speaker 1: {turns[j]}\nSpeaker 2: {turns[j + 1]}" for j in range(0, q, 2)]
        records.append({"query": turns[q], "answers": [turns[q + 1]], "history": history})
    if len(records) < size.train + size.test:
        raise RuntimeError(f"chat: only {len(records)} conversations usable")
    test = [{**r, "query_id": i} for i, r in enumerate(records[: size.test])]
    train = [{**r, "task": "chat", "query_id": i} for i, r in enumerate(records[size.test :])]
    return TaskData(train, {"chat/msc/test.json": test})


def build_convsearch(conversations: list[list[str]], size: DemoSize, rng: np.random.Generator) -> TaskData:
    """Conversational search as next-response retrieval (a stand-in for QReCC).

    Per conversation one turn ``r`` (3rd or later, 8+ words) is the passage to find: the query is
    the turn before it followed by up to three earlier turns, most recent first (QReCC's "concat"
    form: question, then context); ``pos`` is turn ``r``; ``answers`` the turn after it.  The
    corpus is all these target turns plus turns of 8+ words from other conversations.
    """
    need = size.train + size.test
    picked, seen, distractors = [], set(), []
    for turns in conversations:
        if len(picked) < need:
            options = [
                r
                for r in range(3, len(turns) - 1)
                if _words(turns[r]) >= 8 and _words(turns[r - 1]) >= 4 and _words(turns[r + 1]) >= 3
            ]
            if options:
                r = options[int(rng.integers(len(options)))]
                query = " ".join([turns[r - 1], *reversed(turns[max(0, r - 4) : r - 1])])
                if _norm(query) not in seen and _norm(turns[r]) not in seen:
                    seen |= {_norm(query), _norm(turns[r])}
                    picked.append((query, turns[r], turns[r + 1]))
                    continue
        distractors += [t for t in turns if _words(t) >= 8]
        if len(picked) >= need and len(distractors) >= 3 * size.convsearch_corpus:
            break
    if len(picked) < need:
        raise RuntimeError(f"convsearch: only {len(picked)} conversations usable")
    targets = [p[1] for p in picked]
    target_keys = {_norm(t) for t in targets}
    extra, taken = [], set()
    for t in _shuffled(distractors, rng):
        if len(targets) + len(extra) >= size.convsearch_corpus:
            break
        if _norm(t) not in target_keys and _norm(t) not in taken:
            taken.add(_norm(t))
            extra.append(t)
    texts = _shuffled(targets + extra, rng)
    row_of = {t: i for i, t in enumerate(texts)}
    corpus = [{"text": t} for t in texts]
    test = [
        {"query": q, "answers": [a], "pos_index": [row_of[p]], "query_id": i}
        for i, (q, p, a) in enumerate(picked[: size.test])
    ]
    train = [
        {"query": q, "answers": [a], "pos": [p], "pos_index": [row_of[p]], "task": "convsearch", "query_id": i}
        for i, (q, p, a) in enumerate(picked[size.test :])
    ]
    return TaskData(
        train,
        {"convsearch/qrecc/test.concat.json": test, "convsearch/qrecc/corpus.json": corpus},
        corpus_file="convsearch/qrecc/corpus.json",
    )


# ============================================================================ task: tool
_LABELLED_BFCL = ("simple_python", "simple_java", "simple_javascript", "live_simple", "multiple", "live_multiple")


def render_function(fn: dict[str, Any]) -> str:
    """A function document as one key, in the shape of the ToolBench keys of the released data:
    ``name, description, required_params: [...], optional_params: [...]``."""
    params = fn.get("parameters") or {}
    props = params.get("properties") or {}
    required = [n for n in params.get("required") or [] if n in props]

    def describe(name: str) -> dict[str, str]:
        spec = props.get(name) or {}
        return {"name": name, "type": str(spec.get("type", "")), "description": str(spec.get("description", ""))}

    req = [describe(n) for n in required]
    opt = [describe(n) for n in props if n not in required]
    description = " ".join(str(fn.get("description", "")).split())
    return (
        f"{fn.get('name', '')}, {description}, required_params: {json.dumps(req, ensure_ascii=False)}, "
        f"optional_params: {json.dumps(opt, ensure_ascii=False)}"
    )


def _read_jsonl_file(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_bfcl(bfcl_dir: Path) -> tuple[list[tuple[str, str, list[str]]], list[str]]:
    """Labelled requests ``(query, gold document, the row's other documents)`` and every function
    document of the single-turn BFCL files (sorted, unique)."""
    data = bfcl_dir / "data"
    labelled = []
    for name in _LABELLED_BFCL:
        rows = _read_jsonl_file(data / f"BFCL_v4_{name}.json")
        answers_file = data / "possible_answer" / f"BFCL_v4_{name}.json"
        gold = {}
        if answers_file.is_file():
            for a in _read_jsonl_file(answers_file):
                if len(a.get("ground_truth", [])) == 1 and isinstance(a["ground_truth"][0], dict):
                    gold[a["id"]] = next(iter(a["ground_truth"][0]))
        for row in rows:
            functions = row.get("function") or []
            if name.startswith(("simple", "live_simple")):
                target = functions[0].get("name") if len(functions) == 1 else None
            else:
                target = gold.get(row["id"])
            docs = [f for f in functions if f.get("name") == target]
            turn = row.get("question", [[]])[0]
            query = " ".join(" ".join(str(m.get("content", "")).split()) for m in turn if m.get("role") == "user")
            ascii_share = sum(c.isascii() for c in query) / max(1, len(query))
            if len(docs) == 1 and 3 <= _words(query) <= 150 and ascii_share >= 0.95:
                others = [render_function(f) for f in functions if f is not docs[0]]
                labelled.append((query, render_function(docs[0]), others))
    every = set()
    for path in sorted(data.glob("BFCL_v4_*.json")):
        if "multi_turn" in path.name or "format_sensitivity" in path.name:
            continue
        for row in _read_jsonl_file(path):
            every |= {render_function(f) for f in row.get("function") or [] if isinstance(f, dict)}
    return labelled, sorted(every)


def build_tool(bfcl_dir: Path, size: DemoSize, rng: np.random.Generator) -> TaskData:
    """Tool retrieval: a BFCL user request -> its gold function document.

    Requests with exactly one gold function (simple_python/java/javascript, live_simple, and the
    single-call rows of multiple and live_multiple; English; 3-150 words; unique) are shuffled into
    test and train.  The corpus is every document offered with a chosen request (its gold and the
    row's other functions) plus a seeded sample of the other BFCL function documents.  Negatives
    are mined.
    """
    labelled, every = read_bfcl(bfcl_dir)
    picked, seen = [], set()
    for query, gold, others in _shuffled(labelled, rng):
        if _norm(query) not in seen:
            seen.add(_norm(query))
            picked.append((query, gold, others))
        if len(picked) >= size.train + size.test:
            break
    if len(picked) < size.train + size.test:
        raise RuntimeError(f"tool: only {len(picked)} labelled requests")
    docs = sorted({d for _, gold, others in picked for d in [gold, *others]})
    offered = set(docs)
    rest = [d for d in every if d not in offered]
    docs += [rest[i] for i in rng.permutation(len(rest))[: max(0, size.tool_corpus - len(docs))].tolist()]
    docs = _shuffled(docs, rng)
    row_of = {d: i for i, d in enumerate(docs)}
    corpus = [{"text": d, "name": d.split(",", 1)[0]} for d in docs]
    test = [{"query": q, "pos_index": [row_of[g]], "query_id": i} for i, (q, g, _) in enumerate(picked[: size.test])]
    train = [
        {"query": q, "pos": [g], "pos_index": [row_of[g]], "task": "tool", "query_id": i}
        for i, (q, g, _) in enumerate(picked[size.test :])
    ]
    return TaskData(
        train,
        {"tool/toolbench/test.json": test, "tool/toolbench/corpus.json": corpus},
        corpus_file="tool/toolbench/corpus.json",
        notes={"labelled_requests_available": len(labelled), "function_documents_available": len(every)},
    )


# ============================================================================ writing
def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


def _link_or_copy(src: Path, dst: Path) -> str:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
        return "hard link"
    except OSError:
        shutil.copyfile(src, dst)
        return "copy"


def _sources_md(versions: dict[str, str], counts: dict[str, dict[str, int]], seed: int, size_name: str) -> str:
    lines = [
        "# Sources of this demo dataset",
        "",
        f"Built by `llm-embedder data build-demo --seed {seed} --size {size_name}`. Every text is real public "
        "text from a pip package; nothing is generated by a model. Where a query or a label had to be "
        "derived, the rule is stated below and is mechanical. Same seed + same package versions = same bytes.",
        "",
        "## Packages",
        "",
        "| package | version | licence | what is read |",
        "|---|---|---|---|",
    ]
    for source in SOURCES.values():
        files = ", ".join(f"`{f}`" for f in source.files)
        version = versions.get(source.dist, "?")
        lines.append(f"| `{source.dist}` | {version} | {source.licence} | {source.content} ({files}) |")
    lines += [
        "",
        "Install: `pip install --no-deps -r requirements-demo.txt` (pinned versions; only the packages' data "
        "files are read, so their own dependencies are not needed). They are located with "
        "`importlib.util.find_spec`, never imported.",
        "",
        "Licence notes: the Wikipedia text (articles, passages, questions made from them) is CC BY-SA 3.0 "
        "and any redistribution of this folder must keep that licence and attribute Wikipedia; the Pang & "
        "Lee polarity sentences (Rotten Tomatoes snippets, Pang & Lee 2005) carry no explicit licence.",
        "",
        "## How each task was made",
        "",
    ]
    for task in TASK_ORDER:
        c = counts[task]
        stats = ", ".join(f"{k} {v}" for k, v in c.items())
        doc = {
            "qa": build_qa,
            "icl": build_icl,
            "chat": build_chat,
            "lrlm": build_lrlm,
            "tool": build_tool,
            "convsearch": build_convsearch,
        }[task].__doc__
        lines += [f"### {task} ({stats})", "", _doc_markdown(doc or ""), ""]
    lines += [
        "## Files",
        "",
        "- `train/<task>.json`: released training format (JSON lines; `query`, `task`, `query_id`; "
        "`pos`/`pos_index` where a positive is labelled; `answers` for the LLM reward of qa, icl, chat, "
        "lrlm and convsearch; chat has `history`; lrlm has `neg`, empty `pos` and `context`). "
        "**No `neg` in qa, icl, tool and convsearch**: mine them from `corpus/<task>.jsonl` "
        "(`llm-embedder mine`; key template `{title} {text}` for qa, `{contents}` for icl, `{text}` otherwise). "
        "No `teacher_scores`: `llm-embedder score` adds them (chat and lrlm need them to train, as their "
        "positive is the teacher's pick).",
        "- `eval/`: the layout `llm-embedder eval --data DIR/eval` reads.",
        "- `corpus/<task>.jsonl`: the same file as the task's eval corpus (hard link, or a copy where links "
        "fail); `eval/qa/msmarco/corpus.json` is the same file as `eval/qa/nq/corpus.json`.",
        "",
        "Row number = document id in every corpus. Train and test never share a query (compared case- and "
        "whitespace-insensitively); lrlm train and test use different articles; chat and convsearch use "
        "different conversations from each other and per split.",
        "",
    ]
    return "\n".join(lines)


def _doc_markdown(doc: str) -> str:
    """A builder's docstring as Markdown: paragraphs joined into lines, bullets kept, ``x`` -> `x`."""
    out = []
    for block in inspect.cleandoc(doc).split("\n\n"):
        items: list[str] = []
        for line in block.splitlines():
            if line.startswith("- ") or not items:
                items.append(line.strip())
            else:
                items[-1] += " " + line.strip()
        out.append("\n".join(items))
    return "\n\n".join(out).replace("``", "`")


def _say(progress: bool, message: str) -> None:
    if progress:
        print(f"build-demo: {message}", file=sys.stderr, flush=True)


def build_demo(out: str | Path, seed: int = 0, size: str = "small", progress: bool = True) -> dict[str, Any]:
    """Build the demo dataset into ``out`` (replaced atomically) and return the manifest.

    ``out`` may not be an existing non-empty folder unless it is an earlier demo build.
    """
    if size not in SIZES:
        raise ValueError(f"size {size!r}; expected one of {', '.join(SIZES)}")
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"{out} exists and is not a folder")
        manifest_file = out / "manifest.json"
        previous = None
        if manifest_file.is_file():
            previous = json.loads(manifest_file.read_text(encoding="utf-8")).get("kind")
        if any(out.iterdir()) and previous != MANIFEST_KIND:
            raise FileExistsError(f"{out} is a non-empty folder that is not a demo build; choose another --out")
    spec = SIZES[size]
    started = time.perf_counter()
    folders = locate_sources()
    versions = source_versions()
    _say(progress, f"sources: {', '.join(f'{k} {v}' for k, v in versions.items())}")

    _say(progress, "reading the Wikipedia sample ...")
    articles = read_wikipedia(folders["gensim"])
    _say(progress, f"  {len(articles)} articles")
    _say(progress, "reading chitchat conversations ...")
    conversations = read_chitchat(folders["chitchat"])
    order = np.random.default_rng([seed, 100]).permutation(len(conversations)).tolist()
    half = len(order) // 2  # chat and convsearch draw from different conversations
    chat_convs = [conversations[i] for i in order[:half]]
    conv_convs = [conversations[i] for i in order[half:]]

    builders: dict[str, Callable[[], TaskData]] = {
        "qa": lambda: build_qa(articles, spec, _rng(seed, "qa")),
        "icl": lambda: build_icl(folders["gensim"], folders["chatterbot"], spec, _rng(seed, "icl")),
        "chat": lambda: build_chat(chat_convs, spec, _rng(seed, "chat")),
        "lrlm": lambda: build_lrlm(articles, spec, _rng(seed, "lrlm")),
        "tool": lambda: build_tool(folders["bfcl"], spec, _rng(seed, "tool")),
        "convsearch": lambda: build_convsearch(conv_convs, spec, _rng(seed, "convsearch")),
    }
    manifest: dict[str, Any] = {
        "kind": MANIFEST_KIND,
        "seed": seed,
        "size": size,
        "sources": versions,
        "tasks": {},
        "files": {},
        "same_file": {},
    }
    counts: dict[str, dict[str, int]] = {}
    with atomic_path(out, is_dir=True) as tmp:
        for task in TASK_ORDER:
            data = builders[task]()
            _write_jsonl(tmp / "train" / f"{task}.json", data.train)
            manifest["files"][f"train/{task}.json"] = len(data.train)
            for rel, records in data.eval_files.items():
                if records:
                    _write_jsonl(tmp / "eval" / rel, records)
                    manifest["files"][f"eval/{rel}"] = len(records)
            for rel, target in data.linked.items():
                if (tmp / "eval" / target).is_file():
                    how = _link_or_copy(tmp / "eval" / target, tmp / "eval" / rel)
                    manifest["same_file"][f"eval/{rel}"] = {"as": f"eval/{target}", "how": how}
            corpus_rows = 0
            if data.corpus_file:
                how = _link_or_copy(tmp / "eval" / data.corpus_file, tmp / "corpus" / f"{task}.jsonl")
                manifest["same_file"][f"corpus/{task}.jsonl"] = {"as": f"eval/{data.corpus_file}", "how": how}
                corpus_rows = len(data.eval_files[data.corpus_file])
            test_rel = next(r for r in data.eval_files if r.endswith(("test.json", "test.concat.json")))
            counts[task] = {"train": len(data.train), "test": len(data.eval_files[test_rel])}
            if corpus_rows:
                counts[task]["corpus"] = corpus_rows
            candidates = [len(r.get("history", r.get("neg", []))) + len(r.get("pos", [])) for r in data.train]
            manifest["tasks"][task] = {
                **counts[task],
                "candidates_per_train_query": round(sum(candidates) / len(candidates), 2),
                "negatives": "given" if task in ("chat", "lrlm") else "to mine from corpus/" + f"{task}.jsonl",
                **data.notes,
            }
            if task == "qa":
                counts[task]["mmlu test"] = len(data.eval_files["qa/mmlu/test.json"])
            _say(progress, f"{task}: " + ", ".join(f"{k} {v}" for k, v in counts[task].items()))
        (tmp / "SOURCES.md").write_text(_sources_md(versions, counts, seed, size), encoding="utf-8")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    _say(progress, f"wrote {out} in {time.perf_counter() - started:.1f} s")
    return manifest
