"""Data, simulated worlds and oracles for the regret benchmark.

One `Cell` is a (profile, seed): a fresh `SimWorld` (new latent difficulty, topic and
bias per question) over the MedQA-US4 bank/dev/test splits. The oracle of each
comparison's search space is computed once per cell and shared by every budget and
optimizer, so regret differences between optimizers are paired on the same oracle.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from types import SimpleNamespace
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from medcompile.question import Question

#: The two comparisons and the medcompile program that defines each one's search space.
COMPARISONS = ("end_to_end", "same_space")


@dataclass(frozen=True)
class Splits:
    bank: list[Question]
    dev: list[Question]
    test: list[Question]

    @property
    def all(self) -> list[Question]:
        return [*self.bank, *self.dev, *self.test]


@functools.lru_cache(maxsize=4)
def load_splits(test_n: int | None = None, bank_n: int | None = None) -> Splits:
    """MedQA-US4 bank (765) / dev (254) / test (254) by realidx % 5; optional seeded
    subsamples (tests and --quick use them to stay fast)."""
    from medcompile.data import load_dataset, sample, split_named

    ds = load_dataset("medqa_us4")
    bank = list(split_named(ds, "bank").questions)
    dev = list(split_named(ds, "dev").questions)
    test = list(split_named(ds, "test").questions)
    if bank_n is not None and bank_n < len(bank):
        bank = sample(bank, bank_n, seed=0)
    if test_n is not None and test_n < len(test):
        test = sample(test, test_n, seed=0)
    return Splits(bank, dev, test)


def dev_for_budget(dev: Sequence[Question], budget: int, seed: int, minimum: int = 16) -> list[Question]:
    """The dev questions a search gets: budget/10, at least 16, at most the split (254).
    The same rule for every searching optimizer, so none is handed a bigger sample."""
    from medcompile.data import sample

    n = max(minimum, min(len(dev), budget // 10))
    return sample(list(dev), min(n, len(dev)), seed=seed)


def resolve_profiles(names: Sequence[str], profile_files: Sequence[str], random_n: int, profile_seed: int) -> list[Any]:
    """Builtin names, JSON profile files and N random profiles, in that order."""
    from medcompile.sim import BUILTIN_PROFILES, load_profile, random_profiles

    out: list[Any] = []
    wanted = list(names) if names else ([] if (profile_files or random_n) else list(_builtin_names(BUILTIN_PROFILES)))
    for n in wanted:
        out.append(load_profile(n))
    for f in profile_files:
        out.append(load_profile(f))
    if random_n:
        out.extend(random_profiles(n=random_n, seed=profile_seed))
    return out


def _builtin_names(builtins: Any) -> list[str]:
    if isinstance(builtins, dict):
        return list(builtins)
    return [getattr(p, "name", p) for p in builtins]


def profile_name(p: Any) -> str:
    return str(getattr(p, "name", p))


@dataclass
class Cell:
    """One profile x seed: the world, the splits and (lazily) the oracles."""

    profile: Any
    seed: int
    splits: Splits
    world: Any = None
    oracle_cache: Path | None = None
    _oracles: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from medcompile.sim import SimWorld

        if self.world is None:
            self.world = SimWorld(self.splits.all, profile=self.profile, seed=self.seed)

    @property
    def name(self) -> str:
        return profile_name(self.profile)

    def oracle(self, comparison: str) -> Any:
        """Exhaustive best of the comparison's medcompile search space on the test split
        (kept in `oracle_cache`, a JSONL file, across invocations of a resumed run)."""
        if comparison not in self._oracles:
            key = f"{self.name}|{self.seed}|{comparison}|{len(self.splits.bank)}|{len(self.splits.test)}"
            cached = _read_oracles(self.oracle_cache).get(key) if self.oracle_cache else None
            if cached is None:
                from .programs import declared

                prog = declared(comparison)
                o = self.world.oracle(prog, self.splits.bank, self.splits.test,
                                      **oracle_kwargs(self.world, prog.signature.instruction))
                cached = {"key": key, "expected_accuracy": float(o.expected_accuracy),
                          "calls_per_question": float(o.calls_per_question),
                          "best": {k: (v if not isinstance(v, str) or len(v) <= 64 else f"<{len(v)} chars>")
                                   for k, v in o.best.items()}}
                if self.oracle_cache:
                    with open(self.oracle_cache, "a", encoding="utf-8") as f:
                        f.write(json.dumps(cached) + "\n")
            self._oracles[comparison] = SimpleNamespace(**cached)
        return self._oracles[comparison]

    def expected_accuracy(self, run: Callable[[int], list[str | None]], replicates: int) -> float:
        return float(self.world.expected_accuracy(run, self.splits.test, replicates=replicates))


def _read_oracles(path: Path | None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if path is not None and path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                continue
            out[d["key"]] = d
    return out


def oracle_kwargs(world: Any, user_instruction: str) -> dict[str, Any]:
    """The instruction dimension of the oracle's space: the user's instruction (the
    signature's, which every optimizer starts from) and the best instruction a proposal
    could be. The simulator proposes "base sentence + 1-3 pool phrases" and an
    instruction's effect is the sum of its phrases' latent effects, so the best reachable
    proposal is the base sentence + the (up to) three phrases with the largest positive
    effects in this world (at least the single best one)."""
    from medcompile.sim.phrases import PHRASES
    from medcompile.sim.proposals import BASE

    effects = list(getattr(world, "effects", ()))
    if not effects:
        return {}
    ranked = sorted(range(len(effects)), key=lambda i: -effects[i])
    top = [i for i in ranked[:3] if effects[i] > 0] or ranked[:1]
    best = " ".join([BASE, *(PHRASES[i] for i in sorted(top))])
    return {"instructions": [user_instruction, best] if best != user_instruction else [user_instruction]}
