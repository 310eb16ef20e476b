"""The regulariser Ω and the share of (t, sequence) pairs whose gradient it keeps ("steps in
the past"), per update; recorded only by runs with Ω."""
import numpy as np

from .. import stats
from ..canvas import Panel, finite, iter_label, log_if_spans, percent_axis, readable_log_axis, x_limits


def _has_omega(snap):
    return finite(snap.iter.get("omega"))


def _has_past(snap):
    return finite(snap.iter.get("steps_in_past"))


def _series(ax, snap, y, color, label):
    x = snap.iter_x
    win = max(1, len(y) // 100)
    if len(y) > 300:
        ax.plot(*stats.envelope(x, y), color=color, lw=0.4, alpha=0.35, rasterized=True)
        ax.plot(x, stats.smooth(y, win), color=color, lw=1.5, label=f"{label}, mean of {win} updates")
    else:
        ax.plot(x, y, color=color, lw=1.0, marker=".", ms=3, label=label)
    x_limits(ax, snap, x)
    ax.set_xlabel(iter_label(snap))


def draw_omega(ax, snap):
    y = snap.iter["omega"]
    _series(ax, snap, y, "#17becf", "Ω")
    if log_if_spans(ax, y):
        readable_log_axis(ax)
    alpha = snap.cfg("alpha")
    ax.legend(loc="best", fontsize="small", title=f"α = {alpha}" if alpha is not None else None)
    ax.set_ylabel(r"$\Omega$ (dimensionless, 0 = norm kept)")
    ax.set_title("Regulariser Ω")


def draw_past(ax, snap):
    y = 100 * snap.iter["steps_in_past"]
    _series(ax, snap, y, "#bcbd22", "steps in the past")
    percent_axis(ax)
    ok = y[np.isfinite(y)]
    if len(ok) and ok.min() == ok.max():
        ax.text(0.5, 0.5, f"{ok[0]:.3g}% at every update", transform=ax.transAxes, ha="center", va="center")
    ax.legend(loc="best", fontsize="small")
    ax.set_ylabel("steps in the past\n(% of (t, sequence) pairs kept by Ω)")
    ax.set_title("Steps in the past")


PANELS = [
    Panel("omega", _has_omega, draw_omega),
    Panel("steps_in_past", _has_past, draw_past),
]

FIGURES = {"omega": ("regulariser Ω", ["omega", "steps_in_past"])}
