"""``CausalLM.generate_and_score``: one prefill per prompt serves both the greedy generation and the
answer's log-likelihood; both must equal the two-pass path (``generate``, then ``span_log_probs``)."""

from __future__ import annotations

import json

import pytest
import torch

from llm_embedder.evaluation.qa import OpenQA
from llm_embedder.evaluation.retrievers import NoRetriever
from llm_embedder.models.lm import CausalLM

# Prompts of very different lengths (batches pad them on the left), one of a single token, and
# answers of one to several tokens (the scoring block pads them on the right).
PROMPTS = [
    "Knowledge: Paris is the capital of France. The river Seine flows through the city.\n\n"
    "Q: What is the capital of Italy? A: Rome\n\nQ: What is the capital of France? A:",
    "Q: Who wrote the song? A:",
    "Hello",
    "Q: Which band played the music at the water festival last summer in the capital city? A:",
    "Q: Where is the river? A: ",  # ends in a space: " Paris" merges it, so the span cannot use the cache
]
ANSWERS = [" Paris", " The Quick Brown Fox Band", " world", " The Fox", "Paris"]


class TwoPassLM:
    """The reference: delegates to a CausalLM but generates and scores in two separate passes."""

    def __init__(self, lm: CausalLM):
        self.lm = lm

    def __getattr__(self, name):
        return getattr(self.lm, name)

    def generate_and_score(self, prompts, spans, **kwargs):
        return self.lm.generate(prompts, **kwargs), self.lm.span_log_probs(spans)


@torch.inference_mode()
def plain_sum(lm: CausalLM, span) -> float:
    """Sum of log p of the span's scored tokens from one unpadded forward with full logits."""
    log_probs = torch.log_softmax(lm.model(input_ids=torch.tensor([list(span.ids)])).logits[0].double(), -1)
    return sum(float(log_probs[p - 1, span.ids[p]]) for p in range(span.start, span.end))


def _both_paths(lm: CausalLM, batch_size: int, max_new_tokens: int = 6):
    spans = [lm.make_span(p, a) for p, a in zip(PROMPTS, ANSWERS, strict=True)]
    texts, scores = lm.generate_and_score(PROMPTS, spans, max_new_tokens=max_new_tokens, stop="", batch_size=batch_size)
    ref_texts = lm.generate(PROMPTS, max_new_tokens=max_new_tokens, stop="", batch_size=batch_size)
    return spans, texts, scores, ref_texts, lm.span_log_probs(spans)


@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_one_prefill_matches_the_two_passes(tiny_lm, batch_size):
    spans, texts, scores, ref_texts, ref_scores = _both_paths(tiny_lm, batch_size)
    assert texts == ref_texts
    assert [c for _, c in scores] == [c for _, c in ref_scores] == [s.end - s.start for s in spans]
    assert max(c for _, c in scores) > 1  # some answer spans several tokens
    for span, (total, _), (ref, _) in zip(spans, scores, ref_scores, strict=True):
        assert total == pytest.approx(ref, abs=1e-4)
        assert total == pytest.approx(plain_sum(tiny_lm, span), abs=1e-4)
    # The prompt ending in a space really is the case the cache cannot serve.
    last = spans[-1]
    assert list(last.ids[: last.start]) != tiny_lm.tokenizer(PROMPTS[-1])["input_ids"]


def test_each_prompt_is_prefilled_once(tiny_lm):
    """Per batch: one pass over the prompts but their last token, one over the scoring block, then
    generation feeds only the last prompt token (the two-pass path feeds every prompt twice)."""
    lm, batch_size, max_new = tiny_lm, 2, 3
    spans = [lm.make_span(p, a) for p, a in zip(PROMPTS, ANSWERS, strict=True)]
    shapes = []
    handle = lm.model.get_input_embeddings().register_forward_hook(lambda m, args, out: shapes.append(out.shape[:2]))
    try:
        lm.generate_and_score(PROMPTS, spans, max_new_tokens=max_new, stop="", batch_size=batch_size)
    finally:
        handle.remove()
    order = sorted(range(len(PROMPTS)), key=lambda i: -len(PROMPTS[i]))
    expected = []
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = max(len(lm.tokenizer(PROMPTS[i])["input_ids"]) for i in rows)
        continues = [list(spans[i].ids[: spans[i].start]) == lm.tokenizer(PROMPTS[i])["input_ids"] for i in rows]
        block = max(spans[i].end - spans[i].start if ok else 1 for i, ok in zip(rows, continues, strict=True))
        prefill = [(len(rows), width - 1)] if width > 1 else []  # a one-token prompt has nothing to prefill
        expected += prefill + [(len(rows), block)] + [(len(rows), 1)] * max_new
    expected.append((1, spans[-1].end - 1))  # the span that does not continue its prompt, scored alone
    assert [tuple(s) for s in shapes] == expected


def test_single_token_prompts(tiny_lm):
    """A batch whose prompts are one token long has nothing to prefill."""
    prompts, answers = ["Hello", "Paris"], [" world", " is the capital"]
    spans = [tiny_lm.make_span(p, a) for p, a in zip(prompts, answers, strict=True)]
    assert all(s.start == 1 for s in spans)
    texts, scores = tiny_lm.generate_and_score(prompts, spans, max_new_tokens=4, stop="")
    assert texts == tiny_lm.generate(prompts, max_new_tokens=4, stop="")
    for span, (total, count) in zip(spans, scores, strict=True):
        assert count == span.end - 1 and total == pytest.approx(plain_sum(tiny_lm, span), abs=1e-4)


def test_spans_must_pair_with_prompts(tiny_lm):
    with pytest.raises(ValueError, match="2 prompts but 1 spans"):
        tiny_lm.generate_and_score(["a", "b"], [tiny_lm.make_span("a", " b")])


def test_sliding_window_models_take_the_two_passes(tmp_path, lm_tokenizer, monkeypatch):
    """A cache with sliding-window layers is not cut back: the two calls answer instead."""
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(
        vocab_size=len(lm_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        sliding_window=16,
        initializer_range=0.3,
        pad_token_id=lm_tokenizer.pad_token_id,
        eos_token_id=lm_tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    MistralForCausalLM(config).save_pretrained(tmp_path)
    lm_tokenizer.save_pretrained(tmp_path)
    lm = CausalLM.from_pretrained(tmp_path, device="cpu")
    monkeypatch.setattr(CausalLM, "_prefill_and_score", lambda *a, **k: pytest.fail("the cache path ran"))
    spans, texts, scores, ref_texts, ref_scores = _both_paths(lm, batch_size=2)
    assert texts == ref_texts and scores == ref_scores


def test_open_qa_metrics_unchanged(eval_lm, tmp_path):
    """OpenQA with one prefill per prompt: the same generations, accuracies and answer
    log-likelihoods (first gold answer) as generating and scoring separately."""
    records = [
        {"query": f"Which {w} is in the capital city of the country?", "possible_answers": json.dumps(a)}
        for w, a in [
            ("river", ["Paris", "the Seine"]),
            ("band", ["The Quick Brown Fox"]),
            ("song", ["water", "fire"]),
            ("star", ["sun"]),
            ("model", ["data model language"]),
        ]
    ]
    test = tmp_path / "test.json"
    test.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    qa = OpenQA(test, tmp_path / "unused.json", few_shot=2, max_new_tokens=8)
    new, old = qa.run(eval_lm, NoRetriever()), qa.run(TwoPassLM(eval_lm), NoRetriever())
    assert [d["generation"] for d in new.details] == [d["generation"] for d in old.details]
    assert new.metrics["accuracy"] == old.metrics["accuracy"]
    assert new.metrics["accuracy_normalized"] == old.metrics["accuracy_normalized"]
    assert new.metrics["answer_loglik"] == pytest.approx(old.metrics["answer_loglik"], abs=1e-4)
    for a, b in zip(new.details, old.details, strict=True):
        assert a["answer_loglik"] == pytest.approx(b["answer_loglik"], abs=1e-4)


def _check_bfloat16(name) -> None:
    """In bf16 the cached and uncached passes round differently (so do differently padded batches of the
    two-pass path itself): the generations are the same, the scores agree to bf16 rounding, and the
    cached path is no farther from float32 than the two-pass path is.  bf16 keeps 8 significant bits: a
    logit near 20 moves in steps of 0.125, so one token's log-probability can land about 0.125 from
    float32 in each pass (SmolLM2 showed 0.15) and 0.25 apart between two passes; a mean over more
    tokens lies closer."""
    exact = _both_paths(CausalLM.from_pretrained(name, device="cpu", dtype="float32"), batch_size=2)[4]
    lm = CausalLM.from_pretrained(name, device="cpu", dtype="bfloat16")
    spans, texts, scores, ref_texts, ref_scores = _both_paths(lm, batch_size=2)
    assert texts == ref_texts
    for (total, count), (ref, ref_count) in zip(scores, ref_scores, strict=True):
        assert count == ref_count and abs(total - ref) / count < 0.25
    cached_error = max(abs(a - b) / c for (a, c), (b, _) in zip(scores, exact, strict=True))
    two_pass_error = max(abs(a - b) / c for (a, c), (b, _) in zip(ref_scores, exact, strict=True))
    assert cached_error <= 2 * two_pass_error + 1e-3


def test_bfloat16_stays_close(tiny_lm_dir):
    _check_bfloat16(tiny_lm_dir)


@pytest.mark.integration
def test_real_lm_one_prefill_matches_the_two_passes(smollm2):
    """SmolLM2 in float32: identical greedy answers, scores to 1e-4."""
    spans, texts, scores, ref_texts, ref_scores = _both_paths(smollm2, batch_size=2, max_new_tokens=8)
    assert texts == ref_texts
    for (total, count), (ref, ref_count) in zip(scores, ref_scores, strict=True):
        assert count == ref_count and abs(total - ref) < 1e-4


@pytest.mark.integration
def test_real_lm_bfloat16_stays_close():
    _check_bfloat16("smollm2-135m")
