"""SimWorld: one simulated model over one question registry, with fresh latents per seed.

    world = SimWorld(questions, profile="strong_chat", seed=3)
    lm = world.lm(mode="text")          # a medcompile backend
    dlm = world.dspy_lm()               # a dspy.BaseLM
    world.expected_accuracy(run, qs)    # mean accuracy over replicates (the model's per-prompt noise)
    world.oracle(program, bank, qs, instructions)   # the best configuration of a program's space

Probability helpers: `p_correct(q, ...)` and `answer_probs(q, ...)` give the exact
single-call answer distribution for a temperature-0 call with given features (softmax of
the logits over the per-prompt noise scale), without building a prompt.
"""
from __future__ import annotations

import hashlib
import threading
from typing import Callable, Sequence

from ..question import Question
from .latents import SimQuestion, assign_topics, hashed_topic, make_sim_question
from .lm import SimLM
from .model import Draw, Features, base_logits, draw, effect_of, features
from .phrases import phrase_effects
from .profile import Profile, load_profile
from .rand import softmax, uniform
from .recognise import Registry, Scene, recognise
from .text import text_key

DEFAULT_TOPICS = 8


class SimWorld:
    def __init__(self, questions: Sequence[Question] = (), profile: "Profile | str" = "strong_chat", seed: int = 0,
                 n_topics: int = DEFAULT_TOPICS, use_embeddings: bool = True) -> None:
        self.profile = load_profile(profile)
        self.seed = int(seed)
        self.n_topics = n_topics
        self.effects = phrase_effects(self.seed, self.profile.instruction_sd)
        p = self.profile
        self.preferred = p.preferred_position if p.preferred_position is not None else int(uniform(self.seed, "pref") * 4)
        self.registry = Registry()
        self.by_id: dict[str, SimQuestion] = {}
        topics = assign_topics(list(questions), self.seed, n_topics, use_embeddings)
        for q, t in zip(questions, topics):
            sq = make_sim_question(q, self.seed, t)
            self.registry.add(sq)
            self.by_id[q.id] = self.registry.questions.get(sq.key, sq)
        self._unknown: dict[str, SimQuestion] = {}
        self._instr_cache: dict[str, float] = {}
        self._lock = threading.Lock()
        h = hashlib.sha256(self.profile.to_json().encode())
        h.update(str(self.seed).encode())
        h.update("\x1e".join(sorted(self.registry.questions)).encode())
        self.fingerprint = h.hexdigest()[:10]

    # ---- faces --------------------------------------------------------------------------
    def model_id(self, replicate: int = 0) -> str:
        """Unique per profile, seed, registry and replicate, so response caches never mix worlds."""
        return f"sim/{self.profile.name}-s{self.seed}-r{replicate}-{self.fingerprint}"

    def lm(self, mode: str = "text", replicate: int = 0, budget: int | None = None) -> SimLM:
        return SimLM(self, mode=mode, replicate=replicate, budget=budget)  # type: ignore[arg-type]

    def dspy_lm(self, replicate: int = 0, budget: int | None = None, **kw):  # type: ignore[no-untyped-def]
        from .dspy_lm import SimDSPyLM

        return SimDSPyLM(self, replicate=replicate, budget=budget, **kw)

    # ---- recognition and the model ------------------------------------------------------------
    def sim_question(self, q: Question) -> SimQuestion:
        """The simulator's view of a question (registered, or latents hashed from its text)."""
        sq = self.by_id.get(q.id)
        if sq is not None and sq.stem_words and sq.key == text_key(q.question):
            return sq
        return self._unknown_question(q)

    def _unknown_question(self, q: Question) -> SimQuestion:
        key = text_key(q.question)
        reg = self.registry.questions.get(key)
        if reg is not None:
            return reg
        with self._lock:
            sq = self._unknown.get(key)
            if sq is None:
                sq = make_sim_question(q, self.seed, hashed_topic(key, self.n_topics), registered=False)
                if len(self._unknown) > 100_000:
                    self._unknown.clear()
                self._unknown[key] = sq
        return sq

    def scene(self, text: str) -> Scene | None:
        return recognise(text, self.registry, self._unknown_question)

    def features(self, scene: Scene, temperature: float) -> Features:
        return features(scene, temperature)

    def instruction_effect(self, instruction: str) -> float:
        e = self._instr_cache.get(instruction)
        if e is None:
            e = effect_of(self.profile, instruction, self.seed, self.effects)
            if len(self._instr_cache) > 10_000:
                self._instr_cache.clear()
            self._instr_cache[instruction] = e
        return e

    def draw(self, f: Features, replicate: int, request_seed: int) -> Draw:
        return draw(self.profile, f, self.seed, replicate, self.instruction_effect(f.instruction), self.preferred,
                    request_seed)

    # ---- probabilities --------------------------------------------------------------------------
    def answer_probs(self, q: Question, *, instruction: str = "", demos: Sequence[tuple[Question, bool]] = (),
                     cot: bool = False, order: Sequence[str] | None = None) -> dict[str, float]:
        """Exact answer distribution (original option keys) of one temperature-0 call over the
        per-prompt noise: softmax(logits / prompt_noise). `order` is the displayed order of the
        original keys (default: as given); `demos` are (exemplar, carries a rationale)."""
        sq = self.sim_question(q)
        order = list(order or q.options)
        from .text import norm

        f = Features(q=sq, display_keys=tuple(q.options), displayed=tuple(norm(q.options[k]) for k in order),
                     instruction=instruction,
                     demos=tuple((self.sim_question(e).key, self.sim_question(e).topic, r) for e, r in demos), cot=cot)
        z = base_logits(self.profile, f, self.instruction_effect(instruction), self.preferred)
        s = self.profile.prompt_noise
        if s <= 0:
            best = max(range(len(z)), key=lambda j: (z[j], -j))
            probs = [1.0 if j == best else 0.0 for j in range(len(z))]
        else:
            probs = softmax([v / s for v in z])
        return {k: p for k, p in zip(order, probs)}

    def p_correct(self, q: Question, **kw) -> float:  # type: ignore[no-untyped-def]
        """Probability that one temperature-0 call with these features is right (see `answer_probs`)."""
        if q.answer is None:
            raise ValueError("p_correct needs a question with a known answer")
        return self.answer_probs(q, **kw)[q.answer]

    def expected_accuracy(self, run: Callable[[int], Sequence[str | None]], questions: Sequence[Question],
                          replicates: int = 16) -> float:
        """Mean accuracy over `replicates` instances of the model; `run(r)` answers `questions` in order."""
        if not questions:
            raise ValueError("expected_accuracy needs at least one question")
        total = 0.0
        for r in range(replicates):
            answers = list(run(r))
            if len(answers) != len(questions):
                raise ValueError(f"run({r}) returned {len(answers)} answers for {len(questions)} questions")
            total += sum(a is not None and a == q.answer for a, q in zip(answers, questions)) / len(questions)
        return total / replicates

    def oracle(self, program, bank, questions, instructions=(), **kw):  # type: ignore[no-untyped-def]
        from .oracle import oracle

        return oracle(self, program, bank, questions, instructions, **kw)

    # ---- introspection (tests, reports) ---------------------------------------------------------
    def topic(self, q: Question) -> int:
        return self.sim_question(q).topic

    def difficulty(self, q: Question) -> float:
        return self.sim_question(q).difficulty

    def describe(self) -> dict:
        return {"profile": self.profile.name, "seed": self.seed, "questions": len(self.registry),
                "n_topics": self.n_topics, "preferred_position": self.preferred,
                "model": self.model_id(0)}


def world_for_spec(profile: str, seed: int = 0) -> SimWorld:
    """The world behind an `sim` / `sim:<profile>` spec: no registry (latents hashed from text)."""
    return SimWorld([], profile=profile or "strong_chat", seed=seed, use_embeddings=False)



