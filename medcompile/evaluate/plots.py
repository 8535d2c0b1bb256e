"""PNG figures for eval, compare and ablation reports (matplotlib, Agg backend).

Every figure shows the interval, not just the point: with tens to hundreds of
questions the CI is the message. Files are written atomically like every output.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from ..atomic import write_bytes_atomic  # noqa: E402
from .stats import CI  # noqa: E402

if TYPE_CHECKING:
    from .compare import CompareResult
    from .runner import EvalResult

_BLUE, _GREEN, _GREY, _RED = "#3366aa", "#2e8b57", "#aaaaaa", "#c0392b"


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())
    return Path(path)


def _err(cis: Sequence[CI]) -> list[list[float]]:
    """Asymmetric error bars in percentage points (never negative)."""
    return [[100 * max(0.0, c.mean - c.low) for c in cis], [100 * max(0.0, c.high - c.mean) for c in cis]]


def plot_eval(result: "EvalResult", path: str | os.PathLike[str]) -> Path:
    """Accuracy with 95% CI, overall and per subject, one row each."""
    rows = [("overall", result.accuracy)] + list(result.by_subject().items())
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.55 * len(rows)))
    ys = list(range(len(rows)))[::-1]
    cis = [c for _, c in rows]
    ax.errorbar([100 * c.mean for c in cis], ys, xerr=_err(cis), fmt="o", color=_BLUE, ecolor=_BLUE, capsize=4)
    ax.set_yticks(ys, [f"{name}  (n={c.n})" for name, c in rows])
    for y, c in zip(ys, cis):
        ax.annotate(f"{100 * c.mean:.1f}", (100 * c.mean, y), textcoords="offset points", xytext=(0, 7),
                    ha="center", fontsize=8)
    if result.chance:
        ax.axvline(100 * result.chance, color=_GREY, ls="--", lw=1, label=f"chance ({100 * result.chance:.0f}%)")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlim(-2, 102)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("accuracy (%), 95% bootstrap CI")
    ax.set_title(f"{result.name} on {result.model}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_compare(cmp: "CompareResult", path: str | os.PathLike[str]) -> Path:
    """Left: both accuracies and the paired difference with CIs. Right: win/tie/loss."""
    s, w = cmp.stats, cmp.stats.wtl
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.2), gridspec_kw={"width_ratios": [3, 2]})
    rows = [(f"A: {cmp.name_a}", s.acc_a, _BLUE), (f"B: {cmp.name_b}", s.acc_b, _BLUE),
            ("B - A (paired)", s.diff, _GREEN if s.diff.low > 0 else _RED if s.diff.high < 0 else _GREY)]
    ys = [2, 1, 0]
    for y, (_, c, color) in zip(ys, rows):
        ax1.errorbar([100 * c.mean], [y], xerr=_err([c]), fmt="o", color=color, ecolor=color, capsize=4)
        ax1.annotate(f"{100 * c.mean:+.1f}" if y == 0 else f"{100 * c.mean:.1f}", (100 * c.mean, y),
                     textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    ax1.axvline(0, color="black", lw=0.8)
    ax1.set_yticks(ys, [r[0] for r in rows])
    ax1.set_ylim(-0.6, 2.6)
    ax1.set_xlabel("percentage points, 95% CI")
    ax1.set_title(f"McNemar p={s.mcnemar_p:.3g}, n={s.diff.n}", fontsize=10)
    ax1.grid(axis="x", alpha=0.3)
    names = ["B\nwins", "both\nright", "both\nwrong", "B\nloses"]  # two lines: fit when the panel is narrow
    counts = [w.wins, w.both_correct, w.both_wrong, w.losses]
    bars = ax2.bar(names, counts, color=[_GREEN, _GREY, "#dddddd", _RED], edgecolor="black", lw=0.5)
    ax2.bar_label(bars, fontsize=8)
    ax2.set_ylabel("questions")
    ax2.set_title("per-question outcome (B vs A)", fontsize=10)
    ax2.set_ylim(0, max(counts + [1]) * 1.2)
    fig.suptitle(cmp.verdict, fontsize=8, wrap=True)
    fig.tight_layout()
    return _save(fig, path)


def plot_ablation(rows: Sequence[tuple[str, CI, float]], path: str | os.PathLike[str], *, title: str = "",
                  chance: float | None = None) -> Path:
    """Accuracy (95% CI) of each ladder row against its calls per question."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if chance:
        ax.axhline(100 * chance, color=_GREY, ls="--", lw=1, label=f"chance ({100 * chance:.0f}%)")
    cmap = plt.get_cmap("tab10")
    for i, (label, ci, cpq) in enumerate(rows):
        x = _spread(rows, i)
        ax.errorbar([x], [100 * ci.mean], yerr=_err([ci]), fmt="o", capsize=4, color=cmap(i),
                    label=f"{i + 1}. {label}: {100 * ci.mean:.1f} ({cpq:g} calls/q)")
        ax.annotate(str(i + 1), (x, 100 * ci.mean), textcoords="offset points", xytext=(5, 4), fontsize=9)
    ax.set_xscale("log")
    cpqs = sorted({r[2] for r in rows if r[2] > 0})
    if cpqs:
        ax.set_xticks(cpqs, [f"{x:g}" for x in cpqs])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(min(cpqs) / 1.5, max(cpqs) * 1.5)
    ax.set_ylim(-2, 102)
    ax.set_xlabel("model calls per question (log scale)")
    ax.set_ylabel("accuracy (%), 95% bootstrap CI")
    ax.set_title(title or "Medprompt ablation ladder", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def _spread(rows: Sequence[tuple[str, CI, float]], i: int) -> float:
    """Rows with the same calls per question sit side by side instead of on top of each other."""
    cpq = rows[i][2]
    same = [j for j, r in enumerate(rows) if r[2] == cpq]
    offset = same.index(i) - (len(same) - 1) / 2
    return max(cpq, 1e-3) * (1.07 ** offset)


__all__ = ["plot_eval", "plot_compare", "plot_ablation"]
