"""The gradient horizon over training (dynamics/probes/horizon.py): how many steps back from the
loss the batch-mean g_t stays above 10⁻³ and 10⁻⁶ of its value at the loss, against the steps
the batch has. A horizon on the steps line means the gradient reaches the whole sequence."""
import numpy as np

from ..canvas import Panel, finite, x_limits

COLORS = {"horizon_1e3": "#1f77b4", "horizon_1e6": "#d62728"}


def _has_horizon(snap):
    return finite(snap.check.get("horizon_1e3"))


def _title(snap):
    h, n = snap.check["horizon_1e3"], snap.check.get("horizon_steps")
    k = np.flatnonzero(np.isfinite(h))[-1]
    if n is not None and h[k] == n[k]:
        return f"Gradient horizon: all {int(n[k])} steps (last check)"
    of = f" of {int(n[k])}" if n is not None and np.isfinite(n[k]) else ""
    return f"Gradient horizon: {int(h[k])}{of} steps (last check)"


def draw_horizon(ax, snap):
    x, steps = snap.check_x, snap.check.get("horizon_steps")
    marker = "o" if len(x) < 80 else None
    if finite(steps):   # underneath: the horizons reach it where the gradient reaches the whole batch
        ax.plot(x, steps, color="0.8", lw=5, solid_capstyle="round",
                label="steps of the check's batch (a horizon here: all of them)")
    for key, label, style in (("horizon_1e3", r"$g_t$ above $10^{-3}$ of its value at the loss", "-"),
                              ("horizon_1e6", r"$g_t$ above $10^{-6}$", "--")):
        y = snap.check.get(key)
        if finite(y):
            ax.plot(x, y, ls=style, color=COLORS[key], lw=1.5, marker=marker, ms=3.5, label=label)
    ax.set_ylim(bottom=0)
    x_limits(ax, snap, x)
    ax.set_xlabel(snap.check_xlabel)
    back = "each sequence's last token" if snap.end_aligned else "the loss step"
    ax.set_ylabel(f"steps back from {back}")
    ax.legend(loc="best", fontsize="small")
    ax.set_title(_title(snap))


PANELS = [Panel("horizon", _has_horizon, draw_horizon)]

FIGURES = {"horizon": ("how far back the gradient reaches", ["horizon"])}
