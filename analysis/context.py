"""Validation loss against context length (`dynamics context`): the fixed-window MLP language
model at each window W beside recurrent models of the same text.

Each MLP run is a point at its W (log2 axis); each recurrent run (rnn, gru, lstm) a horizontal line,
its context unbounded (the state carries everything before it). The loss is the best validation
loss of a run (nats per token); the dotted line is H(x_t | x_{t−1}) of the training split, counted
(`train_bigram_entropy`), which the W = 1 model approaches. A recurrent model "wins" from the
window on where the MLP's loss stays above its own; the legend names that window.
"""
import math

import numpy as np

from tasks.errors import InputError

RECURRENT_COLORS = {"rnn": "#1f77b4", "gru": "#2ca02c", "lstm": "#d62728"}
RECURRENT_STYLES = {"rnn": "--", "gru": "-.", "lstm": (0, (6, 2, 1, 2, 1, 2))}   # close losses: not colour alone


def rows(snaps):
    """One row per language-model run: name, cell, window (None for recurrent), best and final
    validation loss, bits per character at the best, updates, tokens."""
    out = []
    for s in snaps:
        loss = s.check.get("valid_loss")
        if s.family != "text" or loss is None or not np.isfinite(loss).any():
            continue
        k = int(np.nanargmin(loss))
        bpc = s.check.get("valid_bpc")
        cell = s.cfg("cell")
        out.append({"name": s.name, "cell": cell, "window": int(s.cfg("window")) if cell == "mlp" else None,
                    "best": float(loss[k]), "final": float(loss[np.isfinite(loss)][-1]),
                    "bpc": float(bpc[k]) if bpc is not None else math.nan, "iters": int(s.check["iter"][-1]),
                    "tokens": s.attrs.get("tokens", "char"), "H1": float(s.attrs.get("train_bigram_entropy", math.nan)),
                    "wall": float(s.check["wall_time"][-1])})
    if not any(r["window"] for r in out):
        raise InputError("no run with cell = mlp among the run files: nothing to put on a context axis")
    return out


def wins_from(r, mlp):
    """The smallest window from which on every MLP's loss is above the recurrent run's, or None."""
    above = [m["best"] > r["best"] for m in mlp]
    for i in range(len(mlp)):
        if all(above[i:]):
            return mlp[i]["window"]
    return None


def figure_context(table):
    from .canvas import freeze, new_figure
    mlp = sorted((r for r in table if r["window"]), key=lambda r: r["window"])
    fig = new_figure(7.5, 4.8)
    ax = fig.subplots()
    W = [r["window"] for r in mlp]
    ax.plot(W, [r["best"] for r in mlp], "o-", color="black", lw=1.6, label="fixed-window MLP (best)")
    ax.plot(W, [r["final"] for r in mlp], "x", color="grey", label="MLP, final check")
    for r in (r for r in table if not r["window"]):
        win = wins_from(r, mlp)
        where = ("below every MLP" if win == W[0] else f"below the MLP from W = {win} on" if win else
                 "above an MLP at the largest W")
        ax.axhline(r["best"], color=RECURRENT_COLORS.get(r["cell"], "purple"), lw=1.4,
                   ls=RECURRENT_STYLES.get(r["cell"], "-"),
                   label=f"{r['cell'].upper()} ({r['name']}): {r['best']:.3f}, {where}")
    H = [r["H1"] for r in mlp if math.isfinite(r["H1"])]
    if H:
        ax.axhline(H[0], color="grey", ls=":", lw=1.2, label=f"H(x_t | x_(t−1)) of the training split: {H[0]:.3f}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(W, [str(w) for w in W])
    ax.minorticks_off()
    unit = "word" if mlp[0]["tokens"] == "word" else "char"
    ax.set_xlabel(f"context length W ({unit}s the MLP reads)")
    ax.set_ylabel(f"best validation loss (nats/{unit})")
    iters = sorted({r["iters"] for r in table})
    ax.set_title("Validation loss against context length" + (f" ({iters[0]} updates each)" if len(iters) == 1 else ""),
                 fontsize="medium")
    ax.legend(loc="best", fontsize="small")
    freeze(fig)
    return fig


def table_text(table):
    lines = [f"{'run':<28} {'cell':<5} {'W':>3} {'best':>7} {'final':>7} {'bpc':>6} {'iters':>6} {'wall s':>7}"]
    for r in sorted(table, key=lambda r: (r["window"] is None, r["window"] or 0, r["cell"])):
        lines.append(f"{r['name']:<28} {r['cell']:<5} {r['window'] or '-':>3} {r['best']:7.4f} {r['final']:7.4f} "
                     f"{r['bpc']:6.3f} {r['iters']:6d} {r['wall']:7.0f}")
    return "\n".join(lines)
