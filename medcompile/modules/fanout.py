"""A question's independent model calls, side by side when the model can take them.

A remote model serves many calls at once, so a 5-shuffle ensemble need not cost five
call latencies. The in-process model serves one call at a time and reuses the KV cache
of the previous prompt's prefix, so there the calls stay in their written order (shared
parts first). Modules never ask which backend they run on: the run context says how many
calls may be in flight (`RunContext.parallel_calls`, from the LM stack's concurrency
limit, see `parallel_capacity`). Results come back in input order and every sampled
call's seed comes from its path, so answers never depend on thread timing.
"""
from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
POOL_THREADS = 64
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _shared_pool() -> ThreadPoolExecutor:
    """One process-wide pool: no thread start-up per question. A caller never only waits on it
    (see `fan_out`), so nested fan-outs cannot starve it."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=POOL_THREADS, thread_name_prefix="medcompile-call")
        return _pool


def fan_out(ctx: Any, tasks: Sequence[Callable[[], T]]) -> list[T]:
    """Run `tasks` (independent calls of one question) and return their results in order.

    Sequential when the context allows one call at a time; otherwise on up to
    `ctx.parallel_calls` threads (the LM stack's limiter still bounds calls in flight
    across all questions). Each task runs in a copy of the caller's context, so
    per-question accounting kept in context variables follows it. The first failure (in
    task order) is raised after every task has finished: no call outlives the question.

    The caller runs the first task itself and takes back any task the shared pool has not
    started yet (cancel, then run inline), so a fan-out always finishes even when every
    pool thread is busy with other questions' fan-outs.
    """
    width = min(int(getattr(ctx, "parallel_calls", 1) or 1), len(tasks))
    if width <= 1:
        return [t() for t in tasks]
    pool = _shared_pool()
    results: list[Any] = [None] * len(tasks)
    errors: list[BaseException | None] = [None] * len(tasks)
    futures: dict[int, Future] = {i: pool.submit(contextvars.copy_context().run, t)
                                  for i, t in enumerate(tasks) if i > 0}

    def run_inline(i: int) -> None:
        try:
            results[i] = tasks[i]()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in task order
            errors[i] = exc

    run_inline(0)
    for i, fut in futures.items():
        if fut.cancel():
            run_inline(i)
            continue
        try:
            results[i] = fut.result()
        except BaseException as exc:  # noqa: BLE001
            errors[i] = exc
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
    return results


def parallel_capacity(lm: Any) -> int:
    """How many calls the LM stack takes at once: the smallest `max_concurrency` along its
    `.inner` chain (a concurrency limiter), or 1 when no layer states one (run in order).

    Also 1 when a layer counts a call budget (`max_calls`, e.g. a compile's BudgetedLM): a
    budget that runs out mid-question must always refuse the same call, which only a fixed
    call order guarantees (compiles are byte-reproducible)."""
    cap: int | None = None
    layer, depth = lm, 0
    while layer is not None and depth < 32:
        if isinstance(getattr(layer, "max_calls", None), int):
            return 1
        c = getattr(layer, "max_concurrency", None)
        if isinstance(c, int) and not isinstance(c, bool) and c >= 1:
            cap = c if cap is None else min(cap, c)
        layer, depth = getattr(layer, "inner", None), depth + 1
    return cap or 1
