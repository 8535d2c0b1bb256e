"""Fixtures for the simulator tests: real MedQA questions and one world per profile (cached per session)."""
from __future__ import annotations

import pytest

from medcompile.question import Question


@pytest.fixture(scope="session")
def medqa() -> dict[str, list[Question]]:
    from medcompile.data import load_dataset, split_named

    ds = load_dataset("medqa_us4")
    return {s: split_named(ds, s).questions for s in ("bank", "dev", "test")}


@pytest.fixture(scope="session")
def registry(medqa) -> list[Question]:  # type: ignore[no-untyped-def]
    return medqa["bank"] + medqa["dev"] + medqa["test"]


@pytest.fixture(scope="session")
def world_for(registry):  # type: ignore[no-untyped-def]
    """world_for(profile, seed=0) -> SimWorld over the whole MedQA-US4 registry (cached)."""
    from medcompile.sim import SimWorld

    cache: dict = {}

    def make(profile: str, seed: int = 0):  # type: ignore[no-untyped-def]
        if (profile, seed) not in cache:
            cache[(profile, seed)] = SimWorld(registry, profile=profile, seed=seed)
        return cache[(profile, seed)]

    return make


def accuracy(program, questions, lm) -> float:  # type: ignore[no-untyped-def]
    res = program.run_many(questions, lm)
    return sum(r.prediction.answer == q.answer for r, q in zip(res, questions)) / len(questions)
