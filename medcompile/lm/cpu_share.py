"""A fair share of this machine's CPUs for every process that runs an in-process model.

ggml's worker threads meet at a spinning barrier after every operation. When processes
together run more llama threads than there are CPUs, a descheduled thread stalls all
its peers: a real-model test that takes 77 s alone took over 12 minutes beside the demo,
each with a thread per CPU. So each process running a local model registers here, and
before every call counts the live registrations and takes its share of the CPUs: a
process with a fixed thread count ($MEDCOMPILE_LLAMA_THREADS, `n_threads=`, or a llama.cpp
server a benchmark started) declares it in its file and keeps it; the others split what is
left evenly (the remainder to the earliest registered). Together they never ask for more
CPUs than there are, unless there are more such processes than CPUs (one thread each).

Registration is a file in a per-user directory that its process holds an exclusive
`flock` on, so a crashed or killed process leaves nothing behind that counts: the next
count finds its file unlocked and removes it. Files are created under a hidden name and
renamed once locked, so a half-made registration is never mistaken for a dead one.
Thread counts change no output bits on this build (checked from 1 to 4 threads; the
real-model test `test_all_cpus_generate_and_the_thread_count_does_not_change_answers`
keeps checking), so a reply does not depend on what else the machine runs.
"""
from __future__ import annotations

import fcntl
import os
import tempfile
import threading
import time
from pathlib import Path

SHARE_DIR_ENV = "MEDCOMPILE_CPU_SHARE_DIR"


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def default_share_dir() -> Path:
    """Per user, so processes of one user share; $MEDCOMPILE_CPU_SHARE_DIR overrides."""
    env = os.environ.get(SHARE_DIR_ENV, "").strip()
    if env:
        return Path(env)
    return Path(tempfile.gettempdir()) / f"medcompile-cpu-share-{os.getuid()}"


def fair_share(cpus: int, members: int, rank: int) -> int:
    """Threads for the member at `rank` (0 = earliest) of `members`: at least 1."""
    if members <= 0:
        return cpus
    return max(1, cpus // members + (1 if rank < cpus % members else 0))


class CpuShare:
    """This process's registration; `threads()` is its share right now."""

    def __init__(self, directory: Path | None = None, cpus: int | None = None) -> None:
        self.directory = directory or default_share_dir()
        self.cpus = cpus or usable_cpus()
        self._fd: int | None = None
        self._name = ""
        self.pid = os.getpid()
        self.fixed = 0  # threads this process declared as fixed (0: it shares)
        self._lock = threading.Lock()

    def join(self, fixed: int | None = None) -> None:
        """Register (idempotent); `fixed`: this process runs that many threads whatever its
        share (declared so the others leave them). A directory that cannot be used means
        no sharing."""
        with self._lock:
            if self._fd is not None:
                if fixed is not None and fixed > self.fixed:
                    self.fixed = fixed
                    os.pwrite(self._fd, str(fixed).encode(), 0)
                return
            try:
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                if self.directory.stat().st_uid != os.getuid():
                    return  # someone else's directory: do not trust its files
                name = f"{time.time_ns():020d}-{os.getpid()}"
                hidden = self.directory / f".{name}"
                fd = os.open(hidden, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if fixed is not None:
                    os.pwrite(fd, str(fixed).encode(), 0)
                os.rename(hidden, self.directory / name)
            except OSError:
                return  # e.g. a read-only temp dir: run as if alone
            self._fd, self._name, self.fixed = fd, name, fixed or 0

    def leave(self) -> None:
        with self._lock:
            if self._fd is None:
                return
            try:
                os.unlink(self.directory / self._name)
            except OSError:
                pass
            os.close(self._fd)  # releases the lock
            self._fd, self._name, self.fixed = None, "", 0

    def live_members(self) -> dict[str, int]:
        """Registrations whose process still holds its lock, earliest first, each with
        the thread count it declared fixed (0: it shares)."""
        try:
            names = sorted(n for n in os.listdir(self.directory) if not n.startswith("."))
        except OSError:
            names = []
        live = {self._name: self.fixed} if self._name else {}
        for n in names:
            if n != self._name and (fixed := _held(self.directory / n)) is not None:
                live[n] = fixed
        return dict(sorted(live.items()))

    def threads(self) -> int:
        """This process's share of the CPUs now; all of them if it is not registered."""
        if self._fd is None:
            return self.cpus
        live = self.live_members()
        sharers = [n for n, f in live.items() if not f or n == self._name]
        left = self.cpus - sum(f for n, f in live.items() if f and n != self._name)
        return fair_share(max(1, left), len(sharers), sharers.index(self._name))


def _held(path: Path) -> int | None:
    """The fixed thread count a live registration declared (0: it shares), or None when
    no process holds `path`'s lock any more (the stale file is removed)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None  # removed meanwhile
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 16, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else 0
    except OSError:
        return None
    else:
        try:
            os.unlink(path)  # its process is gone; the lock we hold dies with the close
        except OSError:
            pass
        return None
    finally:
        os.close(fd)


_PROCESS_SHARE: CpuShare | None = None
_PROCESS_LOCK = threading.Lock()


def process_share(fixed: int | None = None) -> CpuShare:
    """The one registration of this process, shared by all its models (they run in turn);
    `fixed`: a model of this process runs that many threads whatever the share.

    A forked child gets its own: the parent's lock is not its liveness."""
    global _PROCESS_SHARE
    with _PROCESS_LOCK:
        share = _PROCESS_SHARE
        if share is None or share.pid != os.getpid():
            share = _PROCESS_SHARE = CpuShare()
        share.join(fixed)
        return share
