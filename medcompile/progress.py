"""Progress for long work: a rich bar with running model calls and cost.

Bars go to stderr so that `medcompile run ... > answers.jsonl` stays clean; `quiet`
turns them off for scripts. Each piece of work updates one bar with its usage.
"""
from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .lm.base import Usage

_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


class Bar:
    def __init__(self, progress: Progress | None, task: int | None):
        self._p = progress
        self._task = task
        self.usage = Usage()
        self._lock = threading.Lock()

    def advance(self, usage: Usage | None = None, n: int = 1) -> None:
        with self._lock:
            if usage is not None:
                self.usage += usage
            if self._p is not None and self._task is not None:
                u = self.usage
                self._p.update(self._task, advance=n,
                               stats=f"calls {u.calls} (live {u.live_calls}) tok {u.prompt_tokens + u.completion_tokens}"
                                     + (f" ${u.cost:.4f}" if u.cost else ""))

    def describe(self, text: str) -> None:
        if self._p is not None and self._task is not None:
            self._p.update(self._task, description=text)


@contextmanager
def progress_bar(description: str, total: int | None, *, quiet: bool = False) -> Iterator[Bar]:
    if quiet:
        yield Bar(None, None)
        return
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[stats]}"),
                  console=_console) as p:
        task = p.add_task(description, total=total, stats="")
        yield Bar(p, task)


def log(message: str, *, quiet: bool = False) -> None:
    if not quiet:
        _console.print(message, highlight=False, soft_wrap=True)
