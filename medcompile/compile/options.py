"""The compile's settings: what `optimize(**options)` and `medcompile optimize` accept.

Every field that can change the compiled program is part of the study's identity
(`Compiler.identity`), so a changed setting never resumes another compile's search.
"""
from __future__ import annotations

from dataclasses import dataclass

from .selection import DEFAULT_RULE, DEFAULT_SELECT_ALPHA


@dataclass
class CompileOptions:
    budget: int = 500
    seed: int = 0
    max_trials: int = 24  # configurations tried; repeats of tried ones take no slot
    minibatch: int = 4  # search questions between racing decisions
    confirm_fraction: float = 0.4  # share of dev questions held out to confirm the finalists on
    confirm_top: int = 3  # finalists confirmed besides the cheapest configuration
    select_rule: str = DEFAULT_RULE  # how the finalists are chosen among (see `selection.choose`)
    select_alpha: float = DEFAULT_SELECT_ALPHA  # the choice's risk level: the price of extra calls
    # Defaults below were chosen on random simulated profiles (benchmarks/bench_selection_design.py),
    # never on the builtin profiles the regret benchmark reports on.
    select_on: str = "pooled"  # finalists compared on all dev questions, or on the "confirmation" ones only
    try_declared: bool = False  # trial 1 is the program as declared (the user's own best guess)
    screen: bool = True  # after the baseline: one change at a time, then the helpful ones combined
    scale_last: bool = False  # search at one call a question, then try the leader at its declared sizes
    patient_racing: bool = True  # a costlier candidate is stopped only when significantly worse
    reserve_finalists: bool = False  # the search keeps room to confirm every finalist, not only the leader
    pool_effects: bool = False  # an additive model of every trial's answers ranks finalists, proposes (`pooled`)
    n_instructions: int = 3
    instruction_consensus: int = 0  # > n_instructions: draw this many proposals, add their consensus
    # Instruction hill climb (`refine_instructions`): rounds, or None for what a fifth of the budget
    # pays for. Off by default: on random profiles it did not lower regret (selection_refine_606*.md).
    instruction_rounds: int | None = 0
    max_rationales: int | None = None  # None: `default_rationales(budget)`
    objective: str = "accuracy"  # or "pareto": accuracy vs calls per question
    concurrency: int = 1
    storage: str | None = None
    study_name: str | None = None
    worker: bool = False
    embedder: str | dict | None = None
    quiet: bool = False
    worker_wait_s: float = 600.0


def default_rationales(budget: int) -> int:
    """Bank questions to write rationales for when not told: a tenth of the budget, at least
    40 (8 per exemplar slot of Medprompt's k=5) as long as that stays within 30% of it."""
    return max(1, min(int(budget * 0.3), max(40, budget // 10)))
