"""Write the small adapt example (``make adapt-demo``, the tests) from text that pip packages ship.

Run from the repository root: ``python data/adapt-example/make.py``.  The files it writes are committed;
this script is how they were made.  Sources: gensim's Wikipedia sample (articles of the demo's *train*
partition, so the generality check on the demo's dev split stays unseen), BFCL's simple_python functions,
chitchat-dataset conversations, the Pang & Lee polarity sentences in gensim.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from llm_embedder.data.demo.chitchat import read_chitchat
from llm_embedder.data.demo.icl_sets import read_polarity
from llm_embedder.data.demo.sources import locate_sources
from llm_embedder.data.demo.wikipedia import GAP, partition_articles, read_wikipedia

OUT = Path(__file__).parent


def _prose(paragraphs: list[str], max_words: int) -> list[str]:
    out, used = [], 0
    for p in paragraphs:
        p = re.sub(r"\s{2,}", " ", p.replace(GAP, "")).strip()
        if used + len(p.split()) > max_words and out:
            break
        out.append(p)
        used += len(p.split())
    return out


def main() -> None:
    src = locate_sources()
    rng = np.random.default_rng(7)
    train = partition_articles(read_wikipedia(src["gensim"]), seed=0)["train"]
    by_length = sorted(train, key=lambda a: -len(a.text))
    for folder, picks, words in (("corpus", by_length[4:10], 600), ("books", by_length[:2], 2500)):
        (OUT / folder).mkdir(exist_ok=True)
        for article in picks:
            name = re.sub(r"\W+", "_", article.title).strip("_") + (".md" if folder == "corpus" else ".txt")
            text = "\n\n".join(_prose(article.paragraphs, words))
            (OUT / folder / name).write_text(f"{text}\n", encoding="utf-8")

    rows = [json.loads(x) for x in (src["bfcl"] / "data/BFCL_v4_simple_python.json").read_text().splitlines()]
    functions = {}
    for row in rows:
        for fn in row.get("function") or []:
            functions.setdefault(fn["name"], fn)
    names = sorted(functions)
    chosen = [functions[names[i]] for i in sorted(rng.choice(len(names), 10, replace=False).tolist())]
    tools = [{"type": "function", "function": fn} for fn in chosen]
    (OUT / "tools.json").write_text(json.dumps(tools, indent=1) + "\n", encoding="utf-8")

    conversations = [c for c in read_chitchat(src["chitchat"]) if len(c.turns) >= 8][:12]
    with (OUT / "chats.jsonl").open("w", encoding="utf-8") as f:
        for conv in conversations:
            roles = ("user", "assistant")
            messages = [{"role": roles[i % 2], "content": t} for i, t in enumerate(conv.turns[:14])]
            f.write(json.dumps({"id": conv.key, "messages": messages}, ensure_ascii=False) + "\n")

    polarity = read_polarity(src["gensim"])
    with (OUT / "examples.jsonl").open("w", encoding="utf-8") as f:
        for i in sorted(rng.choice(len(polarity), 40, replace=False).tolist()):
            label, text = polarity[i]
            f.write(json.dumps({"input": f"Review: {text}\nSentiment:", "output": label}) + "\n")


if __name__ == "__main__":
    main()
