"""Ready-made programs. Each module defines `build(signature=None) -> Program`.

`medcompile optimize NAME` looks names up here; a path to a .py file with the same
`build` function, or a program .json file, works too.
"""
from __future__ import annotations

READY_MADE = ("zero_shot", "few_shot", "medprompt", "ensemble_refinement", "medprompt_plus")
