"""Progress for long work: a rich bar with running model calls and cost.

Bars go to stderr so that `medcompile run ... > answers.jsonl` stays clean; `quiet`
turns them off for scripts. Each piece of work updates one bar with its usage.

When stderr is not a terminal (a log file, CI, a service manager), a live bar cannot
redraw and rich would show it only when the work ends, so hours of evaluation would log
nothing. There the bar becomes plain lines instead: one at most every `LINE_EVERY_S`
seconds, and one when the work ends.
"""
from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .lm.base import Usage

_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
LINE_EVERY_S = 30.0


def _clock_text(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class _Lines:
    """Progress as plain, time-throttled lines, for output that is not a terminal."""

    def __init__(self, description: str, total: int | None, emit: Callable[[str], None],
                 every_s: float = LINE_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.description, self.total, self._emit, self._every, self._clock = description, total, emit, every_s, clock
        self.done = 0
        self._resumed = 0  # done before this run: counted in done/total, not in the speed
        self._start = clock()
        self._last: float | None = None
        self._shown = -1

    def resume(self, n: int) -> None:
        self.done += n
        self._resumed += n

    def update(self, n: int, stats: str, *, final: bool = False) -> None:
        self.done += n
        now = self._clock()
        if self._shown == self.done or not (final or self._last is None or now - self._last >= self._every):
            return
        self._last, self._shown = now, self.done
        elapsed = now - self._start
        of = f"/{self.total} ({100 * self.done / self.total:.0f}%)" if self.total else ""
        ran = self.done - self._resumed
        left = (f", ~{_clock_text(elapsed * (self.total - self.done) / ran)} left"
                if self.total and ran > 0 and self.done < self.total else "")
        self._emit(f"{self.description}: {self.done}{of}, {_clock_text(elapsed)} elapsed{left}"
                   + (f"; {stats}" if stats else ""))


class Bar:
    def __init__(self, progress: Progress | None, task: int | None, lines: _Lines | None = None):
        self._p = progress
        self._task = task
        self._lines = lines
        self.usage = Usage()
        self._lock = threading.Lock()

    def _stats(self) -> str:
        u = self.usage
        return (f"calls {u.calls} (live {u.live_calls}) tok {u.prompt_tokens + u.completion_tokens}"
                + (f" ${u.cost:.4f}" if u.cost else ""))

    def advance(self, usage: Usage | None = None, n: int = 1) -> None:
        with self._lock:
            if usage is not None:
                self.usage += usage
            if self._p is not None and self._task is not None:
                self._p.update(self._task, advance=n, stats=self._stats())
            if self._lines is not None:
                self._lines.update(n, self._stats())

    def resume(self, n: int) -> None:
        """Count n units finished before this run (a resumed checkpoint): they show as done
        but do not speed up the estimate of the time left."""
        with self._lock:
            if self._p is not None and self._task is not None:
                self._p.reset(self._task, completed=n)  # also clears rich's speed samples
            if self._lines is not None:
                self._lines.resume(n)

    def describe(self, text: str) -> None:
        if self._p is not None and self._task is not None:
            self._p.update(self._task, description=text)
        if self._lines is not None:
            self._lines.description = text

    def finish(self) -> None:
        """The closing line of a plain-lines bar (a live bar shows its own end)."""
        with self._lock:
            if self._lines is not None and self._lines.done:
                self._lines.update(0, self._stats(), final=True)


@contextmanager
def progress_bar(description: str, total: int | None, *, quiet: bool = False) -> Iterator[Bar]:
    if quiet:
        yield Bar(None, None)
        return
    if not _console.is_terminal:
        bar = Bar(None, None, _Lines(description, total, log))
        yield bar
        bar.finish()
        return
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[stats]}"),
                  console=_console) as p:
        task = p.add_task(description, total=total, stats="")
        yield Bar(p, task)


def log(message: str, *, quiet: bool = False) -> None:
    if not quiet:
        _console.print(message, highlight=False, soft_wrap=True)
