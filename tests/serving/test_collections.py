"""Collections on every store: brute-force rankings, read-your-writes, sessions, tools, chunks, binding, validation."""

from __future__ import annotations

import numpy as np
import pytest
from serving_helpers import open_test_store

from llm_embedder.serving.augment import Need, augment
from llm_embedder.serving.collections import CHUNK_WORDS, CollectionError, Collections, Conflict, NotFound, tool_id

TURNS = ["hello how are you", "i like music and songs", "the cat sat on the mat", "paris is the capital of france"]


def brute_force(engine, query, texts, task, query_task=None):
    """Ids (row numbers) and scores by inner product, computed without the store."""
    q = engine.embed([query], query_task or task, "query")[0]
    scores = engine.embed(texts, task, "key") @ q
    order = np.argsort(-scores, kind="stable")
    return order, scores[order]


def test_memory_read_your_writes_and_ranking(collections, engine):
    collections.create("mem", "memory")
    for n, turn in enumerate(TURNS):
        collections.add("mem", [{"id": f"t{n}", "text": turn}], session="s1")
        hits = collections.search("mem", "what about music", k=10, session="s1")
        assert {h.id for h in hits} == {f"t{i}" for i in range(n + 1)}  # the turn just added is there
    order, scores = brute_force(engine, "what about music", TURNS, "chat")
    hits = collections.search("mem", "what about music", k=3, session="s1")
    assert [h.id for h in hits] == [f"t{i}" for i in order[:3]]
    np.testing.assert_allclose([h.score for h in hits], scores[:3], atol=1e-5)


def test_sessions_are_isolated(collections):
    collections.create("mem", "memory")
    collections.add("mem", TURNS[:2], session="alice")
    collections.add("mem", TURNS[2:], session="bob")
    alice = collections.search("mem", "cat", k=10, session="alice")
    bob = collections.search("mem", "cat", k=10, session="bob")
    assert sorted(h.text for h in alice) == sorted(TURNS[:2]) and sorted(h.text for h in bob) == sorted(TURNS[2:])
    assert collections.search("mem", "cat", k=10, session="carol") == []
    with pytest.raises(CollectionError, match="needs a session"):
        collections.add("mem", ["no session"])


def test_tools_are_keyed_by_content_and_not_re_embedded(collections, engine, monkeypatch):
    collections.create("tools", "tools")
    embedded = []
    embed = engine.embed
    monkeypatch.setattr(engine, "embed", lambda texts, *a, **k: embedded.extend(texts) or embed(texts, *a, **k))
    tools = ["get_weather: the weather of a city", "search_web: search the web for a query"]
    assert collections.add("tools", tools) == [tool_id(t) for t in tools]
    assert collections.add("tools", tools) == [tool_id(t) for t in tools]
    assert embedded == tools  # the second registration ran no forward pass
    collections.add("tools", [*tools, "send_mail: send an email"])
    assert embedded == [*tools, "send_mail: send an email"]
    assert len(collections.records("tools")) == 3


def test_knowledge_chunks_and_convsearch(collections, engine):
    collections.create("kb", "knowledge")
    words = [f"w{i}" for i in range(2 * CHUNK_WORDS + 44)]
    ids = collections.add("kb", [{"id": "doc", "text": " ".join(words), "metadata": {"title": "t"}}, *TURNS])
    assert ids[:3] == ["doc#0", "doc#1", "doc#2"] and len(ids) == 3 + len(TURNS)
    records = {r.id: r for r in collections.records("kb")}
    assert records["doc#2"].text.split() == words[2 * CHUNK_WORDS :]
    assert records["doc#1"].metadata == {"title": "t", "source": "doc", "chunk": 1}
    texts = [records[i].text for i in ids]
    conversation = "user: tell me about france\nassistant: what about it\nuser: its capital"
    order, _ = brute_force(engine, conversation, texts, "qa", query_task="convsearch")
    hits = collections.search("kb", conversation, k=4, task="convsearch")
    assert [h.id for h in hits] == [ids[i] for i in order[:4]]
    with pytest.raises(CollectionError, match="searched with task qa"):
        collections.search("kb", "x", task="chat")


def test_augment_embeds_all_queries_in_one_job(collections, engine, monkeypatch):
    collections.create("kb", "knowledge")
    collections.create("mem", "memory")
    collections.create("tools", "tools")
    collections.add("kb", TURNS)
    collections.add("mem", ["we talked about cats"], session="s")
    collections.add("tools", ["get_weather: the weather of a city"])
    jobs = []
    submit = engine.submit
    monkeypatch.setattr(engine, "submit", lambda items: jobs.append(len(items)) or submit(items))
    messages = [{"role": "user", "content": "hi"}, {"role": "user", "content": "what is the capital of france"}]
    needs = [
        Need("knowledge", "kb", 2),
        Need("memory", "mem", 1),
        Need("tools", "tools", 1),
        Need("convsearch", "kb", 1),
    ]
    out = augment(collections, messages, needs, session="s", assemble=True)
    assert jobs == [4]
    assert [len(r["hits"]) for r in out["results"]] == [2, 1, 1, 1]
    assert out["results"][1]["hits"][0]["text"] == "we talked about cats"
    kb = " ".join(h["text"] for h in out["results"][0]["hits"])
    frame = engine.tasks["qa"].lm_template.format(
        key="\n".join(h["text"] for h in out["results"][0]["hits"]), query="what is the capital of france", answer=""
    )
    assert out["prompt"].endswith(frame) and "we talked about cats" in out["prompt"] and kb
    with pytest.raises(CollectionError, match="wants a memory collection"):
        augment(collections, messages, [Need("memory", "kb")])


def test_validation(collections):
    for bad in ("../x", "a/b", "", ".hidden", "x" * 65, "a b"):
        with pytest.raises(CollectionError):
            collections.create(bad, "knowledge")
    with pytest.raises(CollectionError, match="unknown kind"):
        collections.create("ok", "novels")
    collections.create("ok", "examples")
    with pytest.raises(CollectionError, match="bad id"):
        collections.add("ok", [{"id": "a\nb", "text": "x"}])
    with pytest.raises(CollectionError, match="bad session"):
        collections.search("ok", "x", session="../../etc")
    with pytest.raises(NotFound):
        collections.search("missing", "x")
    with pytest.raises(Conflict):
        collections.create("ok", "knowledge")
    assert collections.records("ok") == []  # the refused writes left nothing


def test_persistence_and_fingerprint_binding(engine, store_kind, tmp_path, tiny_embedder):
    from llm_embedder import Embedder
    from llm_embedder.serving.engine import Engine

    first = Collections(open_test_store(store_kind, tmp_path / "data"), engine)
    first.create("ex", "examples")
    first.add("ex", TURNS)
    before = first.search("ex", "music", k=4)
    first.close()
    again = Collections(open_test_store(store_kind, tmp_path / "data"), engine)
    after = again.search("ex", "music", k=4)
    assert [h.id for h in after] == [h.id for h in before]
    np.testing.assert_allclose([h.score for h in after], [h.score for h in before], atol=1e-5)
    again.close()
    # the same weights pooled another way: another fingerprint, vectors not comparable
    mean_pooled = Embedder(tiny_embedder.model, tiny_embedder.tokenizer, pooling="mean", tasks=tiny_embedder.tasks)
    with Engine(mean_pooled) as other_engine:
        other = Collections(open_test_store(store_kind, tmp_path / "data"), other_engine)
        with pytest.raises(Conflict, match="was filled by model"):
            other.add("ex", ["x"])
        with pytest.raises(Conflict, match="was filled by model"):
            other.search("ex", "x")
        other.close()
