"""Shared fixtures: scripted LMs for logic, the real embedded model for end-to-end."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from medcompile.question import Question  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def mcq(i: int, answer: str = "B", n_opts: int = 4, text: str | None = None) -> Question:
    keys = "ABCDE"[:n_opts]
    opts = {k: f"option {k.lower()} for question {i}" for k in keys}
    return Question(str(i), text or f"Question number {i}: which drug treats condition {i % 7}?", opts, answer=answer)


@pytest.fixture
def questions() -> list[Question]:
    return [mcq(i, "ABCD"[i % 4]) for i in range(24)]


@pytest.fixture(scope="session")
def real_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One LM cache for all real-model tests of a session (the GGUF stays in the user cache)."""
    return tmp_path_factory.mktemp("real-lm-cache")


@pytest.fixture(scope="session")
def local_lm(real_cache_dir: Path):
    from medcompile.lm.registry import make_lm

    return make_lm("local", cache_dir=real_cache_dir)


@pytest.fixture(scope="session")
def medqa_dev() -> list[Question]:
    from medcompile.data import load_dataset, split_named

    return split_named(load_dataset("medqa_us4"), "dev").questions


@pytest.fixture(scope="session")
def medqa_bank() -> list[Question]:
    from medcompile.data import load_dataset, split_named

    return split_named(load_dataset("medqa_us4"), "bank").questions
