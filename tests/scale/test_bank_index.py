"""Banks write what they were made with, not what they were used for; large banks record their index's recall."""
from __future__ import annotations

import json

import numpy as np
import pytest

import medcompile.embed.index as index_mod
from medcompile import Exemplar, Program, Question, Retrieve, SelfCoT
from medcompile.bank import Bank
from medcompile.program.io import loads


def exemplars(n: int) -> list[Exemplar]:
    words = ["fever", "cough", "rash", "pain", "renal", "cardiac", "hepatic", "infant", "elderly", "acute"]
    return [Exemplar(Question(id=f"b{i}", question=f"Case {i}: {words[i % 10]} {words[(i // 10) % 10]} "
                                                   f"{words[(i // 100) % 10]} with findings?",
                              options={"A": "x", "B": "y", "C": "z", "D": "w"}, answer="ABCD"[i % 4]))
            for i in range(n)]


def query(i: int) -> Question:
    return Question(id=f"q{i}", question=f"A patient with fever and rash number {i}?",
                    options={"A": "x", "B": "y"}, answer="A")


@pytest.mark.parametrize("embedder", [None, {"kind": "wordllama"}])
def test_to_config_is_the_same_before_and_after_knn_lookups(embedder) -> None:  # type: ignore[no-untyped-def]
    bank = Bank(exemplars(30), embedder)
    before = json.dumps(bank.to_config(), sort_keys=True)
    assert bank.nearest(query(0), 3)
    bank.nearest_many([query(1), query(2)], 2)
    assert json.dumps(bank.to_config(), sort_keys=True) == before
    assert bank.embedder_settings == (dict(embedder) if embedder else None)  # never rewritten
    assert "embeddings" not in bank.to_config()


def test_explicit_embeddings_are_written_with_resolved_settings_and_round_trip() -> None:
    bank = Bank(exemplars(30))
    emb = bank.embeddings()  # explicit: from now on part of the bank's config
    d = bank.to_config()
    assert d["embedder"]["kind"] == "wordllama" and d["embedder"]["dim"] == emb.shape[1]
    assert d["embeddings"]["shape"] == [30, emb.shape[1]] and "index" not in d  # small: exact search
    again = Bank.from_config(d)
    assert again.to_config() == d
    assert [e.question.id for e in again.nearest(query(0), 4)] == [e.question.id for e in bank.nearest(query(0), 4)]
    # copies made from it keep its embeddings and resolved settings by construction
    sub = bank.subset([0, 2, 4])
    assert sub.to_config()["embedder"] == d["embedder"] and sub.to_config()["embeddings"]["shape"] == [3, emb.shape[1]]


def test_program_hash_does_not_move_when_questions_run() -> None:
    bank = Bank(exemplars(30), {"kind": "wordllama"})
    prog = Program(SelfCoT(demos=Retrieve(k=3, bank=bank, tune=False), tune=False), name="knn")
    h0 = prog.content_hash()
    bank.nearest(query(5), 3)
    assert prog.content_hash() == h0


def test_large_bank_gets_an_approximate_index_with_recorded_recall(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_mod, "AUTO_THRESHOLD", 300)
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((12, 64)).astype(np.float32)
    vecs = centers[rng.integers(0, 12, 600)] + 0.3 * rng.standard_normal((600, 64)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ex = exemplars(600)
    bank = Bank(ex, {"kind": "wordllama", "model": "l2_supercat", "dim": 64, "normalize": True}, vecs, resolved=True)
    d = bank.to_config()
    info = d["index"]
    assert info["kind"] == "ivf" and info["n"] == 600 and info["recall_sample"] == 200 and info["codes"] == "pq4"
    assert info["recall_at_5"] >= 0.99 and info["recall_at_5_midpoints"] >= 0.99 and bank.index_settings() == info
    loaded = Bank.from_config(json.loads(json.dumps(d)))
    assert loaded.to_config() == d  # recorded, not re-measured: byte-stable
    assert loaded._index_params() == {"nlist": info["nlist"], "nprobe": info["nprobe"], "codes": "pq4"}  # noqa: SLF001
    loaded.embeddings()  # builds the index from the record
    assert loaded._index.codes == "pq4" and loaded._index.nprobe == info["nprobe"]  # noqa: SLF001


def test_an_ivf_recorded_before_fp16_lists_is_rebuilt_with_float32_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_mod, "AUTO_THRESHOLD", 300)
    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((400, 64)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    old = {"kind": "ivf", "n": 400, "dim": 64, "nlist": 10, "nprobe": 4, "recall_at_5": 0.9, "recall_sample": 200}
    bank = Bank(exemplars(400), {"kind": "wordllama", "model": "l2_supercat", "dim": 64, "normalize": True}, vecs,
                index=old, resolved=True)
    assert bank._index_params() == {"nlist": 10, "nprobe": 4, "codes": "f32"}  # noqa: SLF001
    bank.embeddings()
    assert bank._index.codes == "f32" and bank._index.nprobe == 4  # noqa: SLF001
    assert bank.to_config()["index"] == old  # the file's record is kept as written


def test_program_file_with_an_index_section_validates_and_refuses_junk() -> None:
    bank = Bank(exemplars(4), {"kind": "wordllama", "dim": 2}, np.eye(4, 2, dtype=np.float32), resolved=True,
                index={"kind": "ivf", "n": 4, "dim": 2, "nlist": 1, "nprobe": 1, "recall_at_5": 1.0,
                       "recall_sample": 4})
    prog = Program(SelfCoT(demos=Retrieve(k=1, bank=bank, tune=False), tune=False), name="p")
    text = prog.to_json()
    assert json.loads(text)["banks"][next(iter(json.loads(text)["banks"]))]["index"]["recall_at_5"] == 1.0
    loads(text)
    bad = json.loads(text)
    name = next(iter(bad["banks"]))
    bad["banks"][name]["index"]["recall_at_5"] = 1.5
    with pytest.raises(Exception, match="recall_at_5"):
        loads(json.dumps(bad))
    bad["banks"][name]["index"] = {"kind": "lsh", "n": 4, "dim": 2}
    with pytest.raises(Exception, match="kind"):
        loads(json.dumps(bad))
