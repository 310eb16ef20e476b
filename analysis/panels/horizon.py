"""The gradient horizon over training (dynamics/probes/horizon.py): how many steps back from the
loss the batch-mean g_t stays above 10⁻³ and 10⁻⁶ of its value at the loss, against the steps
the batch has (grey bars). A horizon at the top of its bar (a hollow marker) means the gradient
reaches every step of the batch."""
import numpy as np

from .. import stats
from ..canvas import Panel, check_label, finite, x_limits

COLORS = {"horizon_1e3": "#1f77b4", "horizon_1e6": "#d62728"}


def _has_horizon(snap):
    return stats.last_horizon(snap) is not None


def _title(snap):
    h, _, n = stats.last_horizon(snap)
    if h == n:
        return f"Gradient horizon: all {int(n)} steps (last check)"
    return f"Gradient horizon: {int(h)} of {int(n)} steps (last check)"


def draw_horizon(ax, snap):
    x, steps = snap.check_x, snap.check.get("horizon_steps")
    width = 0.8 * float(np.min(np.diff(x))) if len(x) > 1 else 1.0
    if finite(steps):   # each check's batch: the most a horizon can be
        ax.bar(x, steps, width=width, color="0.88", label="steps of the check's batch")
    for key, ratio, style in (("horizon_1e3", "10^{-3}", "-"), ("horizon_1e6", "10^{-6}", "--")):
        y = snap.check.get(key)
        if not finite(y):
            continue
        whole = (y == steps) if steps is not None else np.zeros(len(y), bool)
        if not whole.all():
            ax.plot(x, np.where(whole, np.nan, y), ls=style, color=COLORS[key], lw=1.5, marker=".", ms=4,
                    label=rf"$g_t$ above ${ratio}$ of its value at the loss")
        if whole.any():   # at the bar's top: the horizon is the whole batch, not a number of steps
            ax.plot(x[whole], y[whole], "o", mfc="none", color=COLORS[key], ms=5,
                    label=rf"${ratio}$: reaches every step of the batch")
    ax.set_ylim(0, 1.5 * float(np.nanmax(steps)) if finite(steps) else None)   # room for the legend
    x_limits(ax, snap, x)
    if len(x):   # the last bar whole
        ax.set_xlim(right=max(ax.get_xlim()[1], float(x[-1]) + width / 2))
    ax.set_xlabel(check_label(snap))
    back = "each sequence's last token" if snap.end_aligned else "the loss step"
    ax.set_ylabel(f"steps back from {back}")
    ax.legend(loc="upper left", fontsize="small")
    ax.set_title(_title(snap))


PANELS = [Panel("horizon", _has_horizon, draw_horizon)]

FIGURES = {"horizon": ("how far back the gradient reaches", ["horizon"])}
