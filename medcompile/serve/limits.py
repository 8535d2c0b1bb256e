"""Back-pressure: how much model work the server takes on at once.

Programs are blocking code (a model call takes seconds), so they run in a thread pool
sized to `max_concurrency`. A slot is held until the *thread* finishes, not until the
HTTP request gives up: a request that timed out (504) still occupies its slot while
its model call drains, so timeouts can never pile more work onto the model backend
than it was sized for. Requests beyond the limit wait in FIFO order and are refused
with 503 + Retry-After once they have waited `queue_timeout_s`.
"""
from __future__ import annotations

import asyncio
import collections
import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar

T = TypeVar("T")


class Overloaded(Exception):
    """No work slot became free within the queue bound."""

    def __init__(self, waited_s: float, retry_after_s: int) -> None:
        super().__init__(f"server busy: no model slot free after waiting {waited_s:.1f} s")
        self.retry_after_s = retry_after_s


@dataclass(eq=False)
class _Waiter:
    loop: asyncio.AbstractEventLoop
    fut: asyncio.Future[None]
    granted: bool = False
    abandoned: bool = False


class WorkLimiter:
    """A FIFO pool of `max_concurrency` work slots in front of a same-sized thread pool.

    Slot state is guarded by a lock, because slots come back from worker threads;
    a freed slot goes straight to the longest waiter (woken on its own event loop).
    """

    def __init__(self, max_concurrency: int, queue_timeout_s: float) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        self.max_concurrency = max_concurrency
        self.queue_timeout_s = queue_timeout_s
        self.executor = ThreadPoolExecutor(max_concurrency, thread_name_prefix="medcompile-serve")
        self.running = 0
        self.completed = 0
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._avg_run_s = 1.0
        self._lock = threading.Lock()
        self._pending: set[Future[Any]] = set()

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiters)

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue ahead, at the recent pace."""
        rounds = self.waiting / self.max_concurrency + 1
        return int(min(60, max(1, math.ceil(self._avg_run_s * rounds))))

    async def acquire(self, timeout: float | None) -> None:
        """Take a slot, waiting at most `timeout` seconds (None: no bound) -> Overloaded."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self.running < self.max_concurrency and not self._waiters:
                self.running += 1
                return
            w = _Waiter(loop, loop.create_future())
            self._waiters.append(w)
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.shield(w.fut), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
            with self._lock:
                granted = w.granted
                w.abandoned = True
                if not granted:
                    self._waiters.remove(w)
            if granted:
                self.release()  # the slot arrived as we gave up: pass it on
            if isinstance(exc, asyncio.TimeoutError):
                raise Overloaded(time.monotonic() - t0, self.retry_after()) from None
            raise

    def release(self) -> None:
        """Give a slot back (from any thread): to the longest waiter, else to the pool."""
        with self._lock:
            while self._waiters:
                w = self._waiters.popleft()
                if w.abandoned:
                    continue
                try:
                    w.loop.call_soon_threadsafe(_wake, w.fut)
                except RuntimeError:  # its event loop is gone: nobody to hand the slot to
                    continue
                w.granted = True
                return
            self.running -= 1

    async def run(self, fn: Callable[..., T], *args: Any, queue_timeout: float | None = None,
                  run_timeout: float) -> T:
        """Wait for a slot (Overloaded after `queue_timeout`), then run `fn(*args)` in the pool;
        asyncio.TimeoutError after `run_timeout`, while the thread keeps its slot until done."""
        await self.acquire(self.queue_timeout_s if queue_timeout is None else queue_timeout)
        return await self.run_acquired(fn, *args, run_timeout=run_timeout)

    async def run_acquired(self, fn: Callable[..., T], *args: Any, run_timeout: float) -> T:
        """Run with a slot already held; the slot is released when the thread finishes."""
        t0 = time.monotonic()
        if run_timeout <= 0:
            self.release()
            raise asyncio.TimeoutError
        try:
            cf: Future[T] = self.executor.submit(fn, *args)
        except RuntimeError:  # pool shut down
            self.release()
            raise
        with self._lock:
            self._pending.add(cf)
        cf.add_done_callback(lambda f: self._done(f, time.monotonic() - t0))
        return await asyncio.wait_for(asyncio.wrap_future(cf), run_timeout)

    def _done(self, f: Future[Any], elapsed: float) -> None:
        with self._lock:
            self._pending.discard(f)
            self.completed += 1
            self._avg_run_s = 0.8 * self._avg_run_s + 0.2 * elapsed
        self.release()

    def busy(self) -> int:
        """Program runs still executing (including ones whose request already timed out)."""
        with self._lock:
            return len(self._pending)

    def shutdown(self, grace_s: float | None = None) -> bool:
        """Accept no more work and let running work finish, for at most `grace_s` seconds.
        Returns False if some run is still stuck (a hung backend) after the grace period."""
        with self._lock:
            pending = set(self._pending)
        done, not_done = wait(pending, timeout=grace_s)
        self.executor.shutdown(wait=not not_done, cancel_futures=True)
        return not not_done


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def gather_or_cancel(aws: list[Awaitable[T]]) -> list[T]:
    """asyncio.gather that cancels the siblings when one fails (a batch gives up as one)."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
