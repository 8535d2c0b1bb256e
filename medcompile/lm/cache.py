"""On-disk response cache, so that re-running a compile costs nothing.

SQLite in WAL mode: every write is one transaction, so a process killed mid-write
leaves the file consistent (the half-done transaction is rolled back on next open),
and several threads and processes can read and write the same file at once.
Only `LMResponse` fields are stored; requests carry no API keys, so neither does this.
"""
from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from medcompile.lm.base import LM, LMRequest, LMResponse
from medcompile.lm.wrapper import LMWrapper

CACHE_FILENAME = "lm-cache.sqlite"
_SCHEMA = """CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created REAL NOT NULL
)"""


def default_cache_dir() -> Path:
    """$MEDCOMPILE_CACHE_DIR, else the platform's per-user cache dir (~/.cache/medcompile)."""
    env = os.environ.get("MEDCOMPILE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return user_cache_dir()


def user_cache_dir() -> Path:
    """The platform's per-user cache dir for medcompile, whatever the environment says."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "medcompile"


def _encode(resp: LMResponse) -> str:
    # ensure_ascii keeps lone surrogates (from undecodable model bytes) storable.
    d = {"text": resp.text, "prompt_tokens": resp.prompt_tokens, "completion_tokens": resp.completion_tokens,
         "cost": resp.cost, "latency_s": resp.latency_s}
    if resp.choice_logprobs:
        d["choice_logprobs"] = [[k, lp] for k, lp in resp.choice_logprobs]
    return json.dumps(d, ensure_ascii=True)


def _decode(value: str) -> LMResponse:
    d = json.loads(value)
    return LMResponse(text=d["text"], prompt_tokens=int(d.get("prompt_tokens", 0)),
                      completion_tokens=int(d.get("completion_tokens", 0)),
                      cost=float(d.get("cost", 0.0)), cached=True,
                      latency_s=float(d.get("latency_s", 0.0)),
                      choice_logprobs=tuple((str(k), float(lp)) for k, lp in d.get("choice_logprobs", ())))


class DiskCache:
    """A key -> LMResponse map in one SQLite file, safe across threads and processes."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, timeout_s: float = 60.0) -> None:
        p = Path(path) if path is not None else default_cache_dir()
        if p.suffix == "" or p.is_dir():  # a directory was given
            p = p / CACHE_FILENAME
        p.parent.mkdir(parents=True, exist_ok=True)
        self.path = p
        self._timeout_s = timeout_s
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._conn()  # create the schema now, so errors (bad path, corrupt file) surface early

    def _conn(self) -> sqlite3.Connection:
        """One connection per thread (and per process: a forked child opens its own)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        conn = sqlite3.connect(self.path, timeout=self._timeout_s, isolation_level=None,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={int(self._timeout_s * 1000)}")
        self._retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL"))
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable against process kill
        self._retry_locked(lambda: conn.execute(_SCHEMA))
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._lock:
            self._all.append(conn)
        return conn

    def _retry_locked(self, fn):  # type: ignore[no-untyped-def]
        """Switching to WAL can fail with 'locked' while another process opens the file."""
        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def get(self, key: str) -> LMResponse | None:
        row = self._conn().execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else _decode(row[0])

    def put(self, key: str, resp: LMResponse) -> None:
        conn = self._conn()
        value = _encode(resp)

        def write() -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)",
                             (key, value, time.time()))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        self._retry_locked(write)

    def __contains__(self, key: str) -> bool:
        return self._conn().execute("SELECT 1 FROM responses WHERE key = ?", (key,)).fetchone() is not None

    def __len__(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for c in conns:
            try:
                c.close()
            except sqlite3.Error:
                pass
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"DiskCache({str(self.path)!r})"


class CachedLM(LMWrapper):
    """Serve a request from the cache, else ask `inner` and remember the answer.

    A failed call (an exception) is never stored. A cache hit reports the tokens and
    cost the call had (so a compile's logical cost is the same cold or warm; the money
    actually spent is `Usage.live_cost`) and its lookup time as latency.
    Concurrent identical requests in one process make a single inner call.
    """

    def __init__(self, inner: LM, cache: DiskCache) -> None:
        super().__init__(inner)
        self.cache = cache
        self._inflight: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _hit(self, key: str, t0: float) -> LMResponse | None:
        hit = self.cache.get(key)
        if hit is None:
            return None
        return replace(hit, latency_s=time.perf_counter() - t0)

    def complete(self, request: LMRequest) -> LMResponse:
        t0 = time.perf_counter()
        if request.model != self.model:  # key on the model that actually answers
            request = replace(request, model=self.model)
        key = request.cache_key()
        hit = self._hit(key, t0)
        if hit is not None:
            return hit
        with self._guard:
            lock = self._inflight.setdefault(key, threading.Lock())
        try:
            with lock:
                hit = self._hit(key, t0)  # another thread may have just filled it
                if hit is not None:
                    return hit
                resp = self.inner.complete(request)
                self.cache.put(key, resp)
                return replace(resp, cached=False)
        finally:
            with self._guard:
                if self._inflight.get(key) is lock and not lock.locked():
                    del self._inflight[key]

    def describe(self) -> dict:
        return {"cache": True}
