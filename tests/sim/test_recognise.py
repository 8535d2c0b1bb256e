"""The simulator finds the target and the exemplars in every prompt layout, and reads the displayed order."""
from __future__ import annotations

import dspy
import pytest

from medcompile.exemplar import Exemplar
from medcompile.modules.shuffle import permute
from medcompile.prompts.builder import PromptBuilder, PromptParts
from medcompile.prompts.templates import DEFAULT_TEMPLATES, check_templates
from medcompile.sim.lm import prompt_text
from medcompile.sim.model import instruction_of
from medcompile.sim.text import norm

BUILDER = PromptBuilder(check_templates(DEFAULT_TEMPLATES))
INSTR = "Answer carefully. Be concise."


def _text(parts: PromptParts, mode: str) -> str:
    req = BUILDER.request(parts, model="m", mode=mode, temperature=0.0, max_tokens=8, seed=0)  # type: ignore[arg-type]
    return prompt_text(mode, req.prompt, req.messages)


@pytest.mark.parametrize("mode", ["text", "chat"])
@pytest.mark.parametrize("cot", [False, True])
def test_medcompile_layouts(world_for, medqa, mode, cot) -> None:  # type: ignore[no-untyped-def]
    w = world_for("strong_chat")
    demos = [Exemplar(q, "Because of the findings the best option follows from the key points of this case, "
                         "which are typical of it and rule out the other options entirely.") for q in medqa["bank"][:3]]
    target, _ = permute(medqa["test"][7], [2, 0, 3, 1])
    scene = w.scene(_text(PromptParts(INSTR, demos, target, cot), mode))
    assert scene is not None
    assert scene.target.key == w.sim_question(medqa["test"][7]).key
    assert [e.key for e, _ in scene.exemplars] == [w.sim_question(d.question).key for d in demos]
    assert all(r == cot for _, r in scene.exemplars)  # rationales are shown only in CoT prompts
    assert scene.display_keys == ("A", "B", "C", "D")
    assert scene.displayed == tuple(norm(target.options[k]) for k in "ABCD")  # the shuffled order, as shown
    assert w.features(scene, 0.0).cot == cot
    assert instruction_of(scene.head) == INSTR


@pytest.mark.parametrize("adapter", [dspy.ChatAdapter(), dspy.JSONAdapter()], ids=["chat", "json"])
@pytest.mark.parametrize("cot", [False, True])
def test_dspy_layouts(world_for, medqa, adapter, cot) -> None:  # type: ignore[no-untyped-def]
    w = world_for("strong_chat")

    class MCQ(dspy.Signature):
        """Pick the single best option."""

        question: str = dspy.InputField()
        options: str = dspy.InputField()
        answer: str = dspy.OutputField()

    sig = dspy.ChainOfThought(MCQ).predict.signature if cot else MCQ
    opts = lambda q: "\n".join(f"{k}. {v}" for k, v in q.options.items())  # noqa: E731
    demos = [dspy.Example(question=q.question, options=opts(q), answer=q.answer,
                          **({"reasoning": "The findings point to this option and exclude all the others because "
                                            "the typical picture matches it in every respect described here."} if cot else {}))
             for q in medqa["bank"][:2]]
    target = medqa["test"][3]
    msgs = adapter.format(sig, demos, {"question": target.question, "options": opts(target)})
    scene = w.scene(prompt_text("chat", None, msgs))
    assert scene is not None and scene.target.key == w.sim_question(target).key
    assert [e.key for e, _ in scene.exemplars] == [w.sim_question(q).key for q in medqa["bank"][:2]]
    assert all(r == cot for _, r in scene.exemplars)
    assert scene.displayed == tuple(norm(t) for t in target.options.values())
    assert w.features(scene, 0.0).cot == cot
    assert instruction_of(scene.head) == "Pick the single best option."


def test_unknown_questions_are_parsed_and_answered_consistently(world_for) -> None:  # type: ignore[no-untyped-def]
    from medcompile.question import Question

    w = world_for("strong_chat")
    q = Question("x", "Which vitamin deficiency causes scurvy in sailors?", {"A": "Vitamin A", "B": "Vitamin C",
                                                                              "C": "Vitamin D", "D": "Vitamin K"})
    s1 = w.scene(_text(PromptParts("", [], q, False), "text"))
    s2 = w.scene(_text(PromptParts("", [], permute(q, [3, 2, 1, 0])[0], False), "chat"))
    assert s1 is not None and s2 is not None and not s1.target.registered
    assert s1.target.key == s2.target.key and s1.target.gold == s2.target.gold  # a hashed, fixed "truth"
    assert s2.displayed == tuple(reversed(s1.displayed))


def test_no_question_gives_a_plain_reply(world_for) -> None:  # type: ignore[no-untyped-def]
    from medcompile.lm.base import LMRequest

    lm = world_for("strong_chat").lm()
    r = lm.complete(LMRequest(model=lm.model, mode="text", prompt="Hello there."))
    assert "could not find" in r.text


def test_dspy_dict_options_are_read_in_their_displayed_order(world_for, medqa) -> None:  # type: ignore[no-untyped-def]
    w, target = world_for("strong_chat"), medqa["test"][11]

    class MCQ(dspy.Signature):
        question: str = dspy.InputField()
        options: dict[str, str] = dspy.InputField()
        answer: str = dspy.OutputField()

    shown, _ = permute(target, [3, 1, 0, 2])
    msgs = dspy.JSONAdapter().format(MCQ, [], {"question": target.question, "options": dict(shown.options)})
    scene = w.scene(prompt_text("chat", None, msgs))
    assert scene is not None and scene.target.key == w.sim_question(target).key
    assert scene.displayed == tuple(norm(shown.options[k]) for k in "ABCD")
