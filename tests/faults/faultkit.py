"""Shared pieces of the fault tests, and a subprocess entry point for the crash tests.

As a library (``from tests.faults.faultkit import ...``): tiny datasets, a scripted
"oracle" model whose answers depend on the prompt (so trials score differently), the
declared program the compiles start from, and LM wrappers that log request keys.

As a script (``python tests/faults/faultkit.py optimize|eval|run ...``): runs the real
``medcompile`` CLI command in this process, with the model replaced by the scripted
one (the CLI cannot take a scripted LM). The model stack is the standard one
(`wrap_lm`: metering, disk cache in $MEDCOMPILE_CACHE_DIR, retries), with:

* ``--live-log F``: every call that reaches the model appends its request key to F;
* ``--done-log F``: every call that returned to the program (so it is in the disk
  cache) appends its request key to F;
* ``--block-at-call N``: the (N+1)-th live call of this process writes ``--marker``
  and blocks forever (the parent then SIGKILLs it): exactly N calls completed;
* ``--block-at-save``: writing the compiled program writes the marker and blocks;
* ``--latency S``: each live call sleeps S seconds (for kills at random times).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

if __name__ == "__main__":  # run as a script: make `medcompile` importable the usual way
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from medcompile import Predict, Program, Retrieve, SelfCoT, Shuffle, Vote
from medcompile.lm.base import LMRequest, LMResponse
from medcompile.lm.registry import wrap_lm
from medcompile.lm.scripted import ScriptedLM, request_text
from medcompile.lm.wrapper import LMWrapper
from medcompile.question import Question

KEYS = "ABCD"
INSTRUCTION_REPLIES = (
    "Answer as an experienced physician would, choosing the single best option.",
    "Read every option carefully and pick the one best supported by medical evidence.",
    "Think about the mechanism of disease first, then choose the best answer.",
)
#: Small enough to be quick, big enough to have every compile stage and several trials.
COMPILE_KW: dict[str, Any] = {"budget": 150, "seed": 0, "max_trials": 6, "minibatch": 4, "quiet": True}


# ---- data ------------------------------------------------------------------------------------------
def question(i: int) -> Question:
    opts = {k: f"{['aspirin', 'heparin', 'insulin', 'warfarin'][j]} regimen {i}-{k}" for j, k in enumerate(KEYS)}
    return Question(f"q{i}", f"Patient {i} presents with condition {i % 5}; which treatment is best?",
                    opts, answer=KEYS[(i * 7) % 4], subject=("cardio", "endo")[i % 2])


def train_set() -> list[Question]:
    return [question(i) for i in range(8)]


def dev_set() -> list[Question]:
    return [question(i) for i in range(100, 108)]


def eval_set() -> list[Question]:
    return [question(i) for i in range(200, 212)]


def all_questions() -> list[Question]:
    return train_set() + dev_set() + eval_set()


def write_jsonl(path: Path, qs: Sequence[Question]) -> Path:
    path.write_text("".join(json.dumps(q.to_dict()) + "\n" for q in qs), encoding="utf-8")
    return path


def declared_program() -> Program:
    """Random few-shot with self-generated CoT: rationales, instructions and a search over
    k, cot, temperature and instruction, with no embedder needed."""
    return Program(SelfCoT(demos=Retrieve(k=2, strategy="random", tune={"k": (1, 2)})), name="faults")


def fixed_program() -> Program:
    """A compiled-style program with nothing left to tune: 3 shuffled calls and a vote."""
    return Program(Vote(Shuffle(Predict(tune=False), n=3, tune=False)), name="vote3")


def scratch_dir(tmp_path: Path) -> Path:
    """A fresh folder on tmpfs when there is one (SQLite commits there cost no fsync, which
    is irrelevant to surviving a killed *process*), else `tmp_path`."""
    import tempfile

    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="mc-faults-", dir=shm))
    return tmp_path


try:
    import pytest

    @pytest.fixture
    def work(tmp_path: Path):  # type: ignore[no-untyped-def]
        """A scratch folder for caches, studies and outputs (see `scratch_dir`)."""
        import shutil

        d = scratch_dir(tmp_path)
        yield d
        if d != tmp_path:
            shutil.rmtree(d, ignore_errors=True)
except ImportError:  # pragma: no cover - the script mode does not need pytest
    pass


_REFERENCE: dict[str, Any] = {}


def reference_compile() -> tuple[bytes, int]:
    """The healthy, uninterrupted in-process compile: (program JSON bytes, live calls).
    Computed once per process, in its own folder."""
    if not _REFERENCE:
        import atexit
        import shutil
        import tempfile

        from medcompile.compile import optimize

        d = scratch_dir(Path(tempfile.mkdtemp(prefix="mc-faults-ref-")))
        atexit.register(shutil.rmtree, d, True)
        backend = oracle()
        optimize(declared_program(), train_set(), dev_set(), lm=wrap_lm(backend, cache_dir=d / "cache"),
                 out=d / "out.json", **COMPILE_KW)
        _REFERENCE.update(program=(d / "out.json").read_bytes(), live=backend.calls)
    return _REFERENCE["program"], _REFERENCE["live"]


# ---- the scripted model ------------------------------------------------------------------------------
def _unit(*parts: object) -> float:
    h = hashlib.sha256("|".join(map(str, parts)).encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(h[:8], "little") / 2**64


def oracle_reply(req: LMRequest, gold: dict[str, str] | None = None) -> str:
    """Right most of the time; how often depends on the prompt (instruction, CoT,
    temperature, seed), so different configurations get different scores."""
    gold = gold if gold is not None else {q.question: q.answer or "A" for q in all_questions()}
    text = request_text(req)
    if text.rstrip().endswith("Instruction:") or "A good instruction for answering" in text:
        return " " + INSTRUCTION_REPLIES[req.seed % len(INSTRUCTION_REPLIES)]
    stem = text.rsplit("Question: ", 1)[-1].split("\n", 1)[0]
    key = gold.get(stem, "A")
    cot = text.rstrip().endswith("step by step.")
    if _unit(text[:200], stem, req.temperature, req.seed, cot) < (0.2 if cot else 0.4):
        key = KEYS[(KEYS.index(key) + 1) % 4]
    return f" The findings point to option {key}.\nAnswer: {key}" if cot else f" {key}"


def oracle(latency: float = 0.0, model: str = "scripted") -> ScriptedLM:
    gold = {q.question: q.answer or "A" for q in all_questions()}
    return ScriptedLM(lambda r: oracle_reply(r, gold), model=model, latency=latency)


class KeyLog(LMWrapper):
    """Pass-through LM appending each completed request's cache key to a file."""

    def __init__(self, inner: Any, path: Path | str) -> None:
        super().__init__(inner)
        self.path = Path(path)
        self._lock = threading.Lock()

    def complete(self, request: LMRequest) -> LMResponse:
        resp = self.inner.complete(request)
        key = request.cache_key()
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(key + "\n")
            f.flush()
            os.fsync(f.fileno())
        return resp

    def settings(self) -> dict:
        return self.inner.settings()


class Gate(LMWrapper):
    """Pass-through LM that blocks for ever at live call number `at + 1`, after writing
    `marker`: exactly `at` calls have completed when the parent kills the process."""

    def __init__(self, inner: Any, at: int, marker: Path | str) -> None:
        super().__init__(inner)
        self.at, self.marker = at, Path(marker)
        self.calls = 0
        self._lock = threading.Lock()

    def complete(self, request: LMRequest) -> LMResponse:
        with self._lock:
            self.calls += 1
            n = self.calls
        if n > self.at:
            block(self.marker, f"call {n}")
        return self.inner.complete(request)

    def settings(self) -> dict:
        return self.inner.settings()


def block(marker: Path, what: str) -> None:
    marker.write_text(what, encoding="utf-8")
    while True:
        time.sleep(60)


def read_keys(path: Path | str) -> list[str]:
    p = Path(path)
    return [ln for ln in p.read_text(encoding="utf-8").splitlines() if ln] if p.exists() else []


def build_stack(args: Any) -> Any:
    """backend -> [Gate] -> KeyLog(live) inside the standard stack, KeyLog(done) outside."""
    lm: Any = oracle(latency=args.latency)
    if args.block_at_call is not None:
        lm = Gate(lm, args.block_at_call, args.marker)
    if args.live_log:
        lm = KeyLog(lm, args.live_log)
    stack: Any = wrap_lm(lm, base_delay=0.001, max_delay=0.01)  # cache dir: $MEDCOMPILE_CACHE_DIR
    if args.done_log:
        from medcompile.lm.meter import MeteredLM

        stack = MeteredLM(KeyLog(stack, args.done_log))
    return stack


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--live-log")
    ap.add_argument("--done-log")
    ap.add_argument("--block-at-call", type=int)
    ap.add_argument("--block-at-save", action="store_true")
    ap.add_argument("--marker", default="marker")
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("cli", nargs=argparse.REMAINDER, help="-- then the medcompile command line")
    args = ap.parse_args(argv)
    cli = args.cli[1:] if args.cli[:1] == ["--"] else args.cli
    lm = build_stack(args)

    import medcompile.lm.registry as registry
    import medcompile.program.io as program_io
    from medcompile.program.program import Program as P

    registry.make_lm = lambda *a, **k: lm  # type: ignore[assignment]  # `optimize` builds its model here
    real_resolve = P.resolve_lm

    def resolve_lm(self: Any, spec: Any = None) -> Any:  # `eval` and `run` ask here; an LM object passes through
        return lm if spec is None or isinstance(spec, str) else real_resolve(self, spec)

    P.resolve_lm = resolve_lm  # type: ignore[method-assign]
    if args.block_at_save:
        program_io.write_text_atomic = lambda *a, **k: block(Path(args.marker), "save")  # type: ignore[assignment]

    from medcompile.cli.main import main as cli_main

    return cli_main(cli)


if __name__ == "__main__":
    sys.exit(main())
