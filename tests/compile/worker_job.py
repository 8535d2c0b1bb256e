"""A compile process for the multi-worker test (scripted LM, shared PostgreSQL study)."""
from __future__ import annotations

import json
import sys

from medcompile.compile import optimize
from medcompile.lm.registry import wrap_lm
from programs import medprompt
from tests.compile.test_optimizer import ALL, biased_lm

storage, name, out, role, log = sys.argv[1:6]
raw = biased_lm(0.4)  # knows 40%, else says "A": shuffle + vote clearly pays
raw.latency = 0.01  # slow enough that the two processes overlap
prog = optimize(medprompt.build(), ALL[:40], ALL[40:120], lm=wrap_lm(raw, cache=False), budget=3000, seed=0,
                max_trials=12, minibatch=10, quiet=True, n_instructions=0, storage=storage, study_name=name,
                worker=(role == "worker"), out=None if role == "worker" else out)
with open(log, "w") as f:
    json.dump({"role": role, "calls": raw.calls}, f)
