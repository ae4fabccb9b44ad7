"""The one place causal LMs are loaded: a small wrapper that the reward scorer and evaluators share."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llm_embedder.models import zoo
from llm_embedder.models.loading import quiet_hf_loading, resolve_device, resolve_dtype


@dataclass(frozen=True)
class Span:
    """Token ids with a scored span: the log-probabilities of ``ids[start:end]`` given what precedes them."""

    ids: Sequence[int]
    start: int
    end: int | None = None

    def __post_init__(self) -> None:
        end = len(self.ids) if self.end is None else self.end
        if not 1 <= self.start < end <= len(self.ids):
            raise ValueError(f"scored span [{self.start}, {end}) must lie in [1, {len(self.ids)}] and be non-empty")


@dataclass
class CausalLM:
    """A causal LM with its tokenizer, ready for inference (eval mode, no gradients)."""

    model: Any
    tokenizer: Any
    name: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def context_window(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 2048))

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike | None = None,
        device: str = "auto",
        dtype: str | torch.dtype | None = None,
    ) -> CausalLM:
        """Load a zoo name (``smollm2-135m``), a local folder, a hub id, or a ``.gguf`` file."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        name = str(name_or_path or zoo.DEFAULT_LM)
        kwargs: dict[str, Any] = {}
        if name.endswith(".gguf") and Path(name).is_file():
            path, kwargs["gguf_file"] = str(Path(name).parent), Path(name).name
        else:
            path = zoo.locate(name)
        torch_device = resolve_device(device)
        with quiet_hf_loading():
            tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(dtype, torch_device), **kwargs)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.to(torch_device).eval().requires_grad_(False)
        return cls(model=model, tokenizer=tokenizer, name=name)

    def make_span(self, prefix: str, target: str, suffix: str = "", max_length: int | None = None) -> Span:
        """Tokens of ``prefix + target + suffix`` with exactly the tokens covering ``target`` scored.

        Token boundaries come from the tokenizer's character offsets, so a merge across the
        prefix/target boundary (a BPE token " Paris" that starts with the prefix's space) is
        handled.  An EOS the tokenizer appends is dropped.  Beyond ``max_length`` tokens (default:
        the LM's window) the oldest tokens of the prefix are cut; an error if the target itself
        does not fit.
        """
        text = prefix + target + suffix
        enc = self.tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
        ids, offsets = list(enc["input_ids"]), list(enc["offset_mapping"])
        if ids and ids[-1] == self.tokenizer.eos_token_id and tuple(offsets[-1]) == (0, 0):
            ids, offsets = ids[:-1], offsets[:-1]
        a_start, a_end = len(prefix), len(prefix) + len(target)
        scored = [i for i, (s, e) in enumerate(offsets) if e > a_start and s < a_end and e > s]
        if not scored or scored[0] == 0:
            raise ValueError(f"no target tokens to score after a prefix of {len(prefix)} characters: {target!r}")
        start, end = scored[0], scored[-1] + 1
        limit = max_length or self.context_window
        if len(ids) > limit:
            cut = len(ids) - limit
            if cut >= start:
                raise ValueError(f"the target alone needs {len(ids) - start + 1} tokens; the limit is {limit}")
            ids, start, end = ids[cut:], start - cut, end - cut
        return Span(ids, start, end)

    @torch.inference_mode()
    def generate(
        self, prompts: Sequence[str], max_new_tokens: int = 32, stop: str = "\n", batch_size: int = 8
    ) -> list[str]:
        """Greedy continuations of ``prompts`` (left padded in batches), cut at the first ``stop``.

        A batch stops as soon as every row's continuation holds ``stop`` (rows that finish first
        are padded): the text before ``stop`` is what running all ``max_new_tokens`` would give.
        """
        out: list[str] = [""] * len(prompts)
        for rows, enc in self._prompt_batches(prompts, batch_size):
            for i, text in zip(rows, self._greedy(enc, None, max_new_tokens, stop), strict=True):
                out[i] = text
        return out

    @torch.inference_mode()
    def generate_and_score(
        self,
        prompts: Sequence[str],
        spans: Sequence[Span],
        max_new_tokens: int = 32,
        stop: str = "\n",
        batch_size: int = 8,
    ) -> tuple[list[str], list[tuple[float, int]]]:
        """``generate(prompts, ...)`` and ``span_log_probs(spans)``, each prompt run through the LM once.

        ``spans[i]`` continues ``prompts[i]`` (``make_span(prompts[i], target)``).  Per batch of
        left-padded prompts, all but the last prompt token fill a KV cache; one pass on from it
        feeds the last prompt token and each span's scored tokens but the last (scored as
        ``span_log_probs`` does); the cache is then cut back to the prompt and generation continues
        from it.  A span whose tokens before ``start`` are not its prompt's tokens as generation
        feeds them (a BPE merge across the boundary, a prompt cut to the window) is scored by
        ``span_log_probs``; a model whose cache cannot simply be cut back (sliding-window layers)
        gets the two calls.  Results equal the two calls' up to rounding: padding and the shapes
        of the passes differ.
        """
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        if len(spans) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(spans)} spans: one span per prompt")
        layers = DynamicCache(config=self.model.config).layers
        if not layers or any(type(layer) is not DynamicLayer for layer in layers):
            return self.generate(prompts, max_new_tokens, stop, batch_size), self.span_log_probs(spans)
        texts: list[str] = [""] * len(prompts)
        scores: dict[int, tuple[float, int]] = {}
        for rows, enc in self._prompt_batches(prompts, batch_size):
            cache = DynamicCache(config=self.model.config)
            scores.update(self._prefill_and_score(enc, [spans[i] for i in rows], rows, cache))
            for i, text in zip(rows, self._greedy(enc, cache, max_new_tokens, stop), strict=True):
                texts[i] = text
        rest = [i for i in range(len(spans)) if i not in scores]
        scores.update(zip(rest, self.span_log_probs([spans[i] for i in rest]), strict=True))
        return texts, [scores[i] for i in range(len(spans))]

    def _prefill_and_score(
        self, enc: Any, spans: Sequence[Span], keys: Sequence[int], cache: Any
    ) -> dict[int, tuple[float, int]]:
        """Fill ``cache`` with all but the last token of the left-padded prompts ``enc`` and score
        the spans that continue their prompt; returns ``{key: (sum, count)}`` for those."""
        ids, mask = enc["input_ids"], enc["attention_mask"]
        width = ids.shape[1]
        lengths = mask.sum(1).tolist()
        # Each row's block: its last prompt token, then (when its span continues the prompt) the span's
        # scored tokens but the last, as span_log_probs feeds them.
        continues = [
            list(s.ids[: s.start]) == ids[r, width - n :].tolist()
            for r, (s, n) in enumerate(zip(spans, lengths, strict=True))
        ]
        blocks = [
            list(s.ids[s.start - 1 : _end(s) - 1]) if ok else ids[r, -1:].tolist()
            for r, (s, ok) in enumerate(zip(spans, continues, strict=True))
        ]
        longest = max(map(len, blocks))
        block = torch.full((len(blocks), longest), self.tokenizer.pad_token_id or 0, dtype=torch.long)
        block_mask = torch.zeros_like(block)
        for r, tokens in enumerate(blocks):
            block[r, : len(tokens)] = torch.as_tensor(tokens)
            block_mask[r, : len(tokens)] = 1
        block, block_mask = block.to(self.device), block_mask.to(self.device)
        # Positions count real tokens only, as generation numbers left-padded rows.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        model = self.model.base_model
        if width > 1:
            model(
                input_ids=ids[:, :-1],
                attention_mask=mask[:, :-1],
                position_ids=positions[:, :-1],
                use_cache=True,
                **{self._cache_keyword: cache},
            )
        # The block is right padded: causal attention keeps its padding out of the real positions.
        hidden = model(
            input_ids=block,
            attention_mask=torch.cat([mask[:, :-1], block_mask], dim=1),
            position_ids=positions[:, -1:] + torch.arange(longest, device=self.device),
            use_cache=True,
            **{self._cache_keyword: cache},
        ).last_hidden_state
        cache.crop(-longest)  # back to the prompt but its last token, which generation feeds
        scored = [r for r, ok in enumerate(continues) if ok]
        if not scored:
            return {}
        counts = [len(blocks[r]) for r in scored]
        rows = torch.cat([torch.full((n,), r) for r, n in zip(scored, counts, strict=True)]).to(self.device)
        cols = torch.cat([torch.arange(n) for n in counts]).to(self.device)
        log_probs = torch.log_softmax(self.model.get_output_embeddings()(hidden[rows, cols]).float(), dim=-1)
        out, offset = {}, 0
        for r, n in zip(scored, counts, strict=True):
            span = spans[r]
            targets = torch.as_tensor(span.ids[span.start : _end(span)], device=self.device)
            picked = log_probs[offset : offset + n].gather(1, targets[:, None])
            out[keys[r]] = (float(picked.double().sum()), n)
            offset += n
        return out

    @property
    def _cache_keyword(self) -> str:
        """The name a KV cache is passed by: ``cache`` from transformers 5.2x on, ``past_key_values`` before."""
        parameters = inspect.signature(self.model.base_model.forward).parameters
        return "cache" if "cache" in parameters else "past_key_values"

    def _prompt_batches(self, prompts: Sequence[str], batch_size: int) -> Iterator[tuple[list[int], Any]]:
        """Batches of at most ``batch_size`` prompts, longest first: (their indices, left-padded encoding)."""
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            texts = [prompts[i] for i in rows]
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, padding_side="left")
            yield rows, enc.to(self.device)

    def _greedy(self, enc: Any, cache: Any, max_new_tokens: int, stop: str) -> list[str]:
        """Greedy continuations of the left-padded prompts ``enc``, from ``cache`` (None: none yet)."""
        from transformers import StoppingCriteriaList

        tok = self.tokenizer
        width = enc["input_ids"].shape[1]
        criteria = StoppingCriteriaList([_StopAfter(tok, stop, width)] if stop else [])
        new = self.model.generate(
            **enc,
            **({self._cache_keyword: cache} if cache is not None else {}),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            stopping_criteria=criteria,
        )[:, width:]
        texts = tok.batch_decode(new, skip_special_tokens=True)
        return [text.split(stop)[0] if stop else text for text in texts]

    @torch.inference_mode()
    def span_log_probs(
        self,
        spans: Sequence[Span],
        token_budget: int = 16384,
        max_batch_size: int = 64,
        full_logits: bool = False,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[tuple[float, int]]:
        """``(sum of log p(token | prefix), token count)`` of each span's scored tokens, in input order.

        Spans are sorted by length and cut into batches of at most ``max_batch_size`` rows whose
        rows x longest row stays within ``token_budget`` (right padding; causal attention keeps
        padding out of real positions); the cuts minimise the padded tokens plus a fixed cost per
        forward pass (see :func:`_plan_batches`).  Only the hidden states of scored positions go
        through the LM head: with a vocabulary of tens of thousands that head dominates, and most
        positions are context.  ``full_logits`` computes the ordinary logits instead (for models
        that transform logits after the head).  ``on_batch(n)`` is called after each batch of
        ``n`` spans (progress bars).

        Spans that differ only in their last token (the options " A", " B", ... after one
        multiple-choice prompt) share one forward pass: it runs over ``ids[: end - 1]``, which is
        all a span's scores depend on; the tokens after ``end`` are never fed.
        """
        # One forward pass per distinct (fed tokens, first scored position).
        passes: dict[tuple[tuple[int, ...], int], list[int]] = {}
        for i, span in enumerate(spans):
            passes.setdefault((tuple(span.ids[: _end(span) - 1]), span.start), []).append(i)
        fed = list(passes)
        sharing = list(passes.values())
        results: list[tuple[float, int]] = [(0.0, 0)] * len(spans)
        pad = self.tokenizer.pad_token_id or 0
        head = self.model.get_output_embeddings()
        overhead = _BATCH_OVERHEAD_TOKENS.get(self.device.type, _BATCH_OVERHEAD_TOKENS["cuda"])
        order = sorted(range(len(fed)), key=lambda p: -len(fed[p][0]))
        sizes = _plan_batches([len(fed[p][0]) for p in order], token_budget, max_batch_size, overhead)
        position = 0
        for size in sizes:
            batch = order[position : position + size]
            longest = len(fed[batch[0]][0])
            ids = torch.full((len(batch), longest), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), longest), dtype=torch.long)
            for row, p in enumerate(batch):
                ids[row, : len(fed[p][0])] = torch.as_tensor(fed[p][0])
                mask[row, : len(fed[p][0])] = 1
            ids, mask = ids.to(self.device), mask.to(self.device)
            # Position p predicts token p + 1: the scored tokens [start, end) are read at [start - 1, end - 1).
            counts = [len(fed[p][0]) + 1 - fed[p][1] for p in batch]
            rows = torch.cat([torch.full((n,), r) for r, n in enumerate(counts)]).to(self.device)
            cols = torch.cat([torch.arange(fed[p][1] - 1, len(fed[p][0])) for p in batch]).to(self.device)
            # No KV cache: nothing is generated, and filling one copies every layer's keys and values.
            if full_logits:
                logits = self.model(input_ids=ids, attention_mask=mask, use_cache=False).logits[rows, cols]
            else:
                hidden = self.model.base_model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
                logits = head(hidden[rows, cols])
            log_probs = torch.log_softmax(logits.float(), dim=-1)
            offset = 0
            for p, n in zip(batch, counts, strict=True):
                for i in sharing[p]:
                    span = spans[i]
                    targets = torch.as_tensor(span.ids[span.start : _end(span)], device=self.device)
                    picked = log_probs[offset : offset + n].gather(1, targets[:, None])
                    results[i] = (float(picked.double().sum()), n)
                offset += n
            position += size
            if on_batch is not None:
                on_batch(sum(len(sharing[p]) for p in batch))
        return results


class _StopAfter:
    """A ``generate`` stopping criterion: a row is done once its new tokens decode to text holding ``stop``."""

    def __init__(self, tokenizer: Any, stop: str, prompt_length: int):
        self.tokenizer, self.stop, self.prompt_length = tokenizer, stop, prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_length :], skip_special_tokens=True)
        return torch.tensor([self.stop in t for t in texts], device=input_ids.device)


# What one more forward pass costs beyond its padded tokens, in tokens.  On a GPU a pass of a few
# thousand tokens is bound by kernel launches rather than arithmetic.  On a CPU a pass is ~600 small
# ops; each costs little on an idle machine, but on a busy one every multi-threaded op waits for its
# threads to be scheduled, so a pass costs hundreds of tokens' worth (docs: experiments/speed).  512
# keeps most of the padding saving at a few extra passes in both cases.
_BATCH_OVERHEAD_TOKENS = {"cpu": 512, "cuda": 2048}


def _plan_batches(lengths: Sequence[int], token_budget: int, max_batch_size: int, overhead: int) -> list[int]:
    """Cut spans sorted by decreasing length into consecutive batches (returns their sizes).

    A batch of ``n`` spans costs ``overhead + n * longest`` padded tokens and must keep
    ``n <= max_batch_size`` and ``n * longest <= token_budget`` (a span longer than the budget
    goes alone).  Dynamic programming finds the cuts of least total cost: with lengths spread
    out, greedily filling each batch to the budget pads short spans up to long ones.
    """
    n = len(lengths)
    best = [0] + [0] * n  # best[i]: least cost of the first i spans
    cut = [0] * (n + 1)
    for i in range(1, n + 1):
        best[i], cut[i] = best[i - 1] + overhead + lengths[i - 1], i - 1
        for j in range(i - 2, max(-1, i - 1 - max_batch_size), -1):  # the last batch is spans j..i-1
            padded = (i - j) * lengths[j]
            if padded > token_budget:
                break  # earlier j only make it longer
            if best[j] + overhead + padded < best[i]:
                best[i], cut[i] = best[j] + overhead + padded, j
    sizes = []
    while n > 0:
        sizes.append(n - cut[n])
        n = cut[n]
    return sizes[::-1]


def _end(span: Span) -> int:
    return len(span.ids) if span.end is None else span.end
