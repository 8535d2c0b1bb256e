from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from medcompile.lm.base import LMError, LMRequest, LMResponse
from medcompile.lm.cache import CACHE_FILENAME, CachedLM, DiskCache, default_cache_dir
from medcompile.lm.faults import NON_UTF8_TEXT
from medcompile.lm.scripted import ScriptedLM

REPO = Path(__file__).resolve().parents[2]


def req(prompt: str = "Q?", **kw: object) -> LMRequest:
    return LMRequest(model="scripted", mode="text", prompt=prompt, **kw)  # type: ignore[arg-type]


def test_put_get_roundtrip_marks_cached(tmp_path: Path) -> None:
    c = DiskCache(tmp_path / "c.sqlite")
    assert c.get("k") is None and len(c) == 0
    c.put("k", LMResponse(text="Answer: B", prompt_tokens=7, completion_tokens=2, cost=0.5, latency_s=1.5))
    got = c.get("k")
    assert got == LMResponse(text="Answer: B", prompt_tokens=7, completion_tokens=2, cost=0.5,
                             cached=True, latency_s=1.5)
    assert len(c) == 1 and "k" in c and "other" not in c


def test_persists_across_instances_and_directory_path(tmp_path: Path) -> None:
    DiskCache(tmp_path).put("k", LMResponse(text="x"))
    assert (tmp_path / CACHE_FILENAME).exists()
    assert DiskCache(tmp_path / CACHE_FILENAME).get("k").text == "x"  # type: ignore[union-attr]


def test_lone_surrogates_roundtrip(tmp_path: Path) -> None:
    c = DiskCache(tmp_path)
    c.put("k", LMResponse(text=NON_UTF8_TEXT))
    assert c.get("k").text == NON_UTF8_TEXT  # type: ignore[union-attr]


def test_wal_mode(tmp_path: Path) -> None:
    c = DiskCache(tmp_path)
    assert c._conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_default_cache_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDCOMPILE_CACHE_DIR", str(tmp_path / "mc"))
    assert default_cache_dir() == tmp_path / "mc"
    monkeypatch.delenv("MEDCOMPILE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert default_cache_dir() == tmp_path / "xdg" / "medcompile"


def test_cached_lm_serves_second_call_from_disk(tmp_path: Path) -> None:
    inner = ScriptedLM(lambda r: "Answer: " + (r.prompt or "")[-1])
    lm = CachedLM(inner, DiskCache(tmp_path))
    a = lm.complete(req("Q1 A"))
    b = lm.complete(req("Q1 A"))
    assert a.text == b.text == "Answer: A"
    assert (a.cached, b.cached) == (False, True)
    assert inner.calls == 1
    # A new process (new DiskCache object) also hits.
    lm2 = CachedLM(inner, DiskCache(tmp_path))
    assert lm2.complete(req("Q1 A")).cached and inner.calls == 1


def test_cache_key_covers_sampling_settings(tmp_path: Path) -> None:
    inner = ScriptedLM(lambda r: f"{r.temperature}:{r.seed}")
    lm = CachedLM(inner, DiskCache(tmp_path))
    outs = {lm.complete(req(temperature=t, seed=s)).text for t in (0.0, 1.0) for s in (0, 1)}
    assert outs == {"0.0:0", "0.0:1", "1.0:0", "1.0:1"} and inner.calls == 4


def test_hit_keeps_cost_but_spends_nothing(tmp_path: Path) -> None:
    from medcompile.lm.meter import MeteredLM

    inner = ScriptedLM(lambda r: LMResponse(text="x", prompt_tokens=3, completion_tokens=1, cost=0.25))
    lm = MeteredLM(CachedLM(inner, DiskCache(tmp_path)))
    assert lm.complete(req()).cost == 0.25
    hit = lm.complete(req())
    assert hit.cached and hit.cost == 0.25 and hit.prompt_tokens == 3 and inner.calls == 1
    u = lm.snapshot()
    assert u.cost == 0.5 and u.live_cost == 0.25


def test_failed_call_is_not_cached(tmp_path: Path) -> None:
    outcomes = iter([LMError("boom", retryable=True), "Answer: C"])

    def fn(r: LMRequest) -> str:
        o = next(outcomes)
        if isinstance(o, Exception):
            raise o
        return o

    inner = ScriptedLM(fn)
    cache = DiskCache(tmp_path)
    lm = CachedLM(inner, cache)
    with pytest.raises(LMError):
        lm.complete(req())
    assert len(cache) == 0
    assert lm.complete(req()).text == "Answer: C" and inner.calls == 2


def test_concurrent_identical_requests_make_one_call(tmp_path: Path) -> None:
    inner = ScriptedLM(lambda r: "same", latency=0.2)
    lm = CachedLM(inner, DiskCache(tmp_path))
    out: list[str] = []
    ts = [threading.Thread(target=lambda: out.append(lm.complete(req()).text)) for _ in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert out == ["same"] * 6 and inner.calls == 1


def test_many_threads_share_one_cache(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(50):
                cache.put(f"{t}-{i}", LMResponse(text=f"{t}/{i}"))
                assert cache.get(f"{t}-{i}").text == f"{t}/{i}"  # type: ignore[union-attr]
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == [] and len(cache) == 400


WRITER = r"""
import sys
from medcompile.lm.base import LMResponse
from medcompile.lm.cache import DiskCache
path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = DiskCache(path)
for i in range(n if n > 0 else 10**9):
    c.put(f"{tag}-{i}", LMResponse(text=f"{tag}-{i}:" + "x" * 20000, prompt_tokens=i))
    if i == 0:
        print("started", flush=True)
"""


def _writer(path: Path, tag: str, n: int) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), tag, str(n)],
                            env=env, stdout=subprocess.PIPE, text=True)


def test_several_processes_write_one_file(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    DiskCache(db)
    procs = [_writer(db, f"p{k}", 60) for k in range(3)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    c = DiskCache(db)
    assert len(c) == 180
    assert c.get("p2-59").prompt_tokens == 59  # type: ignore[union-attr]


def test_sigkill_mid_write_leaves_a_valid_cache(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    p = _writer(db, "k", 0)  # writes until killed
    assert p.stdout is not None and p.stdout.readline().strip() == "started"
    deadline = time.monotonic() + 60
    while len(DiskCache(db)) < 50 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = conn.execute("SELECT key, value FROM responses").fetchall()
    conn.close()
    assert len(rows) >= 50
    for key, value in rows:  # every row is complete and belongs to its key
        d = json.loads(value)
        assert d["text"] == f"{key}:" + "x" * 20000
        assert d["prompt_tokens"] == int(key.split("-")[1])
    c = DiskCache(db)  # and the cache opens and keeps working after the crash
    c.put("after", LMResponse(text="ok"))
    assert c.get("after").text == "ok" and len(c) == len(rows) + 1  # type: ignore[union-attr]


def test_key_uses_the_answering_model(tmp_path: Path) -> None:
    inner = ScriptedLM(lambda r: r.model, model="real-model")
    lm = CachedLM(inner, DiskCache(tmp_path))
    assert lm.complete(req()).text == "real-model"  # req() says model="scripted"
    other = CachedLM(ScriptedLM(lambda r: "other", model="other-model"), DiskCache(tmp_path))
    assert other.complete(req()).text == "other"  # no cross-model hit
