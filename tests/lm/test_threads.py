"""How many threads the embedded model gets when none are given."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from medcompile.lm import cpu_share
from medcompile.lm.base import LMError
from medcompile.lm.cpu_share import SHARE_DIR_ENV, CpuShare
from medcompile.lm.llamacpp import THREADS_ENV, default_threads


@pytest.fixture
def own_share(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A private share directory and a fresh process registration."""
    monkeypatch.setenv(SHARE_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(cpu_share, "_PROCESS_SHARE", None)
    return tmp_path


def test_every_usable_cpu_when_alone(monkeypatch: pytest.MonkeyPatch, own_share: Path) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert default_threads() == len(os.sched_getaffinity(0))
    assert len(list(own_share.iterdir())) == 1  # registered, so others see this process


def test_a_share_when_another_process_runs_a_local_model(monkeypatch: pytest.MonkeyPatch,
                                                         own_share: Path) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    cpus = len(os.sched_getaffinity(0))
    other = CpuShare(own_share)  # stands in for another process: its own lock, its own file
    other.join()
    try:
        assert default_threads() == max(1, cpus // 2)
    finally:
        other.leave()
    assert default_threads() == cpus


def test_the_environment_overrides(monkeypatch: pytest.MonkeyPatch, own_share: Path) -> None:
    monkeypatch.setenv(THREADS_ENV, "3")
    assert default_threads() == 3
    (registration,) = own_share.iterdir()  # declared, so that sharing processes leave them
    assert registration.read_text() == "3"


@pytest.mark.parametrize("bad", ["0", "two", "-1", "1.5"])
def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv(THREADS_ENV, bad)
    with pytest.raises(LMError, match=THREADS_ENV):
        default_threads()
