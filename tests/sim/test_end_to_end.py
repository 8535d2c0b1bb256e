"""medcompile compiles Medprompt against the simulator and the result runs."""
from __future__ import annotations

import json

import medcompile as mc
from programs import medprompt


def test_optimize_medprompt_against_the_simulator(world_for, medqa, tmp_path) -> None:  # type: ignore[no-untyped-def]
    w = world_for("strong_chat", 3)
    lm = w.lm(budget=400)
    out = tmp_path / "medprompt.json"
    program = mc.optimize(medprompt.build(), medqa["bank"][:50], medqa["dev"][:12], lm=lm, budget=150, seed=0,
                          out=out, quiet=True)
    assert program is not None and out.is_file()
    assert 0 < lm.calls <= 400
    doc = json.loads(out.read_text())
    assert doc["lm"]["model"] == w.model_id(0) and doc["compile"]["calls_per_question"] >= 1
    loaded = mc.load(out)
    res = loaded.run_many(medqa["test"][:20], w.lm())
    assert all(r.prediction.answer in "ABCD" for r in res)
