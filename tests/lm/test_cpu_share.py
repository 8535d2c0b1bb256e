"""Calls to local models split the CPUs fairly, and a dead process stops counting."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from medcompile.lm.cpu_share import SHARE_DIR_ENV, CpuShare, default_share_dir, fair_share

RUNNER = """
import sys, time
from pathlib import Path
from medcompile.lm.cpu_share import CpuShare
with CpuShare(Path(sys.argv[1]), cpus=int(sys.argv[2])).running(int(sys.argv[3]) or None) as claim:
    print(claim.threads(), flush=True)
    time.sleep(60)
"""


def running_elsewhere(directory: Path, cpus: int, fixed: int = 0) -> tuple[subprocess.Popen[str], int]:
    """Another process in the middle of a call; returns it and the share it saw."""
    p = subprocess.Popen([sys.executable, "-c", RUNNER, str(directory), str(cpus), str(fixed)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    return p, int(p.stdout.readline())


def stop(p: subprocess.Popen[str]) -> None:
    p.kill()  # killed mid-call: nothing cleans up after it
    p.wait()


@pytest.mark.parametrize(("cpus", "members", "shares"), [
    (2, 1, [2]), (2, 2, [1, 1]), (2, 3, [1, 1, 1]), (8, 3, [3, 3, 2]), (4, 4, [1, 1, 1, 1]),
])
def test_fair_share_splits_the_cpus_and_never_gives_zero(cpus: int, members: int, shares: list[int]) -> None:
    assert [fair_share(cpus, members, r) for r in range(members)] == shares


def test_a_call_alone_gets_every_cpu_and_leaves_nothing_behind(tmp_path: Path) -> None:
    share = CpuShare(tmp_path, cpus=4)
    with share.running() as claim:
        assert claim.threads() == 4 and len(share.live()) == 1
    assert list(tmp_path.iterdir()) == [] and share.threads_now() == 4


def test_two_running_calls_split_and_a_killed_one_stops_counting(tmp_path: Path) -> None:
    other, seen = running_elsewhere(tmp_path, 4)
    share = CpuShare(tmp_path, cpus=4)
    try:
        assert seen == 4  # it was alone when it asked
        assert share.threads_now() == 2
        with share.running() as claim:
            assert claim.threads() == 2 and len(share.live()) == 2
    finally:
        stop(other)
    assert share.threads_now() == 4  # its file is unlocked now, so it no longer counts
    assert list(tmp_path.iterdir()) == []  # and the stale file was removed


def test_the_earliest_call_gets_the_odd_cpu(tmp_path: Path) -> None:
    first, _ = running_elsewhere(tmp_path, 3)
    try:
        with CpuShare(tmp_path, cpus=3).running() as claim:
            assert claim.threads() == 1  # 3 CPUs, 2 calls: 2 for the first, 1 for me
    finally:
        stop(first)


def test_fixed_threads_are_declared_and_left_to_their_call(tmp_path: Path) -> None:
    server, seen = running_elsewhere(tmp_path, 4, fixed=3)  # e.g. a llama.cpp server's --n_threads 3
    share = CpuShare(tmp_path, cpus=4)
    try:
        assert seen == 3
        with share.running() as a, share.running() as b:
            assert a.threads() == b.threads() == 1  # 1 CPU left: one thread each, never zero
        with share.running(fixed=2) as c:
            assert c.threads() == 2  # fixed means fixed, even when the machine is full
    finally:
        stop(server)
    assert share.threads_now() == 4


def test_a_process_with_a_model_loaded_but_idle_takes_nothing(tmp_path: Path) -> None:
    share = CpuShare(tmp_path, cpus=2)
    with share.running():
        pass  # one call done; the process lives on, idle
    with CpuShare(tmp_path, cpus=2).running() as claim:
        assert claim.threads() == 2


def test_a_half_made_registration_is_neither_counted_nor_removed(tmp_path: Path) -> None:
    (tmp_path / ".000-123-0").write_text("")  # created, not yet locked and renamed
    (tmp_path / "000-456-0").write_text("")  # a dead process's file
    with CpuShare(tmp_path, cpus=2).running() as claim:
        assert claim.threads() == 2
    assert [p.name for p in tmp_path.iterdir()] == [".000-123-0"]


def test_an_unusable_directory_means_running_as_if_alone(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    share = CpuShare(blocker / "sub", cpus=2)
    with share.running() as claim:
        assert claim.threads() == 2
    assert share.threads_now() == 2


def test_the_directory_is_per_user_and_can_be_moved(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(SHARE_DIR_ENV, raising=False)
    assert default_share_dir().name == f"medcompile-cpu-share-{os.getuid()}"
    monkeypatch.setenv(SHARE_DIR_ENV, str(tmp_path))
    assert default_share_dir() == tmp_path


def test_many_calls_at_once_all_count(tmp_path: Path) -> None:
    procs = [running_elsewhere(tmp_path, 8)[0] for _ in range(3)]
    try:
        with CpuShare(tmp_path, cpus=8).running() as claim:
            assert claim.threads() == 2
    finally:
        for p in procs:
            stop(p)
