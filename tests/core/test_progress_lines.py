"""Progress where stderr is not a terminal (log files, CI): plain lines as the work goes,
throttled by time, with a closing line, instead of nothing until the end."""
from __future__ import annotations

import re

from medcompile.lm.base import Usage
from medcompile.progress import Bar, _Lines, progress_bar


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _bar(total: int | None, every: float = 30.0) -> tuple[Bar, list[str], Clock]:
    out: list[str] = []
    clock = Clock()
    return Bar(None, None, _Lines("eval medqa", total, out.append, every_s=every, clock=clock)), out, clock


def test_lines_are_throttled_by_time_and_say_done_total_elapsed_and_time_left():
    bar, out, clock = _bar(100)
    clock.t += 10
    bar.advance(Usage(calls=3, cached_calls=1, prompt_tokens=40, completion_tokens=10))
    assert out == ["eval medqa: 1/100 (1%), 0:00:10 elapsed, ~0:16:30 left; calls 3 (live 2) tok 50"]
    for _ in range(5):  # within the interval: no new line
        clock.t += 5
        bar.advance(Usage(calls=1))
    assert len(out) == 1
    clock.t += 5
    bar.advance()  # 30 s after the first line
    assert len(out) == 2 and out[1].startswith("eval medqa: 7/100 (7%), 0:00:40 elapsed, ~0:08:51 left; calls 8 (live 7) tok 50")


def test_the_closing_line_shows_the_end_once_and_takes_the_latest_description():
    bar, out, clock = _bar(4)
    for _ in range(4):
        clock.t += 1
        bar.advance()
    bar.describe("eval medqa acc 50.0% (2/4)")
    bar.finish()
    assert out[0].startswith("eval medqa: 1/4 (25%)")
    assert out[-1] == "eval medqa acc 50.0% (2/4): 4/4 (100%), 0:00:04 elapsed; calls 0 (live 0) tok 0"
    bar.finish()
    assert len(out) == 2  # nothing new to say: no repeat


def test_unknown_total_and_nothing_done_print_no_fractions_and_no_closing_line():
    bar, out, clock = _bar(None)
    bar.finish()
    assert out == []
    clock.t += 2
    bar.advance(n=3)
    assert out == ["eval medqa: 3, 0:00:02 elapsed; calls 0 (live 0) tok 0"]


def test_progress_bar_writes_plain_lines_to_a_non_terminal_stderr(capfd):
    with progress_bar("search", 3) as bar:
        for _ in range(3):
            bar.advance(Usage(calls=2))
    err = capfd.readouterr().err
    assert re.search(r"^search: 1/3 \(33%\), 0:00:00 elapsed, ~0:00:00 left; calls 2 \(live 2\)", err, re.M), err
    assert re.search(r"^search: 3/3 \(100%\), .*calls 6 \(live 6\)", err, re.M), err
    assert "━" not in err  # no bar drawing characters in a log


def test_quiet_prints_nothing(capfd):
    with progress_bar("search", 3, quiet=True) as bar:
        bar.advance()
    assert capfd.readouterr().err == ""


def test_resumed_work_counts_as_done_but_not_toward_the_time_left():
    bar, out, clock = _bar(100)
    bar.resume(50)  # from a checkpoint: no time taken in this run
    clock.t += 20
    bar.advance()
    # 1 unit in 20 s this run: 49 left take ~16 min, not the 20 s that 51 units would suggest
    assert out == ["eval medqa: 51/100 (51%), 0:00:20 elapsed, ~0:16:20 left; calls 0 (live 0) tok 0"]


def test_a_live_bar_resumes_with_the_finished_count():
    from rich.progress import Progress

    with Progress(disable=True) as p:
        task = p.add_task("eval", total=10, stats="")
        bar = Bar(p, task)
        bar.resume(4)
        bar.advance()
        assert p.tasks[0].completed == 5
