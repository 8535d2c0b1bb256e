"""A fair share of this machine's CPUs for every call to an in-process model.

ggml's worker threads meet at a spinning barrier after every operation. When processes
together run more llama threads than there are CPUs, a descheduled thread stalls all
its peers: a real-model test that takes 77 s alone took over 12 minutes beside the demo,
each with a thread per CPU. So a call registers here while it runs, counts the calls
running at that moment and takes its share: a call with a fixed thread count
($MEDCOMPILE_LLAMA_THREADS, `n_threads=`, or a llama.cpp server a benchmark started)
declares it and keeps it; the others split what is left evenly (the remainder to the
earliest registered). Together they never ask for more CPUs than there are, unless more
calls run than there are CPUs (one thread each). A process that merely has a model
loaded (an idle server, a test session) takes nothing from the others.

A registration is a file in a per-user directory whose call holds an exclusive `flock`
on it, so a crashed or killed process leaves nothing that counts: the next count finds
its file unlocked and removes it. Files are created under a hidden name and renamed
once locked, so a half-made registration is never mistaken for a dead one. Thread counts
change no output bits on this build (checked from 1 to 4 threads; the real-model test
`test_a_model_follows_the_cpu_share_and_threads_do_not_change_answers` keeps checking),
so a reply does not depend on what else the machine runs.
"""
from __future__ import annotations

import fcntl
import itertools
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SHARE_DIR_ENV = "MEDCOMPILE_CPU_SHARE_DIR"
_SERIAL = itertools.count()


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def default_share_dir() -> Path:
    """Per user, so one user's processes share; $MEDCOMPILE_CPU_SHARE_DIR overrides."""
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
    """The share directory of this machine (for this user) and how many CPUs it splits."""

    def __init__(self, directory: Path | None = None, cpus: int | None = None) -> None:
        self.directory = directory or default_share_dir()
        self.cpus = cpus or usable_cpus()

    @contextmanager
    def running(self, fixed: int | None = None) -> Iterator[Registration]:
        """Registered for the duration of the block; `.threads()` is the share now."""
        reg = Registration(self, fixed)
        try:
            yield reg
        finally:
            reg.close()

    def live(self) -> dict[str, int]:
        """Running registrations, earliest first, each with its fixed count (0: shares)."""
        try:
            names = sorted(n for n in os.listdir(self.directory) if not n.startswith("."))
        except OSError:
            return {}
        found = ((n, _held(self.directory / n)) for n in names)
        return {n: fixed for n, fixed in found if fixed is not None}

    def threads_now(self) -> int:
        """What a new sharing call would get at this moment (it would be the latest)."""
        return self.share_of(self.live(), "~")  # "~" sorts after every registration name

    def share_of(self, live: dict[str, int], name: str) -> int:
        """The threads of sharing registration `name` among `live` (it need not be listed):
        an even split of what the fixed counts leave, the remainder to the earliest."""
        sharers = sorted({n for n, fixed in live.items() if not fixed} | {name})
        left = self.cpus - sum(fixed for n, fixed in live.items() if n != name)
        return fair_share(max(1, left), len(sharers), sharers.index(name))


class Registration:
    """One running call's claim; without a usable directory it acts as if alone."""

    def __init__(self, share: CpuShare, fixed: int | None) -> None:
        self.share, self.fixed = share, fixed or 0
        self.name, self._fd = "", -1
        try:
            share.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            if share.directory.stat().st_uid != os.getuid():
                return  # someone else's directory: do not trust its files
            name = f"{time.time_ns():020d}-{os.getpid()}-{next(_SERIAL)}"
            hidden = share.directory / f".{name}"
            fd = os.open(hidden, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.write(fd, str(self.fixed).encode() if self.fixed else b"")
                os.rename(hidden, share.directory / name)
            except OSError:
                os.close(fd)
                hidden.unlink(missing_ok=True)
                raise
        except OSError:
            return  # e.g. a read-only temp dir: run as if alone
        self.name, self._fd = name, fd

    def threads(self) -> int:
        """The fixed count if declared, else this call's share of what is left now."""
        if self.fixed:
            return self.fixed
        if self._fd < 0:
            return self.share.cpus
        return self.share.share_of(self.share.live(), self.name)

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            os.unlink(self.share.directory / self.name)
        except OSError:
            pass
        os.close(self._fd)  # releases the lock
        self._fd = -1


def _held(path: Path) -> int | None:
    """The fixed thread count a running registration declared (0: it shares), or None
    when no process holds `path`'s lock any more (the stale file is then removed)."""
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
