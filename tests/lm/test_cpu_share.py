"""Processes running local models split the CPUs fairly, and a dead one stops counting."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medcompile.lm.cpu_share import SHARE_DIR_ENV, CpuShare, default_share_dir, fair_share

HOLDER = """
import sys, time
from pathlib import Path
from medcompile.lm.cpu_share import CpuShare
s = CpuShare(Path(sys.argv[1]), cpus=int(sys.argv[2]))
s.join()
print(s.threads(), flush=True)
time.sleep(60)
"""


def holder(directory: Path, cpus: int) -> tuple[subprocess.Popen[str], int]:
    """Another process that registers and stays; returns it and the share it saw."""
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory), str(cpus)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    return p, int(p.stdout.readline())


@pytest.mark.parametrize(("cpus", "members", "shares"), [
    (2, 1, [2]), (2, 2, [1, 1]), (2, 3, [1, 1, 1]), (8, 3, [3, 3, 2]), (4, 4, [1, 1, 1, 1]),
])
def test_fair_share_splits_the_cpus_and_never_gives_zero(cpus: int, members: int, shares: list[int]) -> None:
    assert [fair_share(cpus, members, r) for r in range(members)] == shares


def test_alone_a_process_gets_every_cpu(tmp_path: Path) -> None:
    s = CpuShare(tmp_path, cpus=4)
    assert s.threads() == 4  # not registered yet: as if alone
    s.join()
    s.join()  # idempotent
    assert s.threads() == 4 and len(s.live_members()) == 1
    s.leave()
    assert list(tmp_path.iterdir()) == []


def test_two_live_processes_split_and_the_survivor_takes_all_back(tmp_path: Path) -> None:
    other, seen = holder(tmp_path, 4)
    try:
        assert seen == 4  # it was alone when it joined
        me = CpuShare(tmp_path, cpus=4)
        me.join()
        assert me.threads() == 2 and len(me.live_members()) == 2
    finally:
        other.kill()
        other.wait()
    assert me.threads() == 4  # killed, not cleaned up: its file no longer counts
    assert len(list(tmp_path.iterdir())) == 1  # and the stale file is gone
    me.leave()


def test_the_earliest_registered_gets_the_odd_cpu(tmp_path: Path) -> None:
    first, _ = holder(tmp_path, 3)
    try:
        me = CpuShare(tmp_path, cpus=3)
        me.join()
        assert me.threads() == 1  # 3 CPUs, 2 processes: 2 for the first, 1 for me
    finally:
        first.kill()
        first.wait()
    me.leave()


def test_a_half_made_registration_is_neither_counted_nor_removed(tmp_path: Path) -> None:
    (tmp_path / ".000-123").write_text("")  # created, not yet locked and renamed
    (tmp_path / "000-456").write_text("")  # a dead process's file
    me = CpuShare(tmp_path, cpus=2)
    me.join()
    assert me.threads() == 2
    assert sorted(p.name for p in tmp_path.iterdir())[0] == ".000-123"
    assert not (tmp_path / "000-456").exists()
    me.leave()


def test_an_unusable_directory_means_running_as_if_alone(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    s = CpuShare(blocker / "sub", cpus=2)
    s.join()
    assert s.threads() == 2


def test_the_directory_is_per_user_and_can_be_moved(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(SHARE_DIR_ENV, raising=False)
    assert default_share_dir().name == f"medcompile-cpu-share-{os.getuid()}"
    monkeypatch.setenv(SHARE_DIR_ENV, str(tmp_path))
    assert default_share_dir() == tmp_path


def test_many_processes_joining_at_once_all_count(tmp_path: Path) -> None:
    procs = [holder(tmp_path, 8)[0] for _ in range(3)]
    try:
        me = CpuShare(tmp_path, cpus=8)
        me.join()
        deadline = time.monotonic() + 5
        while len(me.live_members()) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(me.live_members()) == 4 and me.threads() == 2
    finally:
        for p in procs:
            p.kill()
            p.wait()
    me.leave()


def test_fixed_threads_are_declared_and_left_to_their_process(tmp_path: Path) -> None:
    fixed = CpuShare(tmp_path, cpus=4)
    fixed.join(fixed=3)  # e.g. MEDCOMPILE_LLAMA_THREADS=3, or a llama.cpp server's --n_threads
    a, b = CpuShare(tmp_path, cpus=4), CpuShare(tmp_path, cpus=4)
    a.join()
    assert a.threads() == 1  # 4 CPUs - 3 fixed
    b.join()
    assert a.threads() == b.threads() == 1  # nothing left: one each, never zero
    fixed.join(fixed=1)  # a smaller count later does not shrink the declaration
    assert fixed.fixed == 3
    fixed.leave()
    assert (a.threads(), b.threads()) == (2, 2)
    for s in (a, b):
        s.leave()


def test_a_later_fixed_declaration_raises_the_count_others_see(tmp_path: Path) -> None:
    me, other = CpuShare(tmp_path, cpus=8), CpuShare(tmp_path, cpus=8)
    me.join()
    other.join()
    assert me.threads() == 4
    other.join(fixed=6)
    assert me.threads() == 2
    me.leave()
    other.leave()
