"""Memory tasks, where each example retrieves from its own past: a long conversation (chat) and a
long text (lrlm).  Both are measured by the perplexity of what comes next.

Perplexity is reported two ways: ``perplexity`` = exp(mean over examples of the per-token NLL),
as the original averaged, and ``perplexity_tokens`` = exp(total NLL / total tokens).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from llm_embedder.evaluation.base import EvalResult, cluster_fields, load_records, require_lm
from llm_embedder.evaluation.retrievers import Retriever
from llm_embedder.models.lm import CausalLM, Span


def perplexities(sums: list[tuple[float, int]]) -> dict[str, float]:
    """From per-example (sum log-prob, tokens): example-averaged and token-weighted perplexity."""
    per_example = [-s / c for s, c in sums]
    total_tokens = sum(c for _, c in sums)
    return {
        "perplexity": math.exp(sum(per_example) / len(per_example)),
        "perplexity_tokens": math.exp(-sum(s for s, _ in sums) / total_tokens),
    }


@dataclass
class Conversation:
    """MSC-style: retrieve ``top_k`` of the conversation's earlier turns (``history``) for the last
    utterance (``query``); perplexity of the reply (``answers[0]``)."""

    eval_file: Path
    top_k: int = 1
    limit: int | None = None
    name: str = "msc"
    task: str = "chat"

    def run(self, lm: CausalLM | None, retriever: Retriever, show_progress: bool = False) -> EvalResult:
        lm = require_lm(lm, self.name)
        rows = load_records(self.eval_file, {"history": list, "query": str, "answers": list}, self.limit)
        pools = [[h for h in r["history"] if isinstance(h, str) and h.strip()] for _, r in rows]
        picks = retriever.rank(self.task, [r["query"].strip() for _, r in rows], pools, self.top_k)
        spans, details = [], []
        for (_, r), pool, chosen in zip(rows, pools, picks, strict=True):
            chosen = sorted(chosen)  # in conversation order
            memory = "".join(pool[j].strip() + "\n" for j in chosen)
            spans.append(lm.make_span(f"{memory}Speaker 1: {r['query'].strip()}\nSpeaker 2: ", r["answers"][0].strip()))
            details.append({"query": r["query"], "retrieved": chosen, **cluster_fields(r)})
        sums = lm.span_log_probs(spans)
        for d, (s, c) in zip(details, sums, strict=True):
            d.update(nll=-s / c, tokens=c)
        return EvalResult(perplexities(sums), "perplexity", lower_is_better=True, details=details)


@dataclass
class LongText:
    """Long-range language modelling on documents (``text``), chunked into LM tokens.

    The last ``window_chunks`` chunks are the local context; the last ``target_chunks`` of them are
    predicted one by one.  For target chunk t, the chunk before it is the query, the chunks older
    than the window are the candidates, and each of the ``top_k`` picks is prepended with its
    continuation (the next chunk), in document order.  Several files are averaged (``perplexity``
    = mean of the files' perplexities, as the original leaderboard).  As the original, a document
    is its first ``max_chars`` characters, tokenised and left-truncated to its last ``max_tokens``
    tokens (so retrieval searches at most that much history).
    """

    eval_files: list[Path]
    chunk_size: int = 128
    target_chunks: int = 8
    window_chunks: int = 16
    top_k: int = 8
    max_chars: int = 160_000
    max_tokens: int = 32_768
    limit: int | None = None
    name: str = "lrlm"
    task: str = "lrlm"

    def _check_window(self, lm: CausalLM) -> None:
        needed = (2 * self.top_k + self.window_chunks) * self.chunk_size
        if needed > lm.context_window:
            raise ValueError(
                f"lrlm needs {needed} tokens ({self.top_k} retrieved chunk pairs + a {self.window_chunks}-chunk window "
                f"of {self.chunk_size} tokens) but the LM's window is {lm.context_window}; lower top_k or window_chunks"
            )
        if not 0 < self.target_chunks < self.window_chunks:  # the first target needs a chunk of context
            raise ValueError(
                f"target_chunks ({self.target_chunks}) must be at least 1 and below "
                f"window_chunks ({self.window_chunks})"
            )

    def _file(self, lm: CausalLM, retriever: Retriever, path: Path) -> tuple[list[tuple[float, int]], list[dict]]:
        rows = load_records(path, {"text": str}, self.limit)
        size, doc_sums, details = self.chunk_size, [], []
        for line, r in rows:
            ids = lm.tokenizer(r["text"][: self.max_chars], add_special_tokens=False)["input_ids"][-self.max_tokens :]
            n = len(ids) // size
            if n < self.window_chunks + 2:  # at least one candidate chunk with its continuation
                continue
            ids = ids[len(ids) - n * size :]
            chunks = [ids[i * size : (i + 1) * size] for i in range(n)]
            window_start = n - self.window_chunks
            candidates = list(range(window_start - 1))  # each needs its continuation before the window
            texts = [lm.tokenizer.decode(c) for c in chunks]
            targets = range(n - self.target_chunks, n)
            picks = retriever.rank(
                self.task, [texts[t - 1] for t in targets], [[texts[c] for c in candidates]] * len(targets), self.top_k
            )
            # Consecutive targets with the same memory share one forward pass: the summed log-probs of
            # their tokens are the same whether scored together or apart (causal attention).
            spans, t = [], targets[0]
            while t < n:
                chosen = sorted(picks[t - targets[0]])
                last = t
                while last + 1 < n and sorted(picks[last + 1 - targets[0]]) == chosen:
                    last += 1
                memory = [tok for j in chosen for tok in chunks[j] + chunks[j + 1]]
                local = [tok for c in chunks[window_start : last + 1] for tok in c]
                start = len(memory) + (t - window_start) * size
                spans.append(Span(memory + local, start, len(memory) + len(local)))
                t = last + 1
            sums = lm.span_log_probs(spans)
            doc_sums.append((sum(s for s, _ in sums), sum(c for _, c in sums)))
            details.append(
                {"file": path.name, "line": line, "retrieved": picks, "nll": -doc_sums[-1][0] / doc_sums[-1][1]}
                | cluster_fields(r)
            )
        return doc_sums, details

    def run(self, lm: CausalLM | None, retriever: Retriever, show_progress: bool = False) -> EvalResult:
        lm = require_lm(lm, self.name)
        self._check_window(lm)
        metrics, details, files = {}, [], []
        for path in self.eval_files:
            sums, file_details = self._file(lm, retriever, Path(path))
            details += file_details
            if sums:
                files.append(perplexities(sums))
                name = Path(path).parent.name
                metrics.update({f"{k}/{name}": v for k, v in files[-1].items()}, **{f"documents/{name}": len(sums)})
        if not files:
            raise ValueError(
                f"no document is long enough for lrlm ({(self.window_chunks + 2) * self.chunk_size} tokens)"
            )
        for key in ("perplexity", "perplexity_tokens"):
            metrics[key] = sum(f[key] for f in files) / len(files)
        return EvalResult(metrics, "perplexity", lower_is_better=True, details=details)
