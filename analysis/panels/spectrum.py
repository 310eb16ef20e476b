"""The recurrent matrix's spectrum: spectral radius ρ and largest singular value σ_max over
training (with the theory's bound 1/γ where recorded), and its eigenvalues at start and end."""
import math

import numpy as np

from .. import stats
from ..canvas import COLORS, Panel, check_label, finite, x_limits
from ..stats import fmt_num
from . import theory


def _has_rho(snap):
    return finite(snap.check.get("rho")) or finite(snap.check.get("sigma_max"))


def _has_eigen(snap):
    name = snap.recurrent_matrix
    return any(name in w and stats.eigenvalues(w[name]) is not None
               for w in (snap.start_weights, snap.final_weights))


def draw_rho(ax, snap):
    name = snap.recurrent_matrix
    x = snap.check_x
    for key, color, ls, label in (("rho", COLORS["rho"], "-", f"spectral radius ρ({name})"),
                                  ("sigma_max", COLORS["sigma"], "-.", f"largest singular value σ_max({name})")):
        y = snap.check.get(key)
        if finite(y):
            ax.plot(x, y, color=color, ls=ls, lw=1.5, marker="." if len(x) < 80 else None, label=label)
    start, end = stats.rho_start_end(snap)
    if name in snap.start_weights and math.isfinite(start):
        ax.plot([0], [start], "o", color=COLORS["rho"], mfc="none", clip_on=False,   # whole on the frame
                label=f"ρ before training: {start:.3g}")
    ax.axhline(1.0, color="k", ls="--", lw=0.9, label="ρ = 1")
    theory.draw_bounds(ax, snap)
    x_limits(ax, snap, x)
    ax.legend(loc="best", fontsize="small")
    ax.set_xlabel(check_label(snap))
    ax.set_ylabel(f"ρ and σ_max of {name} (dimensionless)")
    ax.set_title(f"{name}: ρ {fmt_num(start)} → {fmt_num(end)}")


def draw_eigen(ax, snap):
    name = snap.recurrent_matrix
    theta = np.linspace(0, 2 * np.pi, 361)
    ax.plot(np.cos(theta), np.sin(theta), color="k", lw=0.9, label="unit circle")
    for weights, label, style in ((snap.start_weights, "start", dict(mfc="none", color="grey")),
                                  (snap.final_weights, "end", dict(color=COLORS["rho"]))):
        ev = stats.eigenvalues(weights[name]) if name in weights else None
        if ev is None:
            continue
        ax.plot(ev.real, ev.imag, "o", ms=4, alpha=0.8, ls="none",
                label=f"{label}: ρ = {np.abs(ev).max():.3g}", **style)
    ax.axhline(0, color="0.8", lw=0.6, zorder=0)
    ax.axvline(0, color="0.8", lw=0.6, zorder=0)
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="upper right", fontsize="small")
    ax.set_xlabel(r"Re $\lambda$")
    ax.set_ylabel(r"Im $\lambda$")
    ax.set_title(f"Eigenvalues of {name}")


PANELS = [
    Panel("rho", _has_rho, draw_rho),
    Panel("eigenvalues", _has_eigen, draw_eigen),
]

FIGURES = {"spectrum": ("recurrent matrix spectrum", ["rho", "eigenvalues"])}
