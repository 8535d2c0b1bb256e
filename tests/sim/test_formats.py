"""Replies come in the format the prompt asks for, and every framework parses them."""
from __future__ import annotations

import math
import re
import warnings

import dspy
import pytest

import medcompile as mc
from medcompile.compile.instructions import propose_instructions
from medcompile.lm.base import LMRequest
from medcompile.prompts.builder import PromptParts
from medcompile.prompts.parse import parse_answer
from medcompile.sim.phrases import phrases_in
from medcompile.sim.text import norm

SIG = "question, options -> answer"


@pytest.mark.parametrize("mode", ["text", "chat"])
@pytest.mark.parametrize("cot", [False, True])
def test_medcompile_replies_parse_and_rationales_agree(world_for, medqa, mode, cot) -> None:  # type: ignore[no-untyped-def]
    w = world_for("strong_chat")
    prog = mc.Program(mc.SelfCoT(SIG, cot=cot, tune=False))
    lm = w.lm(mode=mode)
    for q in medqa["test"][:40]:
        req = prog.builder.request(PromptParts("", [], q, cot), model=lm.model, mode=mode, temperature=0.0,
                                   max_tokens=8, seed=0)
        text = lm.complete(req).text
        parsed = parse_answer(text, dict(q.options), direct=prog.builder.is_direct(PromptParts("", [], q, cot), mode))
        assert parsed.key in q.options, text
        if cot:
            assert f"option {parsed.key} ({norm(q.options[parsed.key])})" in parsed.rationale  # reasoning argues for the answer
        else:
            assert not parsed.rationale


def test_choices_get_normalised_logprobs(world_for, medqa) -> None:  # type: ignore[no-untyped-def]
    w, q = world_for("strong_chat"), medqa["test"][5]
    lm = w.lm()
    prompt = mc.Program(mc.Predict(SIG, tune=False)).builder.text_prompt(PromptParts("", [], q, False))
    r = lm.complete(LMRequest(model=lm.model, mode="text", prompt=prompt, choices=tuple(q.options)))
    assert r.text in q.options and len(r.choice_logprobs) == 4
    assert sum(math.exp(lp) for _, lp in r.choice_logprobs) == pytest.approx(1.0)
    assert max(r.choice_logprobs, key=lambda kv: kv[1])[0] == r.text  # temperature 0 takes the likeliest


class MCQ(dspy.Signature):
    """Answer the multiple-choice medical question."""

    question: str = dspy.InputField()
    options: str = dspy.InputField(desc="one option per line, as 'A. text'")
    answer: str = dspy.OutputField(desc="the letter of the correct option")


@pytest.mark.parametrize("adapter", [dspy.ChatAdapter(), dspy.JSONAdapter()], ids=["chat", "json"])
@pytest.mark.parametrize("module", [dspy.Predict, dspy.ChainOfThought], ids=["predict", "cot"])
def test_dspy_adapters_parse_every_reply(world_for, medqa, adapter, module) -> None:  # type: ignore[no-untyped-def]
    w, test = world_for("strong_chat"), medqa["test"][:30]
    lm = w.dspy_lm()
    prog = module(MCQ)
    with warnings.catch_warnings(), dspy.context(lm=lm, adapter=adapter):
        warnings.simplefilter("ignore")
        preds = [prog(question=q.question, options="\n".join(f"{k}. {v}" for k, v in q.options.items()))
                 for q in test]
    assert lm.calls == len(test)  # no adapter fallback re-asked the model: every reply parsed first time
    assert all(p.answer in q.options for p, q in zip(preds, test))
    if module is dspy.ChainOfThought:
        assert all(f"option {p.answer} " in p.reasoning for p in preds)
    # Same answers as the medcompile face would give for the same features.
    assert sum(p.answer == q.answer for p, q in zip(preds, test)) / len(test) > 0.3


def test_medcompile_instruction_proposals_come_from_the_pool(world_for, medqa) -> None:  # type: ignore[no-untyped-def]
    w = world_for("instruction_sensitive")
    cands, calls = propose_instructions("Answer the question.", medqa["bank"][:3], w.lm(), n=5, seed=1)
    assert calls == 5 and cands[0] == "Answer the question." and len(cands) >= 3
    assert all(phrases_in(norm(c)) for c in cands[1:])


def test_gepa_reflection_and_mipro_proposals(world_for) -> None:  # type: ignore[no-untyped-def]
    from gepa.strategies.instruction_proposal import InstructionProposalSignature

    w = world_for("instruction_sensitive")
    lm = w.dspy_lm(temperature=1.0)
    prompt = InstructionProposalSignature.prompt_renderer({
        "current_instruction_doc": "Answer the question. Be concise.",
        "dataset_with_feedback": [{"Inputs": "q", "Generated Outputs": "A", "Feedback": "wrong, B"}]})
    out = lm(prompt)[0]
    new = InstructionProposalSignature.output_extractor(out)["new_instruction"]
    assert phrases_in(norm(new)) and "```" not in new

    class Propose(dspy.Signature):
        """Propose an instruction for the task."""

        task_demos: str = dspy.InputField()
        proposed_instruction: str = dspy.OutputField()

    with warnings.catch_warnings(), dspy.context(lm=lm):
        warnings.simplefilter("ignore")
        got = dspy.Predict(Propose)(task_demos="...").proposed_instruction
    assert phrases_in(norm(got))
    assert re.match(r"^[A-Z]", got)


@pytest.mark.parametrize("mode", ["text", "chat"])
def test_medcompile_refinement_rewrites_the_current_instruction(world_for, medqa, mode) -> None:  # type: ignore[no-untyped-def]
    from medcompile.compile.refine_instructions import refine_instructions
    from medcompile.sim.phrases import PHRASES

    w = world_for("instruction_sensitive")
    current = f"Answer the question. {PHRASES[2]} {PHRASES[5]}"
    qs = medqa["bank"][:6]
    chosen, pool, calls = refine_instructions([current], qs, lambda t, q: [False] * len(q), w.lm(mode=mode),
                                              rounds=4, keep=5, seed=0)
    assert calls == 4 and len(pool) >= 3
    for p in pool[1:]:  # a reflective step: keeps all but at most one of the leader's phrases, adds one
        got = set(phrases_in(norm(p.text)))
        assert len(got & {2, 5}) >= 1 and got - {2, 5}
