"""Training curves: validation error, training and validation loss, and a language model's
validation bits per character and perplexity."""
import numpy as np

from .. import stats, verdicts as V
from ..canvas import (COLORS, Panel, check_label, finite, iter_label, log_if_spans, loss_unit, percent_axis,
                      readable_log_axis, token, x_limits)


def _has_error(snap):
    return finite(snap.check.get("valid_error"))


def _has_loss(snap):
    return any(finite(src.get(k)) for src, k in ((snap.check, "valid_loss"),
                                                 (snap.check, "train_loss"), (snap.iter, "loss")))


def _has_lm(snap):
    return finite(snap.check.get("valid_bpc")) or finite(snap.check.get("valid_ppl"))


def draw_valid_error(ax, snap):
    y = snap.check["valid_error"]
    x = snap.check_x
    ok = np.isfinite(y)
    label = f"validation error (final {y[ok][-1]:.3g}%)" if ok.any() else "validation error"
    ax.plot(x, y, color=COLORS["valid"], marker="." if len(x) < 80 else None, lw=1.4, label=label)
    if ok.any():
        i = int(np.nanargmin(y))
        ax.plot(x[i], y[i], "o", mfc="none", color="k", ms=8,
                label=f"best {y[i]:.3g}% at update {int(x[i])}")
    percent_axis(ax, max(5.0, float(np.nanmax(y)) * 1.08) if ok.any() else 100)
    x_limits(ax, snap, x)
    ax.legend(loc="best", fontsize="small")
    ax.set_xlabel(check_label(snap))
    ax.set_ylabel("validation error (%)")
    ax.set_title("Validation error")


def draw_loss(ax, snap):
    arrays = []
    raw = snap.iter.get("loss")
    if finite(raw):
        x = snap.iter_x
        ax.plot(*stats.envelope(x, raw), color=COLORS["train"], lw=0.5, alpha=0.25, rasterized=True,
                label="training loss per update")
        win = max(1, len(raw) // 50)
        if win > 1:
            ax.plot(x, stats.smooth(raw, win), color=COLORS["train"], lw=1.2,
                    label=f"training loss, mean of {win} updates")
        arrays.append(raw)
    for key, color, marker, label in (("train_loss", COLORS["train"], "s", "training loss per check"),
                                      ("valid_loss", COLORS["valid"], "o", "validation loss")):
        y = snap.check.get(key)
        if finite(y):
            ax.plot(snap.check_x, y, color=color, marker=marker if len(y) < 80 else None, ms=3,
                    lw=1.4 if key == "valid_loss" else 0.8,
                    ls="-" if key == "valid_loss" else ":", label=label)
            arrays.append(y)
    chance = V.CHANCE_LOSS.get(snap.task)
    if chance:
        n = {"torder": 4, "torder3": 8}[snap.task]
        ax.axhline(chance, color="grey", ls="--", lw=0.9, label=f"chance, ln {n} = {chance:.3f}")
    if log_if_spans(ax, *arrays):
        readable_log_axis(ax)
    x_limits(ax, snap, snap.iter_x if finite(raw) else snap.check_x)
    ax.legend(loc="best", fontsize="small")
    ax.set_xlabel(iter_label(snap) if finite(raw) else check_label(snap))
    ax.set_ylabel(f"loss ({loss_unit(snap)})")
    ax.set_title("Training and validation loss")


def draw_lm(ax, snap):
    x = snap.check_x
    marker = "." if len(x) < 80 else None
    handles = []
    bpc = snap.check.get("valid_bpc")
    if finite(bpc):
        handles += ax.plot(x, bpc, color=COLORS["valid"], marker=marker, lw=1.4,
                           label=f"bits per character (final {bpc[np.isfinite(bpc)][-1]:.4g})")
        ax.set_ylabel("validation bits per character")
    ppl = snap.check.get("valid_ppl")
    if finite(ppl):
        other = ax.twinx() if finite(bpc) else ax
        handles += other.plot(x, ppl, color="#e377c2", ls="--", marker=marker, lw=1.2,
                              label=f"perplexity per {token(snap)} (final {ppl[np.isfinite(ppl)][-1]:.4g})")
        other.set_ylabel(f"validation perplexity per {token(snap)}")
    x_limits(ax, snap, x)
    ax.legend(handles=handles, loc="best", fontsize="small")
    ax.set_xlabel(check_label(snap))
    ax.set_title("Language model: validation bpc and perplexity", fontsize="medium")


PANELS = [
    Panel("valid_error", _has_error, draw_valid_error),
    Panel("loss", _has_loss, draw_loss),
    Panel("lm", _has_lm, draw_lm),
]

#: a class-conditioned run's generation panel (panels/conditional.py) sits with its training curves
FIGURES = {"training": ("validation error and loss", ["valid_error", "loss", "lm", "generation"])}
