"""A private PostgreSQL server on loopback for the multi-worker tests.

Started from Debian's postgresql binaries in a temporary directory (as the
'postgres' user when the tests run as root), stopped at the end of the session.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

BIN_DIRS = [Path("/usr/lib/postgresql") / v / "bin" for v in ("17", "16", "15", "14", "13")]


def find_bin(name: str) -> str | None:
    for d in BIN_DIRS:
        if (d / name).exists():
            return str(d / name)
    return shutil.which(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivatePostgres:
    def __init__(self, root: Path):
        self.root = root
        self.data = root / "pgdata"
        self.port = free_port()
        self.as_root = os.geteuid() == 0

    def _run(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        if self.as_root:
            args = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{a}'" for a in args)]
        return subprocess.run(args, check=True, capture_output=True, text=True, timeout=120, **kw)

    def start(self) -> str:
        initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
        if not initdb or not pg_ctl:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found")
        self.root.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
            os.chmod(self.root, 0o755)
        (self.root / "pw").write_text("secret\n")
        if self.as_root:
            shutil.chown(self.root / "pw", "postgres", "postgres")
        self._run([initdb, "-D", str(self.data), "-U", "medcompile", "--auth=md5", f"--pwfile={self.root / 'pw'}"])
        self._run([pg_ctl, "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-o",
                   f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1", "start"])
        url = f"postgresql://medcompile:secret@127.0.0.1:{self.port}/postgres"
        t_end = time.time() + 30
        import psycopg2

        while True:
            try:
                psycopg2.connect(url).close()
                return url
            except Exception:
                if time.time() > t_end:
                    raise
                time.sleep(0.3)

    def stop(self) -> None:
        pg_ctl = find_bin("pg_ctl")
        if pg_ctl and self.data.exists():
            try:
                self._run([pg_ctl, "-D", str(self.data), "-m", "fast", "stop"])
            except subprocess.CalledProcessError:
                pass
