"""How many threads the embedded model gets when none are given."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from medcompile.lm.base import LMError
from medcompile.lm.cpu_share import SHARE_DIR_ENV, CpuShare
from medcompile.lm.llamacpp import THREADS_ENV, default_threads


@pytest.fixture
def own_share(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv(SHARE_DIR_ENV, str(tmp_path))
    return tmp_path


def test_every_usable_cpu_when_no_other_call_runs(monkeypatch: pytest.MonkeyPatch, own_share: Path) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert default_threads() == len(os.sched_getaffinity(0))


def test_a_share_while_another_call_runs(monkeypatch: pytest.MonkeyPatch, own_share: Path) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    cpus = len(os.sched_getaffinity(0))
    with CpuShare(own_share).running():  # its own lock and file: to the share, another call
        assert default_threads() == max(1, cpus // 2)
    assert default_threads() == cpus


def test_the_environment_overrides(monkeypatch: pytest.MonkeyPatch, own_share: Path) -> None:
    monkeypatch.setenv(THREADS_ENV, "3")
    with CpuShare(own_share).running():
        assert default_threads() == 3


@pytest.mark.parametrize("bad", ["0", "two", "-1", "1.5"])
def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv(THREADS_ENV, bad)
    with pytest.raises(LMError, match=THREADS_ENV):
        default_threads()
