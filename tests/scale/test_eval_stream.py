"""Eval results reach the checkpoint in input order, whatever order questions finish in."""
from __future__ import annotations

import hashlib
import json

from medcompile import Predict, Program, Question
from medcompile.evaluate.runner import evaluate
from medcompile.lm.base import LMRequest
from medcompile.lm.registry import wrap_lm
from medcompile.lm.scripted import ScriptedLM, request_text


def slow_sometimes(req: LMRequest) -> str:
    import time

    h = int(hashlib.sha256(request_text(req).encode()).hexdigest()[:6], 16)
    time.sleep((h % 7) * 0.004)  # questions finish out of order
    return " B"


def test_checkpoint_lines_follow_the_input_order_and_resume(tmp_path) -> None:  # type: ignore[no-untyped-def]
    qs = [Question(id=f"q{i:03d}", question=f"Question {i}?", options={"A": "a", "B": "b"}, answer="B")
          for i in range(60)]
    prog = Program(Predict(tune=False), name="p")
    ckpt = tmp_path / "ckpt.jsonl"
    lm = wrap_lm(ScriptedLM(slow_sometimes), cache=False, max_concurrency=8)
    first = evaluate(prog, qs[:40], lm, concurrency=8, quiet=True, checkpoint=ckpt)
    ids = [json.loads(line)["id"] for line in ckpt.read_text().splitlines()]
    assert ids == [q.id for q in qs[:40]] and first.resumed == 0
    again = evaluate(prog, qs, lm, concurrency=8, quiet=True, checkpoint=ckpt)  # 40 kept, 20 new
    ids = [json.loads(line)["id"] for line in ckpt.read_text().splitlines()]
    assert ids == [q.id for q in qs] and again.resumed == 40 and again.n == 60
    assert [r.id for r in again.records] == [q.id for q in qs]
