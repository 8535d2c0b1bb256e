"""Where medcompile's time goes: a cProfile of the timed loop, per question, by file:line."""
from __future__ import annotations

import cProfile
import pstats
from typing import Any

from _common import REPO

from medcompile import Program, Question
from medcompile.bank import Bank

from .mc_side import forget, scripted_lm



# ---- profile ---------------------------------------------------------------------------------------
def profile_mc(prog: Program, bank: Bank, queries: list[Question], top: int = 15) -> list[dict[str, Any]]:
    lm = scripted_lm()
    pr = cProfile.Profile()
    pr.enable()
    for q in queries:
        forget(bank)
        prog.run(q, lm)
    pr.disable()
    st = pstats.Stats(pr)
    rows = []
    n = len(queries)
    for (file, line, func), (cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        rows.append({"where": f"{_short(file)}:{line}", "function": func, "calls_per_q": round(nc / n, 1),
                     "self_ms_per_q": round(1000 * tt / n, 4), "cum_ms_per_q": round(1000 * ct / n, 4)})
    own = [r for r in rows if r["where"].startswith("medcompile/")]
    by_self = sorted(rows, key=lambda r: -r["self_ms_per_q"])[:top]
    by_cum_own = sorted(own, key=lambda r: -r["cum_ms_per_q"])[:top]
    return [{"top_self_time_any": by_self}, {"top_cumulative_medcompile": by_cum_own}]


def _short(path: str) -> str:
    p = str(path)
    for root in (str(REPO) + "/",):
        if p.startswith(root):
            return p[len(root):]
    i = p.find("site-packages/")
    return p[i + len("site-packages/"):] if i >= 0 else p
