"""One benchmark run's shared state: the deadline, the llama_cpp.server process, the
counting proxy and the results, saved after every step so a stop keeps what was measured."""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import free_port, machine, save_json, wait_http
from _proxy import CountingProxy


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Run:
    """Holds the shared state of one benchmark run (deadline, proxy, results)."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.t0 = time.monotonic()
        self.deadline = self.t0 + args.deadline_min * 60
        self.tmp = Path(tempfile.mkdtemp(prefix="bench_vs_dspy_"))
        self.results: dict[str, Any] = {"config": vars(args).copy(), "machine": machine(), "compile": {},
                                        "test": {}, "comparisons": [], "chat_check": {}, "notes": []}
        self.server: subprocess.Popen | None = None
        self.cpu_claim: Any = None  # the server's threads, declared to medcompile's CPU share
        self.proxy: CountingProxy | None = None
        # result file names: a --full run (several sittings) keeps its own until it is complete
        self.stem = "vs_dspy_quick" if args.quick else ("vs_dspy_full" if getattr(args, "full", False) else "vs_dspy")

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        self.results["elapsed_s"] = round(time.monotonic() - self.t0, 1)
        save_json(f"{self.stem}.json", self.results)


def start_server(run: Run) -> str:
    """llama.cpp's own OpenAI-compatible server, which both sides call. Its threads are
    declared to medcompile's CPU share (`medcompile.lm.cpu_share`) for as long as this
    process lives, so calls to local models elsewhere leave them free."""
    from medcompile.lm.cpu_share import CpuShare, Registration
    from medcompile.lm.local_model import default_gguf_path

    gguf = default_gguf_path()
    run.cpu_claim = Registration(CpuShare(), fixed=run.args.threads)
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1", "--port", str(port),
           "--n_ctx", str(run.args.n_ctx), "--n_threads", str(run.args.threads),
           "--n_threads_batch", str(run.args.threads), "--verbose", "False"]
    log("starting " + " ".join(cmd[1:]))
    logf = open(run.tmp / "llama_server.log", "wb")  # noqa: SIM115 - closed with the process
    run.server = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{port}/v1/models", timeout_s=180)
    run.results["server"] = {"cmd": " ".join(cmd[1:]).replace(str(gguf), "<gguf>"), "gguf": gguf.name}
    return f"http://127.0.0.1:{port}"
