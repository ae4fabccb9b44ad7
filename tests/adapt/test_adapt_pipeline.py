"""`llm-embedder adapt` end to end on the shipped example, with tiny random models so it runs in CI.

The tiny LM cannot write questions, so its greedy generation is scripted (questions made from the
passage, requests from the tool's description); everything else (readers, consistency filter, dev
split, mining, LLM scoring, training, selection, the output folder) runs for real.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_embedder.adapt import pick, risk
from llm_embedder.cli import main
from llm_embedder.fingerprint import file_digest

EXAMPLE = Path(__file__).parents[2] / "data" / "adapt-example"


def scripted_generate(self, prompts, max_new_tokens=32, stop="\n", batch_size=8):
    out = []
    for prompt in prompts:
        last = prompt.rsplit("\n\n", 1)[-1]
        key = last.split("\n")[0].split(": ", 1)[-1]
        words = [w.strip(",.;:()") for w in key.split() if len(w) > 3][:6]
        if prompt.endswith("Question:"):
            out.append(f" What about {' '.join(words)}?\nPassage:")
        elif prompt.endswith("Answer:"):
            out.append(" " + " ".join(words[:2]))
        else:
            out.append(f" Please help me {' '.join(words[1:6])} now")
    return out


def _check_folder(root: Path) -> Path:
    """A small evaluation folder of text the adaptation never sees."""
    passages = [
        {"title": "Moon", "text": "The Moon orbits the Earth every 27 days."},
        {"title": "Tea", "text": "Green tea is made from unoxidized leaves."},
        {"title": "Rivers", "text": "The Nile flows north into the Mediterranean Sea."},
        {"title": "Bikes", "text": "A bicycle chain transfers power from the pedals to the wheel."},
    ]
    queries = [
        ("How long does the Moon take to orbit the Earth?", 0),
        ("Where does the Nile flow?", 2),
        ("What moves power to a bicycle wheel?", 3),
    ]
    qa = root / "qa" / "retrieval"
    qa.mkdir(parents=True)
    (qa / "corpus.json").write_text("\n".join(json.dumps(p) for p in passages) + "\n")
    (qa / "test.json").write_text("\n".join(json.dumps({"query": q, "pos_index": [i]}) for q, i in queries) + "\n")
    return root


def _inputs() -> list[str]:
    return [
        "--corpus", str(EXAMPLE / "corpus"),
        "--tools", str(EXAMPLE / "tools.json"),
        "--conversations", str(EXAMPLE / "chats.jsonl"),
        "--documents", str(EXAMPLE / "books"),
        "--examples", str(EXAMPLE / "examples.jsonl"),
    ]  # fmt: skip


def _digests() -> dict[str, str]:
    return {str(p): file_digest(p) for p in sorted(EXAMPLE.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def adapted(tmp_path_factory, tiny_encoder_dir, tiny_lm_dir):
    from llm_embedder.models.lm import CausalLM

    root = tmp_path_factory.mktemp("adapt")
    before = _digests()
    args = [
        "-q", "adapt", *_inputs(), "--lm", str(tiny_lm_dir), "--base", str(tiny_encoder_dir),
        "--out", str(root / "adapted"), "--check", str(_check_folder(root / "check")), "--quick",
        "--set", "train.max_steps=2", "--set", "train.batch_size=2", "--set", "train.save_steps=1",
        "--set", "score.max_candidates=2", "--set", "generation.per_key=1",
    ]  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CausalLM, "generate", scripted_generate)
        assert main(args) == 0
    return root, args, before


def test_the_output_is_an_embedder_with_a_report_and_a_model_card(adapted):
    from llm_embedder.models.embedder import Embedder

    root, _, _ = adapted
    out = root / "adapted"
    for name in ("report.md", "report.json", "README.md", "GENERATED.md", "llm_embedder.json"):
        assert (out / name).is_file(), name
    vectors = Embedder.from_pretrained(out).encode_queries(["hello world"], task="qa")
    assert vectors.shape[0] == 1
    report = json.loads((out / "report.json").read_text())
    assert set(report["generated"]) == {"qa", "tool", "chat", "lrlm", "icl"}
    assert set(report["seconds"]) == {"data", "mine", "score", "train and select"}
    assert report["chosen"] in {None, *report["selection"]["candidates"]}
    qa = report["generated"]["qa"]["counts"]
    assert qa["kept"] == qa["train"] + qa["dev"] > 0
    assert "Generality check" in (out / "report.md").read_text()
    # the model records how it was chosen, and the card says whether instructions are on
    selection = json.loads((out / "llm_embedder.json").read_text())["selection"]
    assert selection["variant"] == (report["chosen"] or "base")
    assert selection["relative_to_base"].keys() == report["selection"]["candidates"].keys()
    for name, scores in report["selection"]["candidates"].items():
        assert selection["relative_to_base"][name] == {"dev": scores["dev"], "check": scores["ood"]}
    expected = {None: "as the base encoder's own settings", True: "on", False: "off"}[selection["instructions"]]
    assert f"Task instructions: {expected}." in (out / "README.md").read_text()


def test_user_files_are_never_modified(adapted):
    _, _, before = adapted
    assert _digests() == before


def test_no_dev_key_reaches_training_mining_or_scoring(adapted):
    root, _, _ = adapted
    data = root / "adapted.work" / "data"
    dev = [json.loads(x) for x in (data / "dev" / "qa" / "retrieval" / "test.json").read_text().splitlines()]
    corpus = [json.loads(x) for x in (data / "dev" / "qa" / "retrieval" / "corpus.json").read_text().splitlines()]
    dev_keys = {f"{corpus[i]['title']} {corpus[i]['text']}".strip() for r in dev for i in r["pos_index"]}
    assert dev and dev_keys
    texts = [(data / "corpus-train" / "qa.jsonl").read_text()]
    for folder in ("train", "mined", "capped", "scored"):
        base = data if folder == "train" else root / "adapted.work"
        texts += [p.read_text() for p in (base / folder).glob("*.json")]
    training_text = "\n".join(texts)
    for key in dev_keys:
        assert json.dumps(key)[1:-1] not in training_text


def test_a_rerun_reuses_every_stage_and_ends_with_the_same_choice(adapted, capsys):
    from llm_embedder.models.lm import CausalLM

    root, args, _ = adapted
    first = json.loads((root / "adapted" / "report.json").read_text())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CausalLM, "generate", lambda *a, **k: pytest.fail("generated again"))
        assert main(args) == 0
    out = capsys.readouterr().out
    assert "is made from these inputs" in out and "teacher scores are in place" in out
    second = json.loads((root / "adapted" / "report.json").read_text())
    assert second["chosen"] == first["chosen"] and second["selection"] == first["selection"]


def test_bad_inputs_exit_with_one_line_naming_the_file(tmp_path, capsys):
    bad = tmp_path / "tools.jsonl"
    bad.write_text('{"type": "function", "function": {"name": "a"}}\n{"type": "function", "function": {}}\n')
    assert main(["adapt", "--tools", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "tools.jsonl:2: field 'function.name'" in err
    assert main(["adapt", "--out", str(tmp_path / "o")]) == 2
    assert "at least one of --corpus" in capsys.readouterr().err
    assert main(["adapt", "--corpus", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "missing: --corpus: no such file or folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_an_existing_folder_is_never_the_output_or_the_work_folder(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["adapt", "--examples", str(EXAMPLE / "examples.jsonl"), "--out", str(mine)]) == 2
    assert "did not write" in capsys.readouterr().err
    args = ["adapt", "--examples", str(EXAMPLE / "examples.jsonl"), "--out", str(tmp_path / "o"), "--work-dir"]
    assert main([*args, str(mine)]) == 2
    assert "did not write" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep me" and sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_pick_prefers_the_safer_variant_unless_dev_gains_beyond_the_margin():
    variants = {"plain": {"techniques": {"instructions": False}}, "instr": {"techniques": {"instructions": True}}}

    def key(name):
        return risk(name, variants, True)

    assert sorted(["instr", "plain", "plain+base@0.5", "instr+base@0.5"], key=key) == [
        "plain+base@0.5", "plain", "instr+base@0.5", "instr",
    ]  # fmt: skip
    scores = {
        "plain": {"dev": 1.10, "ood": 1.00},
        "plain+base@0.5": {"dev": 1.095, "ood": 1.02},
        "instr": {"dev": 1.12, "ood": 1.01},
    }
    # by hand: start at plain+base (safest eligible); plain is not 0.01 better (1.10 vs 1.095); instr is (1.12)
    assert pick(scores, 1.0, 0.01, key)["chosen"] == "instr"
    assert pick(scores, 1.0, 0.03, key)["chosen"] == "plain+base@0.5"
    # instr below the floor on the check: never chosen, whatever its dev score
    scores["instr"]["ood"] = 0.99
    assert pick(scores, 1.0, 0.01, key)["chosen"] == "plain+base@0.5"
    assert pick({"plain": {"dev": 2.0, "ood": 0.9}}, 1.0, 0.01, key)["chosen"] is None


def test_the_writer_writes_the_queries_and_changes_the_data_identity(tmp_path, monkeypatch):
    """``--writer`` loads another LLM for the data stage only; rewards stay ``lm``'s."""
    from llm_embedder.adapt import DEFAULT_RECIPE, AdaptConfig, AdaptPipeline
    from llm_embedder.models.lm import CausalLM
    from llm_embedder.userdata.build import UserInputs

    loaded = []

    class Loaded(Exception):
        pass

    def record(name, **kwargs):
        loaded.append(name)
        raise Loaded

    monkeypatch.setattr(CausalLM, "from_pretrained", staticmethod(record))
    inputs = UserInputs(tools=str(EXAMPLE / "tools.json"))
    identities = []
    for writer in (None, "big-writer"):
        overrides = [f"work_dir={tmp_path / str(writer)}"] + ([f"writer={writer}"] if writer else [])
        config = AdaptConfig.from_yaml(DEFAULT_RECIPE, quick=True, overrides=overrides)
        pipeline = AdaptPipeline(config, inputs, show_progress=False)
        identities.append(pipeline.data_identity())
        with pytest.raises(Loaded):
            pipeline.build_data()
    assert loaded == ["smollm2-135m", "big-writer"]
    assert "writer" not in identities[0] and identities[1]["writer"] == "big-writer"
