"""Data, simulated worlds and oracles for the regret benchmark.

One `Cell` is a (profile, seed): a fresh `SimWorld` (new latent difficulty, topic and
bias per question) over the MedQA-US4 bank/dev/test splits. The oracle of each
comparison's search space is computed once per cell and shared by every budget and
optimizer, so regret differences between optimizers are paired on the same oracle.
"""
from __future__ import annotations

import functools
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
    _oracles: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from medcompile.sim import SimWorld

        if self.world is None:
            self.world = SimWorld(self.splits.all, profile=self.profile, seed=self.seed)

    @property
    def name(self) -> str:
        return profile_name(self.profile)

    def oracle(self, comparison: str) -> Any:
        """Exhaustive best of the comparison's medcompile search space on the test split."""
        if comparison not in self._oracles:
            from .programs import declared

            self._oracles[comparison] = self.world.oracle(declared(comparison), self.splits.bank, self.splits.test,
                                                          **oracle_kwargs(self.world))
        return self._oracles[comparison]

    def expected_accuracy(self, run: Callable[[int], list[str | None]], replicates: int) -> float:
        return float(self.world.expected_accuracy(run, self.splits.test, replicates=replicates))


def oracle_kwargs(world: Any) -> dict[str, Any]:
    """The instruction candidates the oracle may pick from: the simulator's own pool when
    it exposes one (A's `instruction_pool()`), else the oracle's default."""
    pool = getattr(world, "instruction_pool", None)
    if callable(pool):
        return {"instructions": list(pool())}
    return {}
