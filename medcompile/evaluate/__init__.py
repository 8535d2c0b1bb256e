"""Evaluation: scoring programs and the statistics that qualify the scores.

Re-exports are grouped by module; to add one, import its names and extend __all__.
"""
from . import compare as _compare_module  # noqa: F401  (the module; stats.compare is re-exported below)
from .stats import (CI, Comparison, DiffCI, WinTieLoss, accuracy, accuracy_ci, as_correct, compare,
                    format_p, mcnemar_exact, mcnemar_paired, paired_bootstrap, percentiles, verdict,
                    wilson_ci, win_tie_loss)

__all__ = [
    # stats
    "CI", "Comparison", "DiffCI", "WinTieLoss", "accuracy", "accuracy_ci", "as_correct", "compare",
    "format_p", "mcnemar_exact", "mcnemar_paired", "paired_bootstrap", "percentiles", "verdict",
    "wilson_ci", "win_tie_loss",
]
