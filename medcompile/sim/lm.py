"""The simulated model as a medcompile LM backend (`.model`, `.mode`, `.complete`).

It also counts its calls and enforces a call budget itself, so a benchmark can hold
any framework (medcompile, DSPy) to the same number of model calls.
"""
from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING

from ..lm.base import LMError, LMRequest, LMResponse, Mode
from .formats import approx_tokens, dspy_reply, kind_of, medcompile_reply, output_fields, rationale
from .model import ROLE_MARK
from .proposals import current_instruction, propose, reflect

if TYPE_CHECKING:
    from .world import SimWorld

GENERIC = "The task is to answer multiple-choice questions from medical licensing exams with the single best option."


class SimBudgetExceeded(LMError):
    """The simulator's call budget is spent: fatal, never retried."""

    fatal = True

    def __init__(self, budget: int) -> None:
        super().__init__(f"simulated model call budget of {budget} calls exceeded", retryable=False)
        self.budget = budget


def prompt_text(mode: str, prompt: str | None, messages) -> str:
    """One string for a prompt or chat messages; roles are marked so the instruction can be told apart."""
    if mode == "text" or not messages:
        return prompt or ""
    return "".join(f"\n{ROLE_MARK}{m['role'] if isinstance(m, dict) else m.role}{ROLE_MARK}\n"
                   f"{m['content'] if isinstance(m, dict) else m.content}" for m in messages)


class CountsSimCalls:
    """The call counter and budget of a simulator face, read from its `SimReplier`."""

    _r: "SimReplier"

    @property
    def calls(self) -> int:
        return self._r.calls

    @property
    def budget(self) -> int | None:
        return self._r.budget


class SimReplier:
    """Turns prompt text into a reply: shared by the medcompile and DSPy faces."""

    def __init__(self, world: "SimWorld", replicate: int, budget: int | None) -> None:
        self.world = world
        self.replicate = int(replicate)
        self.budget = budget
        self.calls = 0
        self._lock = threading.Lock()

    def count(self) -> None:
        with self._lock:
            if self.budget is not None and self.calls >= self.budget:
                raise SimBudgetExceeded(self.budget)
            self.calls += 1

    def reply(self, text: str, mode: str, temperature: float, seed: int,
              choices: tuple[str, ...] = ()) -> tuple[str, tuple[tuple[str, float], ...]]:
        w = self.world
        kind = kind_of(text, mode)
        parts = (w.seed, self.replicate, seed, temperature, hash_text(text))
        q = w.profile.proposal_quality
        if kind == "gepa":
            return "```\n" + reflect(current_instruction(text), w.effects, q, *parts) + "\n```", ()
        if kind == "medcompile_refine":  # the same reflective step as GEPA's, in medcompile's layout
            better = reflect(current_instruction(text), w.effects, q, *parts)
            return (better if mode == "text" else f"```\n{better}\n```"), ()
        if kind == "medcompile_proposal":
            return propose(w.effects, q, *parts), ()
        fields = output_fields(text) if kind.startswith("dspy") else []
        answer_field = "answer" if "answer" in fields else next((f for f in fields if "answer" in f), None)
        if fields and answer_field is None:
            values = {f: propose(w.effects, q, f, *parts) if "instruction" in f else GENERIC for f in fields}
            return dspy_reply(kind, fields, values), ()
        scene = w.scene(text)
        if scene is None:
            msg = "I could not find a multiple-choice question in the prompt."
            return (dspy_reply(kind, fields, {"_default": msg}) if fields else msg), ()
        f = w.features(scene, temperature)
        d = w.draw(f, self.replicate, seed)
        key = f.display_keys[d.index]
        logprobs: tuple[tuple[str, float], ...] = ()
        if choices:
            lp = dict(zip(f.display_keys, d.logprobs()))
            present = [c for c in choices if c in lp]
            if present:
                m = max(lp[c] for c in present)
                lse = m + math.log(sum(math.exp(lp[c] - m) for c in present))
                logprobs = tuple((c, (lp[c] - lse) if c in lp else -math.inf) for c in choices)
                if key not in choices:
                    key = max(present, key=lambda c: lp[c])
            return key, logprobs
        correct = f.displayed[d.index] == f.q.gold
        wants_reason = f.cot or any(x in fields for x in ("reasoning", "rationale"))
        why = rationale(f.q.stem_words, key, f.displayed[d.index], correct) if wants_reason else None
        if fields:
            values = {answer_field or "answer": key, "reasoning": why or "", "rationale": why or "",
                      "_default": why or key}
            return dspy_reply(kind, fields, values), ()
        return medcompile_reply(kind, text, key, why), ()


def hash_text(text: str) -> str:
    import hashlib

    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


class SimLM(CountsSimCalls):
    """A medcompile backend driven by a `SimWorld`. `calls` counts every call made to it."""

    def __init__(self, world: "SimWorld", mode: Mode = "text", replicate: int = 0, budget: int | None = None,
                 model: str | None = None) -> None:
        if mode not in ("text", "chat"):
            raise ValueError(f"mode must be 'text' or 'chat', got {mode!r}")
        self.world = world
        self.mode: Mode = mode
        self.replicate = int(replicate)
        self.model = model or world.model_id(replicate)
        self._r = SimReplier(world, replicate, budget)


    def complete(self, request: LMRequest) -> LMResponse:
        self._r.count()
        t0 = time.perf_counter()
        text = prompt_text(request.mode, request.prompt, request.messages)
        reply, logprobs = self._r.reply(text, request.mode, float(request.temperature), int(request.seed),
                                        tuple(request.choices))
        return LMResponse(text=reply, prompt_tokens=approx_tokens(text), completion_tokens=approx_tokens(reply),
                          latency_s=time.perf_counter() - t0, choice_logprobs=logprobs)

    def settings(self) -> dict:
        return {"backend": "sim", "model": self.model, "mode": self.mode, "profile": self.world.profile.name,
                "seed": self.world.seed, "replicate": self.replicate}
