"""Question 3: depth, and where gradients vanish or explode without clipping. The runs that differ
only in the number of layers (with its dropout) and the clipping: when a deeper stack helps, and
per layer the g_t of the last check and the gradient norms of the same runs clipped and not."""
import math

import numpy as np
import pandas as pd

from .. import stats, verdicts as V
from ..stats import fmt_num
from .common import Answer, clear, clipping, column, lm_label, min_finite, series, spread

TITLE = "Depth, vanishing and exploding gradients"
FREE = ("n_layers", "dropout", "clip", "cutoff")     # what the question varies


def layer_gt(s, layer):
    """The last check's batch-mean g_t of one layer (0: nearest the input), NaNs dropped."""
    from ..read import Layer
    part = s.layers.get(layer, Layer())
    gt = part.grad_time
    k = None if gt is None else stats.last_row(gt)
    if k is None:
        return np.zeros(0)
    g = gt[k]
    return g[np.isfinite(g)]


def depth_row(s):
    """A run's depth, clipping, perplexity, gradient norms and, per layer, g_t's span and vanishing."""
    gn = stats.grad_norm_stats(s)
    best = min_finite(column(s, "valid_loss"))
    row = {"run": s.name, "setting": lm_label(s), "n_layers": int(s.config.get("n_layers", 1)),
           "clip": clipping(s), "seed": s.config.get("seed"),
           "best_valid_ppl": math.exp(best) if math.isfinite(best) else math.nan,
           "max_grad_norm": gn["max"], "median_grad_norm": gn["median"],
           "norm_ratio": gn["max"] / gn["median"] if gn["median"] > 0 else math.nan,
           "clipped": gn["share_clipped"], "exploding": V.exploding(s) is not None}
    for layer in sorted(s.layers):
        g = layer_gt(s, layer)
        row[f"layer{layer}_span"] = float(g[-1] / g[0]) if len(g) > 1 and g[0] > 0 else math.nan
        v = V.vanishing(s, layer)
        row[f"layer{layer}_vanishing"] = v.value if v is not None else 0.0
    return row


def depth_rows(runs):
    return pd.DataFrame([depth_row(s) for s in runs])


def depth_sentences(rows):
    """Per clipping (clipped first): the deepest stack against the shallowest, by perplexity."""
    out = []
    agg = {k: spread(g["best_valid_ppl"]) for k, g in rows.groupby(["clip", "n_layers"])}
    depths = sorted(rows["n_layers"].unique())
    for clip in sorted(rows["clip"].unique(), key=lambda c: c == "off"):
        have = [d for d in depths if (clip, d) in agg]
        if len(have) < 2:
            continue
        a, b = agg[(clip, have[0])], agg[(clip, have[-1])]
        verb = "helps" if b[0] < a[0] else "hurts"
        how = "clipping off" if clip == "off" else f"clipping at {clip}"
        out.append(f"With {how}, {have[-1]} layers instead of {have[0]} {verb}: validation perplexity "
                   f"{fmt_num(b[0], 4)} against {fmt_num(a[0], 4)}"
                   + ("." if a[2] < 2 and b[2] < 2 else " (more than the spread over seeds)." if clear(a, b)
                      else " (within the spread over seeds)."))
    return out


def gradient_sentence(L, clip, g, columns):
    """One depth and clipping's runs `g`: explosions, the largest gradient norm, each layer's g_t
    span and the layers where g_t vanishes."""
    how = "without clipping" if clip == "off" else f"clipped at {clip}"
    seeds = f"{len(g)} seeds" if len(g) > 1 else f"seed {g['seed'].iloc[0]}"
    boom = int(g["exploding"].sum())
    word = (f"exploding in {boom} of {len(g)}" if len(g) > 1 else "exploding") if boom else "no explosion"
    spans = [(int(c[5:-5]), g[c].mean()) for c in columns if c.endswith("_span") and np.isfinite(g[c]).any()]
    gone = [int(c[5:-10]) for c in columns if c.endswith("_vanishing") and (g[c] >= V.VANISHING_MIN_SHARE).any()]
    text = (f"{L} layer{'s' if L > 1 else ''} {how} ({seeds}): {word}, largest gradient norm "
            f"{fmt_num(g['max_grad_norm'].max(), 3)} = {fmt_num(g['norm_ratio'].max(), 3)}× the median")
    if spans:
        text += ("; g_t at the window's last step over its first (last check): "
                 + ", ".join(f"layer {l} {fmt_num(v, 3)}" for l, v in spans))
    text += (f"; vanishing (≥ {V.VANISHING_MIN_SHARE:.0%} of log10 g_t below {V.VANISHING_LOG10:g}) in layer "
             + ", ".join(map(str, gone)) if gone else "; no layer vanishing")
    return text + "."


def q3_text(rows):
    """When a second layer helps, with and without clipping; where gradients vanish or explode."""
    if not len(rows):
        return ["No runs that differ only in depth and clipping."]
    groups = sorted(rows.groupby(["n_layers", "clip"]), key=lambda kv: (kv[0][1] == "off", kv[0][0]))
    return depth_sentences(rows) + [gradient_sentence(L, clip, g, rows.columns) for (L, clip), g in groups]


def draw_gt(ax, first):
    """Each layer's g_t over the window at the last check: red unclipped, blue clipped."""
    for (L, clip), s in sorted(first.items()):
        color = "#d62728" if clip == "off" else "#1f77b4"
        for layer in sorted(s.layers):
            g = layer_gt(s, layer)
            if not len(g):
                continue
            ls = ("-", "--", ":")[layer % 3] if L > 1 else "-"
            lw = 2.0 if L == 1 else 1.2
            ax.plot(np.arange(len(g)), g, color=color, ls=ls, lw=lw,
                    label=f"{L} layer{'s' if L > 1 else ''}, clip {clip}: layer {layer}")
    ax.set_yscale("log")
    ax.set_xlabel("step t within the training window (last check)")
    ax.set_ylabel("batch-mean g_t = ‖∂L/∂h_t‖")
    ax.legend(fontsize="x-small")


def draw_norms(ax, first):
    """The gradient norm before clipping over training, smoothed."""
    for (L, clip), s in sorted(first.items()):
        color = "#d62728" if clip == "off" else "#1f77b4"
        gn = s.iter.get("grad_norm")
        if gn is not None:
            ax.plot(s.iter_x, stats.smooth(gn, 25) if len(gn) > 50 else gn,
                    color=color, ls="-" if L == 1 else "--", lw=1.0, label=f"{L} layer(s), clip {clip}")
    ax.set_yscale("log")
    ax.set_xlabel("update")
    ax.set_ylabel("gradient norm before clipping (moving mean of 25)")
    ax.legend(fontsize="x-small")


def draw(fig, runs):
    """The first run of each depth and clipping: its g_t per layer, its gradient norms."""
    first = {}
    for s in runs:
        first.setdefault((int(s.config.get("n_layers", 1)), clipping(s)), s)
    a1, a2 = fig.subplots(1, 2)
    draw_gt(a1, first)
    draw_norms(a2, first)
    fig.suptitle("Depth and clipping: per-layer g_t and gradient norms of the same runs", fontsize="medium")


def q3(lm):
    by = series([s for s in lm if s.config.get("cell") != "mlp"], FREE)
    runs = [s for v in by.values() for s in v]
    rows = depth_rows(runs)
    table = rows.drop(columns=["run"]) if len(rows) else rows
    return Answer(3, TITLE, q3_text(rows), table, (lambda fig: draw(fig, runs)) if len(rows) else None)
