"""Instruction refinement: a paired hill climb over instruction texts, on training questions.

One-shot proposals rarely find the best instruction: its effect comes from a few
ingredients together, and a proposal draws them blind. OPRO (Yang et al., 2023) and
GEPA (Agrawal et al., 2025) climb instead: show the model the current best instruction
with questions it got wrong, ask for a better one, keep it if it scores better. Here:

- every candidate is scored at the program's cheapest configuration (one direct call a
  question) on the same few *training* questions, so comparisons are paired and the dev
  questions stay unseen for the search, which screens the survivors again on them;
- each round rewrites the current leader (ties: the earlier candidate, so the user's
  instruction leads until something beats it);
- the best `keep` candidates, the user's always among them, become the search's
  instruction choices.

Cost: (candidates + rounds) x questions scoring calls + one call a round; the compile
gives the stage a share of its budget (`refinement_plan`) and counts every call.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..lm.base import LM, LMError, LMRequest, Message
from ..lm.meter import BudgetedLM, BudgetExceeded, MeteredLM
from ..modules.base import Module, derive_seed
from ..program.program import Program
from ..progress import log as progress_log
from ..question import Question
from .instructions import clean, normalise
from .space import BankChoice, baseline_params, collect_space

REFINE_PROMPT = (
    "An assistant answered medical licensing exam questions following this instruction:\n"
    "```\n{current}\n```\n"
    "It got {right} of {total} practice questions right. Some it got wrong:\n\n{examples}\n\n"
    "Write a better instruction for these questions: keep what helps, change or add what would have "
    "avoided these mistakes. One or two sentences.\n"
    "Better instruction:\n```\n"
)
_FENCED = re.compile(r"```(?:[a-z]*\n)?(.*?)(?:```|$)", re.S)
SHARE = 0.2  # of the compile budget, when the rounds are left to the compile ("auto")
MAX_SHARE = 0.5  # of the compile budget, at most, whatever was asked: the search needs the rest
QUESTIONS = 10  # training questions every candidate is scored on
MIN_ROUNDS = 2  # "auto" affording fewer rounds than this: no refinement stage


@dataclass(frozen=True)
class RefinementPlan:
    questions: int
    rounds: int


def refinement_plan(budget: int, candidates: int, rounds: int | None, n_train: int) -> RefinementPlan | None:
    """How many questions and rounds fit; None when refinement is off or unaffordable.
    `rounds` None: as many as `SHARE` of the budget pays for after scoring the candidates;
    asked-for rounds are capped at what `MAX_SHARE` pays for."""
    m = min(QUESTIONS, n_train)
    if m < 4 or rounds == 0:
        return None
    affordable = lambda share: int(budget * share) // (m + 1) - candidates  # noqa: E731
    if rounds is None:
        rounds = affordable(SHARE)
        if rounds < MIN_ROUNDS:
            return None
    rounds = min(rounds, affordable(MAX_SHARE))
    return RefinementPlan(questions=m, rounds=rounds) if rounds >= 1 else None


@dataclass
class Scored:
    text: str
    correct: list[bool]
    origin: str  # "user", "proposal" or "refined from <n>"

    @property
    def right(self) -> int:
        return sum(self.correct)


Score = Callable[[str, Sequence[Question]], list[bool]]


def refine_instructions(candidates: Sequence[str], questions: Sequence[Question], score: Score, lm: LM, *,
                        rounds: int, keep: int, seed: int, log: Callable[[str], None] = lambda s: None
                        ) -> tuple[list[str], list[Scored], int]:
    """(the `keep` best instructions, the user's first; every scored candidate; proposal calls).

    `score(instruction, questions)` answers the questions at the cheapest configuration with
    that instruction and says which were right."""
    pool: list[Scored] = []
    seen: set[str] = set()

    def add(text: str, origin: str) -> Scored | None:
        key = normalise(text)
        if not key or key in seen:
            return None
        seen.add(key)
        s = Scored(text, score(text, questions), origin)
        pool.append(s)
        return s

    for i, c in enumerate(candidates):
        add(c, "user" if i == 0 else "proposal")
    calls = 0
    for r in range(rounds):
        best = max(range(len(pool)), key=lambda i: (pool[i].right, -i))
        calls += 1
        text = _ask(pool[best], questions, lm, derive_seed(seed, "refine", r))
        child = add(text, f"refined from {best}") if text else None
        if child is not None:
            log(f"instruction round {r + 1}/{rounds}: {child.right}/{len(questions)} "
                f"(leader {pool[best].right}/{len(questions)})")
    order = sorted(range(1, len(pool)), key=lambda i: (-pool[i].right, i))
    chosen = [pool[0].text, *(pool[i].text for i in order[:max(0, keep - 1)])]
    return chosen, pool, calls


def baseline_scorer(root: Module, program: Program, banks: BankChoice, budget: BudgetedLM, metric: Callable,
                    seed: int, concurrency: int) -> Score:
    """`score` for `refine_instructions`: the program's cheapest configuration with the given
    instruction, run through `budget` (so the stage cannot overspend)."""
    from .search import configure  # noqa: PLC0415 - search imports the compile's other stages

    user = program.signature.instruction

    def score(text: str, questions: Sequence[Question]) -> list[bool]:
        space = collect_space(root, tuple(dict.fromkeys((user, text))))
        params = baseline_params(root, space)
        for p in space:
            if p.name == "instruction":
                params[p.key] = text
        cand = Program(configure(root, params, banks, seed), name=program.name, templates=program.templates, seed=seed)
        results = cand.run_many(list(questions), budget, concurrency=concurrency)
        return [bool(metric(q, r.prediction)) for q, r in zip(questions, results)]

    return score


def refine_stage(program: Program, pool: Sequence[Question], lm: MeteredLM, banks: Callable[[], BankChoice],
                 metric: Callable, opts: Any, candidates: list[str], calls: int) -> tuple[list[str], int]:
    """The compile's stage 2b: refine `candidates` when `opts.instruction_rounds` asks for it and the
    budget pays; (the candidates for the search, the preparation calls so far)."""
    plan = refinement_plan(opts.budget, len(candidates), opts.instruction_rounds, len(pool))
    if plan is None:
        return candidates, calls
    budget = BudgetedLM(lm, max(0, opts.budget - calls))
    score = baseline_scorer(program.root, program, banks(), budget, metric, opts.seed, opts.concurrency)
    try:
        chosen = refine_instructions(candidates, pool[:plan.questions], score, budget, rounds=plan.rounds,
                                     keep=len(candidates), seed=opts.seed,
                                     log=lambda m: progress_log(m, quiet=opts.quiet))[0]
    except BudgetExceeded:  # a safety net: the plan fits the budget
        chosen = candidates
    progress_log(f"instructions: {plan.rounds} refinement round(s) on {plan.questions} training questions, "
                 f"{budget.calls} calls", quiet=opts.quiet)
    return chosen, calls + budget.calls


def _ask(leader: Scored, questions: Sequence[Question], lm: LM, seed: int) -> str | None:
    wrong = [q for q, ok in zip(questions, leader.correct) if not ok][:3]
    shown = "\n\n".join(f"Question: {q.question}\n" + "\n".join(f"{k}. {v}" for k, v in q.options.items())
                        + f"\nCorrect answer: {q.answer}" for q in wrong) or "(none)"
    prompt = REFINE_PROMPT.format(current=leader.text, right=leader.right, total=len(questions), examples=shown)
    if lm.mode == "chat":
        req = LMRequest(model=lm.model, mode="chat", messages=(Message("user", prompt),), temperature=1.0,
                        max_tokens=120, seed=seed)
    else:
        req = LMRequest(model=lm.model, mode="text", prompt=prompt, temperature=1.0, max_tokens=100,
                        stop=("```",), seed=seed)
    try:
        reply = lm.complete(req).text
    except LMError as exc:
        if exc.fatal:
            raise
        return None
    m = _FENCED.search(reply)
    return clean(m.group(1) if m else reply)


__all__ = ["REFINE_PROMPT", "RefinementPlan", "Scored", "baseline_scorer", "refine_instructions", "refine_stage",
           "refinement_plan"]
