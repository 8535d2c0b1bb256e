"""`medcompile serve PROGRAM.json [...] --port 8000`: serve compiled programs over HTTP.

Programs come only from compiled JSON files (`program.io.load`: validated data, never
code), are named by their `name` field, and are all checked before the port opens, so
a bad file stops start-up with one clear line and exit code 2.

Models: each program runs on the model it was compiled for, unless the model options
say otherwise (`--lm`, `--api-base`, `--mode`, `--cache`: the same options as every
command). `--lm sim` serves an offline simulated model, for trying the API.
"""
from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from ..argtypes import positive_float, positive_int
from ..model_args import Models, add_model_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve compiled programs over HTTP (FastAPI + uvicorn)", description=__doc__)
    p.add_argument("programs", nargs="+", metavar="PROGRAM.json", help="compiled program files")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (loopback: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free port, printed at start-up)")
    p.add_argument("--timeout", type=positive_float, default=120.0, help="seconds per request before 504")
    p.add_argument("--queue-timeout", type=positive_float, default=30.0, help="seconds queued for a slot before 503")
    p.add_argument("--max-batch", type=positive_int, default=64, help="questions per batch request")
    p.add_argument("--max-body-bytes", type=positive_int, default=1_000_000, help="request body size limit")
    p.add_argument("--access-log", action="store_true", help="log every request")
    add_model_args(p, default_lm=None, concurrency_flags=("--concurrency", "--max-concurrency"),
                   concurrency_dest="max_concurrency", concurrency_default=4,
                   concurrency_help="program runs at once; requests beyond wait in a FIFO queue")
    p.set_defaults(func=main)


def load_programs(paths: list[str]) -> dict[str, Any]:
    """name -> Program, from JSON files only; duplicate names are an error."""
    from ...program.io import ProgramFileError, load

    programs: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for path in paths:
        if Path(path).suffix.lower() != ".json":
            raise ProgramFileError(f"{path}: serve only loads compiled program .json files "
                                   "(compile a .py or ready-made program with 'medcompile optimize' first)")
        program = load(path)
        if program.name in programs:
            raise ProgramFileError(f"{path} and {origin[program.name]} both hold a program named "
                                   f"{program.name!r}; program names must be unique on one server")
        programs[program.name] = program
        origin[program.name] = path
    return programs


def bind(host: str, port: int) -> socket.socket:
    """Bind before start-up so 'port in use' is one clear error, and port 0 works."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def build_app(args: argparse.Namespace, programs: dict[str, Any]) -> Any:
    """The app `serve` runs, from its options (also what tests drive in-process)."""
    from ...serve import create_app

    # Programs on the same model share one stack: one cache and one concurrency limit.
    return create_app(programs, Models(args), max_concurrency=args.max_concurrency, timeout_s=args.timeout,
                      queue_timeout_s=args.queue_timeout, max_body_bytes=args.max_body_bytes,
                      max_batch=args.max_batch)


def main(args: argparse.Namespace) -> int:
    import uvicorn

    from ...lm.base import LMConfigError
    from ..errors import fail

    programs = load_programs(args.programs)
    try:
        app = build_app(args, programs)
    except LMConfigError as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - any start-up failure is one line, exit 2
        fail(f"cannot start: {type(exc).__name__}: {exc}")
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        fail(str(exc))
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(app, log_level="info", access_log=args.access_log, lifespan="on",
                            timeout_graceful_shutdown=int(args.timeout) + 5)
    server = uvicorn.Server(config)
    names = ", ".join(sorted(programs))
    print(f"medcompile serve: {len(programs)} program(s) [{names}] on http://{host}:{port} "
          f"(docs: http://{host}:{port}/docs)", flush=True)
    # uvicorn turns SIGTERM/SIGINT into a graceful shutdown: stop accepting, let in-flight
    # requests finish, then run the app's lifespan exit (which drains the thread pool).
    # After that it re-raises the signal, so SIGTERM ends the process the usual way.
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    if app.state.limiter.busy():
        # A hung backend left a worker thread running: exit anyway instead of hanging.
        logging.getLogger("medcompile.serve").warning("exiting with %d stuck program run(s)",
                                                      app.state.limiter.busy())
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
