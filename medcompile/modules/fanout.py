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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def fan_out(ctx: Any, tasks: Sequence[Callable[[], T]]) -> list[T]:
    """Run `tasks` (independent calls of one question) and return their results in order.

    Sequential when the context allows one call at a time; otherwise on up to
    `ctx.parallel_calls` threads (the LM stack's limiter still bounds calls in flight
    across all questions). Each task runs in a copy of the caller's context, so
    per-question accounting kept in context variables follows it. The first failure (in
    task order) is raised after every task has finished: no call outlives the question.
    """
    width = min(int(getattr(ctx, "parallel_calls", 1) or 1), len(tasks))
    if width <= 1:
        return [t() for t in tasks]
    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="medcompile-call") as pool:
        futures = [pool.submit(contextvars.copy_context().run, t) for t in tasks]
        return [f.result() for f in futures]


def parallel_capacity(lm: Any) -> int:
    """How many calls the LM stack takes at once: the smallest `max_concurrency` along its
    `.inner` chain (a concurrency limiter), or 1 when no layer states one (run in order)."""
    cap: int | None = None
    layer, depth = lm, 0
    while layer is not None and depth < 32:
        c = getattr(layer, "max_concurrency", None)
        if isinstance(c, int) and not isinstance(c, bool) and c >= 1:
            cap = c if cap is None else min(cap, c)
        layer, depth = getattr(layer, "inner", None), depth + 1
    return cap or 1
