"""Start `medcompile serve` as a real subprocess on a free loopback port."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from medcompile import Predict, Program

LOCAL_LM = {"model": "local/gemma3-270m-q4_k_m", "mode": "text", "spec": "local"}
_URL = re.compile(r"on (http://127\.0\.0\.1:\d+)")


def medcompile_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "medcompile.cli.main", *args]


class Server:
    """A running `medcompile serve --port 0`; `url` is read from its start-up line."""

    def __init__(self, programs: list[Path], *extra: str, env: dict[str, str] | None = None,
                 log: Path, ready_timeout: float = 60.0) -> None:
        self.log = log
        self._log_f = open(log, "wb")
        self.proc = subprocess.Popen(medcompile_cmd("serve", *map(str, programs), "--port", "0", *extra),
                                     stdout=subprocess.PIPE, stderr=self._log_f, env={**os.environ, **(env or {})})
        self.url = self._read_url(ready_timeout)
        self._wait_healthy(ready_timeout)

    def _read_url(self, timeout: float) -> str:
        found: list[str] = []

        def reader() -> None:
            assert self.proc.stdout is not None
            for raw in self.proc.stdout:
                m = _URL.search(raw.decode(errors="replace"))
                if m:
                    found.append(m.group(1))
                    return

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(timeout)
        if not found:
            self.stop()
            raise RuntimeError(f"server did not start; log:\n{self.log.read_text(errors='replace')}")
        return found[0]

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server never became healthy")

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_f.close()
        return self.proc.returncode


def save_zero_shot(path: Path, name: str = "zs", lm: dict | None = None) -> Path:
    Program(Predict(tune=False), name=name, lm=lm or LOCAL_LM).save(str(path))
    return path


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator:
    servers: list[Server] = []

    def start(programs: list[Path], *extra: str, env: dict[str, str] | None = None) -> Server:
        s = Server(programs, *extra, env=env, log=tmp_path / f"server{len(servers)}.log")
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()
