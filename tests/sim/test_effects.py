"""Each way a prompt can move the simulated model, measured through real medcompile programs."""
from __future__ import annotations

from statistics import mean

import pytest

import medcompile as mc
from medcompile.bank import Bank
from medcompile.exemplar import Exemplar
from medcompile.lm.base import LMRequest
from medcompile.sim.phrases import PHRASES
from medcompile.sim.proposals import BASE

from .conftest import accuracy

SIG = "question, options -> answer"


def expected(world, program, questions, replicates=3) -> float:  # type: ignore[no-untyped-def]
    def run(r: int) -> list:
        return [x.prediction.answer for x in program.run_many(questions, world.lm(replicate=r))]

    return world.expected_accuracy(run, questions, replicates)


def test_position_bias_only_shuffling_removes_it(world_for, medqa) -> None:  # type: ignore[no-untyped-def]
    w, test = world_for("base_model"), medqa["test"][:180]
    pref = "ABCD"[w.preferred]
    res = mc.Program(mc.Predict(SIG, tune=False)).run_many(test, w.lm())
    share = mean(r.prediction.answer == pref for r in res)
    assert share > 0.5  # a quarter would be no bias
    at_pref = [r.prediction.answer == q.answer for r, q in zip(res, test) if q.answer == pref]
    elsewhere = [r.prediction.answer == q.answer for r, q in zip(res, test) if q.answer != pref]
    assert mean(at_pref) > mean(elsewhere) + 0.3
    plain = expected(w, mc.Program(mc.Predict(SIG, tune=False)), test)
    shuffled = expected(w, mc.Program(mc.Vote(mc.Shuffle(mc.Predict(SIG, tune=False), n=5, tune=False))), test)
    assert shuffled > plain + 0.02
    # Without bias or per-prompt noise, shuffling changes nothing.
    n = world_for("nothing_helps")
    assert (expected(n, mc.Program(mc.Vote(mc.Shuffle(mc.Predict(SIG, tune=False), n=3, tune=False))), test, 1)
            == expected(n, mc.Program(mc.Predict(SIG, tune=False)), test, 1))


@pytest.mark.parametrize("profile, sign", [("strong_chat", 1), ("base_model", -1), ("knn_sensitive", 0),
                                           ("nothing_helps", -1)])
def test_cot_effect_has_the_profile_sign(world_for, medqa, profile, sign) -> None:  # type: ignore[no-untyped-def]
    w, test = world_for(profile), medqa["test"]
    exact = mean(w.p_correct(q, cot=True) - w.p_correct(q, cot=False) for q in test)
    measured = accuracy(mc.Program(mc.SelfCoT(SIG, tune=False)), test, w.lm()) - \
        accuracy(mc.Program(mc.Predict(SIG, tune=False)), test, w.lm())
    if sign == 0:
        assert exact == pytest.approx(0.0, abs=1e-12)
        assert abs(measured) < 0.08  # only per-prompt noise differs
    else:
        assert sign * exact > 0.03 and sign * measured > 0


def test_knn_exemplars_share_the_topic_and_help(world_for, medqa) -> None:  # type: ignore[no-untyped-def]
    w, dev = world_for("knn_sensitive"), medqa["dev"][:160]
    bank = Bank([Exemplar(q) for q in medqa["bank"]])
    knn = bank.nearest_many(dev, 5)
    knn_share = mean(w.topic(e.question) == w.topic(q) for q, row in zip(dev, knn) for e in row)
    rnd = mc.Retrieve(k=5, strategy="random", bank=bank, tune=False)
    rnd_share = mean(w.topic(e.question) == w.topic(q) for q in dev for e in rnd.static_demos())
    assert knn_share > rnd_share + 0.2, (knn_share, rnd_share)
    prog = lambda strategy: mc.Program(mc.Predict(SIG, demos=mc.Retrieve(k=5, strategy=strategy, bank=bank,  # noqa: E731
                                                                        tune=False), tune=False))
    assert expected(w, prog("knn"), dev, 2) > expected(w, prog("random"), dev, 2) + 0.05


def test_instruction_phrases_have_latent_effects(world_for, medqa) -> None:  # type: ignore[no-untyped-def]
    w, test = world_for("instruction_sensitive"), medqa["test"]
    order = sorted(range(len(PHRASES)), key=lambda i: w.effects[i])
    good, bad = f"{BASE} {PHRASES[order[-1]]}", f"{BASE} {PHRASES[order[0]]}"
    assert w.instruction_effect(good) - w.instruction_effect(bad) == pytest.approx(
        w.effects[order[-1]] - w.effects[order[0]], abs=0.6)
    assert mean(w.p_correct(q, instruction=good) - w.p_correct(q, instruction=bad) for q in test) > 0.05
    prog = lambda text: mc.Program(mc.Predict(mc.Signature.coerce(SIG).with_instruction(text), tune=False))  # noqa: E731
    assert accuracy(prog(good), test, w.lm()) > accuracy(prog(bad), test, w.lm())
    # A world without instruction effects ignores the wording.
    n = world_for("nothing_helps")
    assert n.instruction_effect(good) == n.instruction_effect(bad) == 0.0


def test_sampling_varies_with_the_seed_and_temperature_zero_does_not(world_for, medqa) -> None:  # type: ignore[no-untyped-def]
    w = world_for("noisy_sampler")
    lm = w.lm()
    prompt = mc.Program(mc.Predict(SIG, tune=False)).builder.text_prompt(
        __import__("medcompile.prompts.builder", fromlist=["PromptParts"]).PromptParts("", [], medqa["test"][0], False))
    ask = lambda t, s: lm.complete(LMRequest(model=lm.model, mode="text", prompt=prompt, temperature=t, seed=s)).text  # noqa: E731
    assert len({ask(0.0, s) for s in range(20)}) == 1
    assert len({ask(1.0, s) for s in range(20)}) > 1
    assert ask(1.0, 3) == ask(1.0, 3)


def test_ensembles_help_a_noisy_sampler(world_for, medqa) -> None:  # type: ignore[no-untyped-def]
    w, test = world_for("noisy_sampler"), medqa["test"][:180]
    one = expected(w, mc.Program(mc.Predict(SIG, tune=False)), test)
    five = expected(w, mc.Program(mc.Vote(mc.Shuffle(mc.Predict(SIG, tune=False), n=5, tune=False))), test)
    assert five > one + 0.04
