"""The Wikipedia sample of the gensim wheel: articles as clean prose paragraphs, sentences and passages."""

from __future__ import annotations

import bz2
import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from llm_embedder.data.demo.common import deal_halves, shuffled, word_count
from llm_embedder.data.demo.sources import SOURCES


@dataclass
class Article:
    title: str
    paragraphs: list[str]
    """Prose paragraphs; ``\\x00`` marks where a template (e.g. a unit conversion) was dropped."""
    categories: tuple[str, ...] = ()

    @property
    def is_biography(self) -> bool:
        """About a person: Wikipedia files people under "<year> births" / "<year> deaths" / "Living people"."""
        return any(c.endswith((" births", " deaths")) or c == "Living people" for c in self.categories)

    @property
    def subject(self) -> str:
        """The title without its disambiguation: "Animalia (book)" -> "Animalia"."""
        return re.sub(r"\s*\(.*\)$", "", self.title)

    @cached_property
    def passages(self) -> list[list[str]]:
        """The article's passages (see ``split_passages``) as lists of sentences, in order."""
        return [sentences for paragraph in self.paragraphs for sentences in split_passages(paragraph)]

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
        if word_count(line.replace(GAP, " ")) >= 8:
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
        wikitext = page.findtext(f"{ns}revision/{ns}text") or ""
        paragraphs = clean_wikitext(wikitext)
        categories = tuple(c.strip() for c in re.findall(r"\[\[Category:([^\]|]*)", wikitext))
        if paragraphs:
            articles.append(Article(title, paragraphs, categories))
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


def split_passages(paragraph: str, max_words: int = 110) -> list[list[str]]:
    """A paragraph as passages: consecutive sentences packed up to ``max_words`` words."""
    sentences = split_sentences(paragraph)
    if word_count(paragraph) <= max_words * 5 // 4:
        return [sentences]
    out: list[list[str]] = [[]]
    for sentence in sentences:
        if out[-1] and word_count(" ".join(out[-1] + [sentence])) > max_words:
            out.append([])
        out[-1].append(sentence)
    return out


def passage_text(sentences: list[str]) -> str:
    """A passage's text as written in the corpora: sentences joined, template marks and runs of spaces gone."""
    return re.sub(r"\s{2,}", " ", " ".join(sentences).replace(GAP, "").strip())


LONG_ARTICLE_CHARS = 15_000
"""An article long enough for lrlm."""


def partition_articles(articles: list[Article], seed: int) -> dict[str, list[Article]]:
    """Whole articles per split, shared by every Wikipedia task so that no split's article is seen by another.

    ``ood``: the biographies (a topic absent from the rest: people, though from the same Wikipedia
    sample); the other articles are shuffled (seeded) long ones first, and dealt in turn to ``test``,
    ``dev`` and ``train``, so that each split has its share of the long articles lrlm needs.  The
    biographies are then dealt the same way (seeded, long ones first) to ``ood-dev`` and ``ood-test``
    (about half each): the halves a task's ``ood`` questions are split into by their article.
    """
    rng = np.random.default_rng([seed, 200])
    rest = [a for a in articles if not a.is_biography]
    dealt = _long_first(rest, rng)
    names = ("test", "dev", "train")
    parts = {name: dealt[i :: len(names)] for i, name in enumerate(names)}
    ood = [a for a in articles if a.is_biography]
    side = deal_halves([a.title for a in _long_first(ood, rng)])
    halves = {half: [a for a in ood if side[a.title] == half] for half in ("ood-dev", "ood-test")}
    return {**parts, "ood": ood, **halves}


def _long_first(articles: list[Article], rng: np.random.Generator) -> list[Article]:
    """The long articles (enough for lrlm) shuffled, then the others shuffled."""
    long_ones = [a for a in articles if len(a.text) >= LONG_ARTICLE_CHARS]
    return shuffled(long_ones, rng) + shuffled([a for a in articles if len(a.text) < LONG_ARTICLE_CHARS], rng)


def passage_corpus(
    chosen: list[tuple[Article, int]],
    pool: list[Article],
    total: int,
    rng: np.random.Generator,
    exclude: set[tuple[str, int]] | frozenset = frozenset(),
) -> tuple[list[dict[str, str]], dict[tuple[str, int], int]]:
    """A corpus of ``{"title", "text"}`` passages: every ``chosen`` (article, passage index) plus a
    seeded sample of the other passages of ``pool`` (not in ``exclude``, as (title, passage index))
    up to ``total`` rows, in pool order; and the row of each (title, passage index) in it."""
    keys = {(a.title, p) for a, p in chosen}
    others = [(a.title, p) for a in pool for p in range(len(a.passages)) if (a.title, p) not in keys | exclude]
    keys |= {others[i] for i in rng.permutation(len(others))[: max(0, total - len(keys))].tolist()}
    return passage_rows(keys, pool)


def passage_rows(
    keys: set[tuple[str, int]], pool: list[Article]
) -> tuple[list[dict[str, str]], dict[tuple[str, int], int]]:
    """The ``{"title", "text"}`` rows of the (title, passage index) ``keys`` of ``pool``, in pool
    order; and the row of each key."""
    by_title = {a.title: a for a in pool}
    order = [(a.title, p) for a in pool for p in range(len(a.passages)) if (a.title, p) in keys]
    rows = [{"title": t, "text": passage_text(by_title[t].passages[p])} for t, p in order]
    return rows, {k: r for r, k in enumerate(order)}
