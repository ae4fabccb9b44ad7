"""Model merging (LM-Cocktail): exact reproduction at weights (1, 0) and (0, 1), the average of one
parameter by hand, refusals with one clear error, safe output folders, and weights chosen on a
made-up dev set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from llm_embedder import Embedder
from llm_embedder.cli import main as cli_main
from llm_embedder.evaluation.merge_weights import choose_weights, grid_weights, parse_grid, retrieval_scores
from llm_embedder.evaluation.retrieval_only import RetrievalOnly
from llm_embedder.fingerprint import embedder_fingerprint
from llm_embedder.models.merge import (
    MERGE_FILE,
    MergeError,
    load_models,
    merge_embedders,
    merge_models,
    normalise_weights,
)

TEXTS = ["the cat sat on the mat", "paris is the capital of france", "a dog by the river bank", "music and a song"]
PARAM = "encoder.layer.0.attention.self.query.weight"


def encodings(embedder: Embedder) -> tuple[np.ndarray, np.ndarray]:
    return embedder.encode_queries(TEXTS, task="qa"), embedder.encode_keys(TEXTS, task="tool")


def reseeded(source: str | Path, out: Path, seed: int) -> Path:
    """The tiny BERT at ``source`` with new random matrices (same architecture and tokenizer)."""
    embedder = Embedder.from_pretrained(source, device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in embedder.model.parameters():
            if parameter.ndim == 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    embedder.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def pair(tiny_encoder_dir, tmp_path_factory) -> tuple[str, str]:
    """Two tiny BERTs of one architecture with different weights."""
    return str(tiny_encoder_dir), str(reseeded(tiny_encoder_dir, tmp_path_factory.mktemp("tiny-b"), seed=1))


def test_weights_one_zero_reproduce_each_model_exactly(pair, tmp_path, capsys):
    a, b = load_models(pair)
    assert not np.allclose(encodings(a)[0], encodings(b)[0])
    for weights, source in (("1,0", a), ("0,1", b)):
        out = tmp_path / f"merged-{weights}"
        code = cli_main(["merge", "--model", pair[0], "--model", pair[1], "--weights", weights, "--out", str(out)])
        assert code == 0
        merged = Embedder.from_pretrained(out, device="cpu")
        for got, want in zip(encodings(merged), encodings(source), strict=True):
            assert np.array_equal(got, want)
        for key, tensor in source.model.state_dict().items():
            assert torch.equal(merged.model.state_dict()[key], tensor)
    assert f"into {tmp_path / 'merged-0,1'}" in capsys.readouterr().out


def test_half_half_is_the_average_of_each_parameter(pair, tmp_path):
    a, b = load_models(pair)
    record = merge_models(pair, [1, 1], tmp_path / "half")  # weights are divided by their sum
    merged = Embedder.from_pretrained(tmp_path / "half", device="cpu")
    by_hand = (a.model.state_dict()[PARAM].double() + b.model.state_dict()[PARAM].double()) / 2
    assert torch.equal(merged.model.state_dict()[PARAM], by_hand.float())
    assert not torch.equal(merged.model.state_dict()[PARAM], a.model.state_dict()[PARAM])
    saved = json.loads((tmp_path / "half" / MERGE_FILE).read_text(encoding="utf-8"))
    assert saved == record
    assert saved["weights"] == [0.5, 0.5]
    assert [m["fingerprint"] for m in saved["models"]] == [embedder_fingerprint(a), embedder_fingerprint(b)]
    assert saved["fingerprint"] == embedder_fingerprint(merged)
    # Three models, 0.2/0.3/0.5, against a sum written out.
    c = reseeded(pair[0], tmp_path / "c", seed=2)
    three = merge_embedders(load_models([*pair, str(c)]), [2, 3, 5])
    states = [m.model.state_dict()[PARAM].double() for m in load_models([*pair, str(c)])]
    assert torch.equal(three.model.state_dict()[PARAM], (0.2 * states[0] + 0.3 * states[1] + 0.5 * states[2]).float())


def test_task_table_comes_from_the_first_model_unless_told(pair, tmp_path):
    fine_tuned = tmp_path / "fine-tuned"
    Embedder.from_pretrained(pair[0], instructions=True, device="cpu").save_pretrained(fine_tuned)
    models = [str(fine_tuned), pair[1]]
    first = merge_embedders(load_models(models), [0.5, 0.5])
    assert first.tasks.get_task("qa").query_instruction.startswith("Represent")
    second = merge_embedders(load_models(models), [0.5, 0.5], tasks_from=1)
    assert second.tasks.get_task("qa").query_instruction == ""
    args = ["merge", "--model", models[0], "--model", models[1], "--weights", "1,1", "--out"]
    assert cli_main([*args, str(tmp_path / "first")]) == 0
    assert cli_main([*args, str(tmp_path / "second"), "--tasks-from", "2"]) == 0
    assert Embedder.from_pretrained(tmp_path / "first").tasks.get_task("qa").query_instruction.startswith("Represent")
    assert Embedder.from_pretrained(tmp_path / "second").tasks.get_task("qa").query_instruction == ""


def _save_variant(source: str, out: Path, **config_changes) -> str:
    """A copy of a tiny BERT folder whose config differs (a new random model of that config)."""
    from transformers import BertConfig, BertModel

    config = BertConfig.from_pretrained(source)
    for key, value in config_changes.items():
        setattr(config, key, value)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(out)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (Path(source) / name).exists():
            shutil.copy(Path(source) / name, out / name)
    return str(out)


def _save_roberta(source: str, out: Path) -> str:
    from transformers import RobertaConfig, RobertaModel

    bert = Embedder.from_pretrained(source, device="cpu")
    config = RobertaConfig(
        vocab_size=len(bert.tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=514,
    )
    RobertaModel(config).save_pretrained(out)
    bert.tokenizer.save_pretrained(out)
    return str(out)


@pytest.mark.parametrize(
    "variant,message",
    [
        ("roberta", r"architectures differ \(RobertaModel/roberta vs BertModel/bert\)"),
        ("wider", r"parameter 'embeddings.word_embeddings.weight' has shape \[\d+, 48\] vs \[\d+, 32\]"),
        ("deeper", r"parameter names differ \('encoder.layer.2.attention.self.query.weight' and 15 more only in"),
        ("activation", r"configs differ in 'hidden_act' \('relu' vs 'gelu'\)"),
    ],
)
def test_different_models_are_refused_with_one_clear_error(pair, tmp_path, capsys, variant, message):
    other = {
        "roberta": lambda: _save_roberta(pair[0], tmp_path / "other"),
        "wider": lambda: _save_variant(pair[0], tmp_path / "other", hidden_size=48, intermediate_size=96),
        "deeper": lambda: _save_variant(pair[0], tmp_path / "other", num_hidden_layers=3),
        "activation": lambda: _save_variant(pair[0], tmp_path / "other", hidden_act="relu"),
    }[variant]()
    with pytest.raises(MergeError, match=message):
        merge_embedders(load_models([pair[0], other]), [0.5, 0.5])
    out = tmp_path / "out"
    capsys.readouterr()  # what building the models printed
    code = cli_main(["merge", "--model", pair[0], "--model", other, "--weights", "1,1", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("llm-embedder: error: cannot merge")
    assert not out.exists()


def test_weights_rule():
    assert normalise_weights([1, 3], 2) == [0.25, 0.75]
    assert normalise_weights([0.7, 0.3], 2) == pytest.approx([0.7, 0.3])
    for weights, message in (([1], "1 weights for 2 models"), ([-1, 2], "non-negative"), ([0, 0], "sum to 0")):
        with pytest.raises(MergeError, match=message):
            normalise_weights(weights, 2)
    with pytest.raises(MergeError, match="non-negative"):
        normalise_weights([float("nan"), 1], 2)
    assert grid_weights(0.4, 3) == pytest.approx([0.4, 0.3, 0.3])
    assert parse_grid("1,0,0.5,0.5") == [0.0, 0.5, 1.0]
    with pytest.raises(MergeError, match="in \\[0, 1\\]"):
        parse_grid("0,1.5")


def test_output_folder_is_never_lost(pair, tmp_path, capsys):
    args = ["merge", "--model", pair[0], "--model", pair[1], "--weights", "1,1", "--out"]
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me", encoding="utf-8")
    for extra in ([], ["--overwrite"]):  # issue 24: a folder merge did not write is never replaced
        assert cli_main([*args, str(user), *extra]) == 2
        assert "did not write; its output is written as a whole folder" in capsys.readouterr().err
        assert (user / "notes.txt").read_text(encoding="utf-8") == "keep me"
    for extra in ([], ["--overwrite"]):
        assert cli_main([*args, str(pair[0]), *extra]) == 2  # nor an input
        assert "the output is the model" in capsys.readouterr().err
    out = tmp_path / "merged"
    assert cli_main([*args, str(out)]) == 0 and (out / MERGE_FILE).is_file()
    assert cli_main([*args, str(out)]) == 0  # an earlier merge output is replaced without asking
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged", "mine"]  # no temporary folder left behind
    assert cli_main(["merge", "--model", pair[0], "--weights", "1", "--out", str(tmp_path / "x")]) == 2
    assert "at least two --model" in capsys.readouterr().err


# ---------------------------------------------------------------------------- weights chosen on dev
@pytest.fixture(scope="module")
def blind(pair, tmp_path_factory) -> str:
    """The first tiny BERT with its word embeddings zeroed: every text of one length looks alike to it."""
    out = tmp_path_factory.mktemp("blind")
    model = Embedder.from_pretrained(pair[0], device="cpu")
    with torch.no_grad():
        model.model.embeddings.word_embeddings.weight.zero_()
    model.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def dev_dir(tmp_path_factory) -> Path:
    """Tool retrieval where each query is its document's text: any seeing encoder ranks it first."""
    d = tmp_path_factory.mktemp("dev")
    docs = ["the cat sat on a mat", "paris is a capital city", "a dog by a river", "music and a song", "fire and air"]
    (d / "tool/toolbench").mkdir(parents=True)
    (d / "tool/toolbench/corpus.json").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    rows = [{"query": t, "pos_index": [i]} for i, t in enumerate(docs)]
    (d / "tool/toolbench/test.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def test_auto_weights_pick_the_model_that_sees(pair, blind, dev_dir, tmp_path, capsys):
    seeing, blind_model = load_models([pair[0], blind])
    evaluators = [RetrievalOnly(dev_dir / "tool/toolbench/test.json", dev_dir / "tool/toolbench/corpus.json",
                                "tool", "tool", "ndcg@5")]  # fmt: skip
    good = retrieval_scores(seeing, evaluators, "a")["tool"]
    bad = retrieval_scores(blind_model, evaluators, "b")["tool"]
    assert good == 1.0 and 0 < bad < 1
    # The seeing model first: all its weight wins; the criterion is its score over the reference's.
    choice = choose_weights([seeing, blind_model], [pair[0], blind], dev_dir, [0.0, 1.0])
    assert choice.fine_tuned_weight == 1.0 and choice.weights == [1.0, 0.0]
    assert [r["criterion"] for r in choice.grid] == pytest.approx([1.0, good / bad])
    # The blind model first: weight 0 (all of the seeing reference) wins.
    choice = choose_weights([blind_model, seeing], [blind, pair[0]], dev_dir, [0.0, 1.0])
    assert choice.fine_tuned_weight == 0.0 and [r["criterion"] for r in choice.grid] == pytest.approx([1.0, bad])
    # Ties (any weight > 0 sees as well: LayerNorm undoes the scaled embeddings) go to the smaller weight.
    choice = choose_weights([seeing, blind_model], [pair[0], blind], dev_dir, [0.0, 0.5, 1.0])
    best = max(r["criterion"] for r in choice.grid)
    assert choice.fine_tuned_weight == min(r["fine_tuned_weight"] for r in choice.grid if r["criterion"] == best)
    # The command prints the grid and records the choice.
    out = tmp_path / "auto"
    args = ["merge", "--model", pair[0], "--model", blind, "--auto-weights", str(dev_dir), "--grid", "0,1"]
    assert cli_main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| fine-tuned weight | tool | criterion |" in printed and "| 1 | 1.0000 |" in printed
    record = json.loads((out / MERGE_FILE).read_text(encoding="utf-8"))
    assert record["weights"] == [1.0, 0.0] and record["auto_weights"]["chosen_fine_tuned_weight"] == 1.0
    assert record["auto_weights"]["reference_scores"] == {"tool": pytest.approx(bad)}
    assert np.array_equal(encodings(Embedder.from_pretrained(out, device="cpu"))[1], encodings(seeing)[1])
    assert cli_main([*args[:-4], "--auto-weights", str(tmp_path / "none"), "--out", str(tmp_path / "y")]) == 2
    assert "no such dev data folder" in capsys.readouterr().err
