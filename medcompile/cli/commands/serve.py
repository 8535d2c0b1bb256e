"""`medcompile serve PROGRAM.json [...] --port 8000`: serve compiled programs over HTTP.

Programs come only from compiled JSON files (`program.io.load`: validated data, never
code), are named by their `name` field, and are all checked before the port opens, so
a bad file stops start-up with one clear line and exit code 2.

For tests and benchmarks only, `--lm scripted[:latency=S,answer=KEY]` serves with an
instant fake model (no weights, no network): it answers KEY, or the first option of
the question, after sleeping S seconds per call. It is deliberately not in --help.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

SCRIPTED = "scripted"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve compiled programs over HTTP (FastAPI + uvicorn)")
    p.add_argument("programs", nargs="+", metavar="PROGRAM.json", help="compiled program files")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free port, printed at start-up)")
    p.add_argument("--lm", default=None,
                   help="run every program on this model instead of the one it was compiled for")
    p.add_argument("--max-concurrency", type=int, default=4, help="program runs at once (queue beyond)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request before 504")
    p.add_argument("--queue-timeout", type=float, default=30.0, help="seconds queued for a slot before 503")
    p.add_argument("--max-batch", type=int, default=64, help="questions per batch request")
    p.add_argument("--max-body-bytes", type=int, default=1_000_000, help="request body size limit")
    p.add_argument("--access-log", action="store_true", help="log every request")
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


def scripted_lm(spec: str) -> Any:
    """The benchmark/test model: `scripted[:latency=0.005,answer=A]`, wrapped like a real one."""
    from ...lm.registry import wrap_lm
    from ...lm.scripted import ScriptedLM

    opts: dict[str, str] = {}
    rest = spec[len(SCRIPTED):].lstrip(":")
    for part in filter(None, rest.split(",")):
        key, sep, value = part.partition("=")
        if not sep or key not in ("latency", "answer"):
            raise ValueError(f"bad scripted model option {part!r}: use latency=SECONDS and/or answer=KEY")
        opts[key] = value
    answer = opts.get("answer")

    def reply(request: Any) -> str:
        if answer:
            return answer
        text = request.prompt or "\n".join(m.content for m in request.messages)
        block = text.rsplit("Options:", 1)[-1].splitlines()
        keys = [ln.split(".", 1)[0].strip() for ln in block if "." in ln and ln.split(".", 1)[0].strip().isalnum()]
        if not keys:
            return "A"
        return keys[int(hashlib.sha256(text.encode()).hexdigest(), 16) % len(keys)]

    return wrap_lm(ScriptedLM(reply, model="scripted", latency=float(opts.get("latency", 0.0))),
                   cache=False, max_retries=0)


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


def main(args: argparse.Namespace) -> int:
    import uvicorn

    from ...serve import create_app
    from ..errors import fail

    programs = load_programs(args.programs)
    for flag, value in (("--max-concurrency", args.max_concurrency), ("--max-batch", args.max_batch),
                        ("--max-body-bytes", args.max_body_bytes)):
        if value < 1:
            fail(f"{flag} must be at least 1")
    if args.timeout <= 0 or args.queue_timeout <= 0:
        fail("--timeout and --queue-timeout must be positive")
    try:
        if args.lm and args.lm.split(":", 1)[0] == SCRIPTED:
            lms: Any = scripted_lm(args.lm)
        elif args.lm:  # one shared stack: one cache and one concurrency limit for the backend
            lms = next(iter(programs.values())).resolve_lm(args.lm)
        else:
            lms = None
        app = create_app(programs, lms, max_concurrency=args.max_concurrency, timeout_s=args.timeout,
                         queue_timeout_s=args.queue_timeout, max_body_bytes=args.max_body_bytes,
                         max_batch=args.max_batch)
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
