"""Same seed, same replies; replicates and seeds differ; the call budget holds for every face."""
from __future__ import annotations

import warnings

import pytest

import medcompile as mc
from medcompile.lm.base import LMRequest
from medcompile.lm.registry import make_lm, wrap_lm
from medcompile.sim import SimBudgetExceeded, SimWorld

SIG = "question, options -> answer"


def answers(lm, qs) -> list:  # type: ignore[no-untyped-def]
    prog = mc.Program(mc.Vote(mc.Shuffle(mc.SelfCoT(SIG, tune=False), n=3, tune=False)))
    return [(r.prediction.answer, r.prediction.rationale) for r in prog.run_many(qs, lm)]


def test_same_seed_same_replies_other_replicate_or_seed_differs(registry, medqa) -> None:  # type: ignore[no-untyped-def]
    qs = medqa["test"][:60]
    a = SimWorld(registry, "noisy_sampler", seed=4, use_embeddings=False)
    b = SimWorld(registry, "noisy_sampler", seed=4, use_embeddings=False)
    assert answers(a.lm(), qs) == answers(b.lm(), qs)
    assert answers(a.lm(replicate=1), qs) != answers(a.lm(), qs)
    c = SimWorld(registry, "noisy_sampler", seed=5, use_embeddings=False)
    assert answers(c.lm(), qs) != answers(a.lm(), qs)
    assert len({a.model_id(0), a.model_id(1), c.model_id(0)}) == 3  # caches never mix worlds


def test_budget_is_enforced_and_fatal(world_for, medqa) -> None:  # type: ignore[no-untyped-def]
    w = world_for("strong_chat")
    lm = w.lm(budget=5)
    prog = mc.Program(mc.Predict(SIG, tune=False))
    prog.run_many(medqa["test"][:5], lm)
    assert lm.calls == 5
    with pytest.raises(SimBudgetExceeded) as e:
        lm.complete(LMRequest(model=lm.model, mode="text", prompt="Question: x?\nOptions:\nA. a\nB. b\nAnswer:"))
    assert e.value.fatal and not e.value.retryable
    wrapped = wrap_lm(w.lm(budget=2), cache=False, max_retries=3)
    with pytest.raises(SimBudgetExceeded):
        prog.run_many(medqa["test"][:3], wrapped)  # fatal: the run stops instead of abstaining


def test_dspy_copies_share_the_budget(world_for, medqa) -> None:  # type: ignore[no-untyped-def]
    lm = world_for("strong_chat").dspy_lm(budget=3)
    twin = lm.copy(rollout_id=7, temperature=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lm("Question: a?\nOptions:\nA. x\nB. y")
        twin("Question: a?\nOptions:\nA. x\nB. y")
        twin("Question: b?\nOptions:\nA. x\nB. y")
        with pytest.raises(SimBudgetExceeded):
            lm("Question: c?\nOptions:\nA. x\nB. y")
    assert lm.calls == twin.calls == 3


def test_sim_spec_is_an_offline_backend(medqa, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lm = make_lm("sim:nothing_helps", cache_dir=tmp_path)
    lm2 = make_lm("sim", cache=False, mode="chat")
    assert lm.model.startswith("sim/nothing_helps-") and lm2.model.startswith("sim/strong_chat-")
    prog = mc.Program(mc.Predict(SIG, tune=False))
    first = [r.prediction.answer for r in prog.run_many(medqa["test"][:20], lm)]
    again = [r.prediction.answer for r in prog.run_many(medqa["test"][:20], make_lm("sim:nothing_helps", cache=False))]
    assert first == again and all(a in "ABCD" for a in first)
    assert all(r.prediction.answer for r in prog.run_many(medqa["test"][:5], lm2))
    with pytest.raises(Exception, match="unknown simulator profile"):
        make_lm("sim:not_a_profile")
