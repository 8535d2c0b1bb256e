"""Predict and SelfCoT: the modules that actually call the model.

`Predict` asks for the answer directly. `SelfCoT` asks the model to reason first,
with few-shot exemplars whose rationales the same model wrote at compile time
(Medprompt's self-generated chain of thought). Whether reasoning helps is itself a
tunable choice: small models are often better without it.

How a direct answer is read is recorded in the program (`answer`): "constrained" asks
the backend to choose among the option keys (llama.cpp scores them; servers that
cannot constrain fall back to parsing), so it never abstains for want of a key, and
its option probabilities become the prediction's confidence; "parse" reads the key
out of free text (how version-1 programs answered). A chain-of-thought reply always
ends with a parsed key; when it names none and `followup` is set, one constrained
follow-up call (the reasoning, then the answer prefix) supplies it.
"""
from __future__ import annotations

import math
import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Mapping

from ..lm.base import LMError, LMRequest, LMResponse
from ..prompts.builder import PromptParts
from ..prompts.parse import parse_answer
from ..question import Question
from ..signatures import Signature
from .base import (BankSource, Module, ModuleError, Needs, Prediction, Resolver, RunContext, check_int,
                   check_temperature, derive_seed, register, resolve_tune, with_tune)
from .retrieve import Retrieve

DIRECT_MAX_TOKENS = 8
COT_MAX_TOKENS = 192
MAX_TOKENS_LIMIT = 32768
ANSWER_METHODS = ("constrained", "parse")
ANSWER_METHODS = ("constrained", "parse")


@register
@dataclass(frozen=True, eq=False)
class Predict(Module):
    signature: Any = None
    demos: Retrieve | None = None
    cot: bool = False
    temperature: float = 0.0
    max_tokens: int | None = None
    tune: Any = True
    answer: str = "constrained"
    followup: bool = True

    type_name: ClassVar[str] = "Predict"
    default_space: ClassVar[Mapping[str, tuple[Any, ...]]] = {"temperature": (0.0, 0.7)}

    def __post_init__(self) -> None:
        object.__setattr__(self, "signature", Signature.coerce(self.signature))
        object.__setattr__(self, "tune", resolve_tune(self.tune, self.default_space, self.type_name,
                                                      extra=("instruction", "answer", "followup")))
        if self.demos is not None and not isinstance(self.demos, Retrieve):
            raise ModuleError(f"{self.type_name}.demos must be a Retrieve module, got {type(self.demos).__name__}")
        if not isinstance(self.cot, bool):
            raise ModuleError(f"{self.type_name}.cot must be true or false")
        check_temperature(f"{self.type_name}.temperature", self.temperature)
        if self.max_tokens is not None:
            check_int(f"{self.type_name}.max_tokens", self.max_tokens, 1, MAX_TOKENS_LIMIT)

        if self.answer not in ANSWER_METHODS:
            raise ModuleError(f"{self.type_name}.answer must be one of {list(ANSWER_METHODS)}, got {self.answer!r}")
        if not isinstance(self.followup, bool):
            raise ModuleError(f"{self.type_name}.followup must be true or false")

        if self.answer not in ANSWER_METHODS:
            raise ModuleError(f"{self.type_name}.answer must be one of {list(ANSWER_METHODS)}, got {self.answer!r}")
        if not isinstance(self.followup, bool):
            raise ModuleError(f"{self.type_name}.followup must be true or false")

    @property
    def instruction(self) -> str:
        return self.signature.instruction

    def token_limit(self, cot: bool | None = None) -> int:
        """The user's cap, else room for reasoning when the prompt asks for it."""
        return self.max_tokens or (COT_MAX_TOKENS if (self.cot if cot is None else cot) else DIRECT_MAX_TOKENS)

    def parts(self, q: Question, extra_paths: tuple[tuple[str, str], ...] = (), cot: bool | None = None) -> PromptParts:
        demos = self.demos.demos(q) if self.demos is not None else []
        return PromptParts(self.instruction, demos, q, self.cot if cot is None else cot, extra_paths,
                           show_context="context" in self.signature.input_names)

    def ask(self, parts: PromptParts, ctx: RunContext, path: str, temperature: float, q: Question) -> Prediction:
        """One model call and its answer (plus, for reasoning that named no option and
        `followup`, one constrained call); a non-fatal model error becomes an abstention."""
        seed = derive_seed(ctx.seed, q.id, path) if temperature > 0 else 0
        keys = tuple(q.options)
        constrained = not parts.cot and self.answer == "constrained"
        req = ctx.builder.request(parts, model=ctx.lm.model, mode=ctx.lm.mode, temperature=temperature,
                                  max_tokens=self.token_limit(parts.cot), seed=seed,
                                  choices=keys if constrained else ())
        try:
            resp = ctx.complete(path, req)
        except LMError as exc:
            if exc.fatal:
                raise
            return Prediction(None, reason=f"model error: {exc}")
        direct = ctx.builder.is_direct(parts, ctx.lm.mode)
        scored = _scored(resp, q)
        if scored is not None:
            return scored
        if constrained and resp.text.strip() in q.options:  # constrained by a server that gave no scores
            key = resp.text.strip()
            return Prediction(key, confidence=1.0, votes={key: 1}, reason="constrained")
        parsed = parse_answer(resp.text, dict(q.options), direct=direct)
        if parsed.key is None and parts.cot and self.followup:
            follow = self._followup(ctx, path, req, resp.text, q)
            if follow is not None:
                follow.rationale = parsed.rationale or None
                return follow
        return Prediction(parsed.key, confidence=1.0 if parsed.key else 0.0,
                          votes={parsed.key: 1} if parsed.key else {},
                          rationale=parsed.rationale or None, reason=parsed.reason)

    def _followup(self, ctx: RunContext, path: str, first: LMRequest, reply: str, q: Question) -> Prediction | None:
        """The one constrained call after reasoning without a key; None if it fails too."""
        req = ctx.builder.followup_request(first, reply, tuple(q.options), DIRECT_MAX_TOKENS)
        try:
            resp = ctx.complete(f"{path}/followup", req)
        except LMError as exc:
            if exc.fatal:
                raise
            return None
        scored = _scored(resp, q, reason="follow-up")
        if scored is not None:
            return scored
        if resp.text.strip() in q.options:  # constrained by a server that gave no scores
            return Prediction(resp.text.strip(), 1.0, {resp.text.strip(): 1}, reason="follow-up")
        parsed = parse_answer(resp.text, dict(q.options), direct=req.mode == "text")
        if parsed.key is None:
            return None
        return Prediction(parsed.key, 1.0, {parsed.key: 1}, reason="follow-up (parsed)")

    def forward(self, q: Question, ctx: RunContext, path: str) -> Prediction:
        return self.ask(self.parts(q), ctx, path or self.type_name, float(self.temperature), q)

    # ---- structure / tuning ---------------------------------------------------------
    def children(self) -> list[tuple[str, Module]]:
        return [("demos", self.demos)] if self.demos is not None else []

    def with_children(self, new: Mapping[str, Module]) -> "Predict":
        return replace(self, demos=new.get("demos", self.demos))  # type: ignore[arg-type]

    def needs(self) -> Needs:
        open_ = self.tune is not None
        return Needs(model_calls=True, instruction=open_,
                     rationales=self.cot or (open_ and True in (self.tune or {}).get("cot", ())))

    def bind_banks(self, banks: BankSource) -> "Predict":
        """Chain-of-thought exemplars come from the bank with rationales; zero-shot needs none."""
        if self.demos is None:
            return self
        bank = banks.for_predictor(self.cot) if self.demos.k > 0 else None
        return replace(self, demos=replace(self.demos, bank=bank))

    def configure(self, params: Mapping[str, Any]) -> "Predict":
        sig = self.signature
        if "instruction" in params:
            sig = sig.with_instruction(str(params["instruction"]))
        return replace(self, signature=sig, cot=bool(params.get("cot", self.cot)),
                       temperature=float(params.get("temperature", self.temperature)),
                       answer=str(params.get("answer", self.answer)),
                       followup=bool(params.get("followup", self.followup)), tune=False)

    def calls_per_question(self) -> float:
        return 1.0

    def to_config(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type_name, "signature": self.signature.to_dict(), "cot": self.cot,
                             "temperature": float(self.temperature), "max_tokens": self.max_tokens,
                             "demos": self.demos.to_config() if self.demos is not None else None,
                             "answer": self.answer, "followup": self.followup}
        return with_tune(d, self.tune)

    @classmethod
    def from_config(cls, d: Mapping[str, Any], resolve: Resolver) -> "Predict":
        demos = resolve.build(d["demos"]) if d.get("demos") else None
        return cls(signature=Signature.from_dict(d["signature"]), demos=demos, cot=d["cot"],  # type: ignore[arg-type]
                   temperature=d["temperature"], max_tokens=d.get("max_tokens"), tune=d.get("tune"),
                   answer=d.get("answer", "parse"), followup=d.get("followup", False))


@register
@dataclass(frozen=True, eq=False)
class SelfCoT(Predict):
    """Chain of thought with self-generated rationales in the exemplars."""

    cot: bool = True
    type_name: ClassVar[str] = "SelfCoT"
    default_space: ClassVar[Mapping[str, tuple[Any, ...]]] = {"cot": (True, False), "temperature": (0.0, 0.7)}


def _scored(resp: LMResponse, q: Question, reason: str = "constrained") -> Prediction | None:
    """The prediction from a scored reply (the backend constrained it to a key), else None.
    The reply text is the answer (a seeded draw above temperature 0); the key
    probabilities give the confidence."""
    if not resp.choice_logprobs:
        return None
    probs = {k: math.exp(lp) for k, lp in resp.choice_logprobs if k in q.options}
    if not probs:
        return None
    answer = resp.text.strip()
    if answer not in probs:
        answer = max(probs, key=lambda k: (probs[k], -list(q.options).index(k)))
    return Prediction(answer, confidence=probs[answer], votes={answer: 1}, reason=reason, option_probs=probs)
