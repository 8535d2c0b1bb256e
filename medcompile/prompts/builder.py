"""Turning (instruction, exemplars, question) into a model request.

One layout for base models (a text document the model continues) and one for chat
models (alternating turns), chosen per model by the LM's `mode`. Everything the calls
of an ensemble share — instruction, then exemplars — comes first, and the question
last, so that llama.cpp reuses its KV cache across shuffled variants.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, Sequence

from ..exemplar import Exemplar
from ..lm.base import LMRequest, Message, Mode
from ..question import Question
from .templates import Template


@dataclass(frozen=True)
class PromptParts:
    """The pieces of one prompt before it is laid out for a mode."""

    instruction: str
    demos: Sequence[Exemplar]
    question: Question
    cot: bool
    refine_paths: Sequence[tuple[str, str]] = ()  # (rationale, answer) per earlier attempt
    show_context: bool = True  # the signature declares a context input: show questions' passages


class PromptBuilder:
    """Renders prompts from a program's template set (see `templates.DEFAULT_TEMPLATES`)."""

    def __init__(self, templates: Mapping[str, Template]):
        self.t = templates

    def question_block(self, q: Question, show_context: bool = True) -> str:
        opts = "\n".join(self.t["option_line"].render({"key": k, "text": v}) for k, v in q.options.items())
        ctx = self.t["context_line"].render({"context": q.context}) if q.context and show_context else ""
        return self.t["question_block"].render({"context": ctx, "question": q.question, "options": opts})

    def solution(self, ex: Exemplar, cot: bool) -> str:
        lines = []
        if cot and ex.rationale:
            lines.append(self.t["reasoning_line"].render({"rationale": ex.rationale}))
        lines.append(self.t["answer_line"].render({"answer": ex.question.answer or ""}))
        return "\n".join(lines)

    def refine_block(self, paths: Sequence[tuple[str, str]]) -> str:
        rows = [self.t["refine_intro"].render({})]
        for i, (rationale, answer) in enumerate(paths, 1):
            rows.append(self.t["refine_path"].render({"index": str(i), "rationale": rationale, "answer": answer}))
        rows.append(self.t["refine_instruction"].render({}))
        return "\n".join(rows)

    def text_prompt(self, p: PromptParts) -> str:
        parts = [p.instruction.strip()] if p.instruction.strip() else []
        for ex in p.demos:
            parts.append(self.question_block(ex.question, p.show_context) + "\n" + self.solution(ex, p.cot))
        last = self.question_block(p.question, p.show_context)
        if p.refine_paths:
            last += "\n" + self.refine_block(p.refine_paths)
        prefix = self.t["reasoning_prefix" if p.cot else "answer_prefix"].render({})
        parts.append(last + "\n" + prefix)
        return "\n\n".join(parts)

    def chat_messages(self, p: PromptParts) -> tuple[Message, ...]:
        hint = self.t["chat_format_hint"].render({"keys": ", ".join(p.question.options)})
        msgs = [Message("system", (p.instruction.strip() + "\n" + hint).strip())]
        for ex in p.demos:
            msgs.append(Message("user", self.question_block(ex.question, p.show_context)))
            msgs.append(Message("assistant", self.solution(ex, p.cot)))
        last = self.question_block(p.question, p.show_context)
        if p.refine_paths:
            last += "\n" + self.refine_block(p.refine_paths)
        if p.cot:
            last += "\n" + self.t["reasoning_prefix"].render({})
        msgs.append(Message("user", last))
        return tuple(msgs)

    def request(self, p: PromptParts, *, model: str, mode: Mode, temperature: float, max_tokens: int,
                seed: int, choices: tuple[str, ...] = ()) -> LMRequest:
        """The request for `p`; `choices` (option keys) asks the backend to constrain the
        reply to one of them (backends that cannot, ignore it and the reply is parsed)."""
        if mode == "chat":
            return LMRequest(model=model, mode="chat", messages=self.chat_messages(p), temperature=temperature,
                             max_tokens=max_tokens, seed=seed, choices=choices)
        # A direct answer may start on a new line ("\nAnswer: B"), so a bare newline is no
        # stop; the next question or option list is.
        stop = ("\nQuestion:", "\n\nQuestion", "\nOptions:")
        return LMRequest(model=model, mode="text", prompt=self.text_prompt(p), temperature=temperature,
                         max_tokens=max_tokens, stop=stop, seed=seed, choices=choices)

    def followup_request(self, first: LMRequest, reply: str, choices: tuple[str, ...],
                         max_tokens: int) -> LMRequest:
        """After reasoning that named no option: the same conversation, the reply so far,
        then the answer prefix, with the answer constrained to `choices`."""
        prefix = self.t["answer_prefix"].render({})
        if first.mode == "chat":
            msgs = (*first.messages, Message("assistant", reply.strip() or "..."), Message("user", prefix))
            return replace(first, messages=msgs, temperature=0.0, seed=0, max_tokens=max_tokens, choices=choices)
        prompt = (first.prompt or "") + reply.rstrip() + "\n" + prefix
        return replace(first, prompt=prompt, temperature=0.0, seed=0, max_tokens=max_tokens, choices=choices)

    def is_direct(self, p: PromptParts, mode: Mode) -> bool:
        """Whether the reply starts with the answer key itself (text mode, no CoT)."""
        return mode == "text" and not p.cot
