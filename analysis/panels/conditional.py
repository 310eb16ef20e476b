"""Panels of class-conditioned generation (family `conditional`): controllability, distinct and
novel samples over training."""
import numpy as np

from ..canvas import Panel, check_label, percent_axis, x_limits


def has_generation(snap):
    return any(np.isfinite(snap.check.get(k, np.array([np.nan]))).any()
               for k in ("controllability", "distinct", "novel"))


def draw_generation(ax, snap):
    x = snap.check_x
    marker = "." if len(x) < 80 else None
    styles = {"controllability": ("#d62728", "-", "controllability: judged the requested class"),
              "distinct": ("#1f77b4", "--", "distinct samples"),
              "novel": ("#2ca02c", ":", "novel samples (not in the training set)")}
    for key, (color, ls, label) in styles.items():
        y = snap.check.get(key)
        if y is not None and np.isfinite(y).any():
            ax.plot(x, y, color=color, ls=ls, marker=marker, lw=1.5, label=f"{label} (final {y[np.isfinite(y)][-1]:.0f}%)")
    ceiling = snap.attrs.get("judge_accuracy_on_real")
    if ceiling is not None and np.isfinite(ceiling):
        ax.axhline(ceiling, color="#d62728", lw=0.8, alpha=0.6,
                   label=f"judge's accuracy on real data: {ceiling:.0f}%")
    chance = 100.0 / len(snap.attrs.get("classes", [0, 0]))
    ax.axhline(chance, color="grey", lw=0.8, ls="-.", label=f"chance: {chance:.0f}%")
    percent_axis(ax)
    x_limits(ax, snap, x)
    ax.set_xlabel(check_label(snap))
    ax.set_ylabel("share of the check's samples (%)")
    judge = snap.attrs.get("judge_name") or "none"
    ax.set_title(f"Conditional generation (judge: {judge})", fontsize="medium")
    ax.legend(loc="lower right", fontsize="small")


PANELS = [Panel("generation", has_generation, draw_generation)]
FIGURES = {}          # the panel joins the training curves (panels/training.py)


def compare_controllability(ax, runs):
    """`dynamics compare`: controllability (solid) and novel samples (dotted) of each run."""
    drawn = set()
    for s, color in runs:
        for key, ls in (("controllability", "-"), ("novel", ":")):
            y = s.check.get(key)
            if y is not None and np.isfinite(y).any():
                ax.plot(s.check_x, y, color=color, ls=ls, lw=1.4)
                drawn.add(key)
    for key, ls, label in (("controllability", "-", "controllability"), ("novel", ":", "novel samples")):
        if key in drawn:            # the legend names only what is drawn
            ax.plot([], [], color="grey", ls=ls, label=label)
    percent_axis(ax)
    ax.set_xlim(0, None)
    ax.set_xlabel(check_label(runs[0][0]))
    ax.set_ylabel("share of the check's samples (%)")
    ax.set_title("Conditional generation")
    ax.legend(loc="lower right", fontsize="small")
