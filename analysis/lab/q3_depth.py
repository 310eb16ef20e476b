"""Question 3: depth, and where gradients vanish or explode without clipping. The runs that differ
only in the number of layers, the dropout between them and the clipping: each pair of settings
that differs in one of the three is compared over seeds (so that depth is not read off a run that
also has dropout), and per setting the gradient norms and each layer's g_t at the last check."""
import math

import numpy as np
import pandas as pd

from .. import stats, verdicts as V
from ..stats import fmt_num
from ..intervals import estimate, sentence
from .common import Answer, clipping, column, min_finite, over_seeds, per_seed, series

TITLE = "Depth, vanishing and exploding gradients"
FREE = ("n_layers", "dropout", "clip", "cutoff")     # what the question varies
AXES = ("n_layers", "dropout", "clip")                # compared one at a time
METRICS = ("best_valid_ppl", "max_grad_norm", "median_grad_norm", "norm_ratio", "clipped")


def setting_label(L, dropout, clip):
    return f"{L} layer{'s' if L > 1 else ''}, dropout {fmt_num(dropout)}, clip {clip}"


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
    """A run's depth, dropout, clipping, perplexity, gradient norms and, per layer, g_t's span."""
    gn = stats.grad_norm_stats(s)
    best = min_finite(column(s, "valid_loss"))
    L, dropout = int(s.config.get("n_layers", 1)), float(s.config.get("dropout") or 0.0)
    row = {"run": s.name, "setting": setting_label(L, dropout, clipping(s)), "n_layers": L, "dropout": dropout,
           "clip": clipping(s), "seed": s.config.get("seed"),
           "best_valid_ppl": math.exp(best) if math.isfinite(best) else math.nan,
           "max_grad_norm": gn["max"], "median_grad_norm": gn["median"],
           "norm_ratio": gn["max"] / gn["median"] if gn["median"] > 0 else math.nan,
           "clipped": gn["share_clipped"], "exploding": V.exploding(s) is not None}
    for layer in sorted(s.layers):
        g = layer_gt(s, layer)
        row[f"layer{layer}_span"] = float(g[-1] / g[0]) if len(g) > 1 and g[0] > 0 else math.nan
    return row


def depth_rows(runs):
    return pd.DataFrame([depth_row(s) for s in runs])


def pair_sentence(rows, a, b):
    """Settings `a` and `b` ((n_layers, dropout, clip), differing in one) compared on perplexity."""
    changed = next(i for i in range(3) if a[i] != b[i])
    kept = ", ".join(f"{k.replace('n_layers', 'layers')} {fmt_num(v) if isinstance(v, float) else v}"
                     for i, (k, v) in enumerate(zip(AXES, a)) if i != changed)
    word = ("Depth", "Dropout", "Clipping")[changed]
    name = lambda x: (f"{x[0]} layer{'s' if x[0] > 1 else ''}", f"dropout {fmt_num(x[1])}", f"clip {x[2]}")[changed]
    ppl = over_seeds(rows, list(AXES), "best_valid_ppl")
    return (f"{word} ({kept}), best validation perplexity: "
            + sentence(name(b), ppl[b], name(a), ppl[a], lower_is_better=True, digits=4) + ".")


def comparison_sentences(rows):
    """Every pair of settings that differs in exactly one of depth, dropout and clipping."""
    keys = sorted({tuple(k) for k in rows[list(AXES)].itertuples(index=False)},
                  key=lambda k: (k[2] == "off", k[0], k[1]))
    pairs = [(a, b) for i, a in enumerate(keys) for b in keys[i + 1:] if sum(x != y for x, y in zip(a, b)) == 1]
    return [pair_sentence(rows, a, b) for a, b in pairs]


def gradient_sentence(key, g, columns):
    """One setting's runs `g`: explosions, the largest gradient norm against the median, the
    clipped share and each layer's g_t at the window's last step over its first."""
    seeds = f"{len(g)} seeds" if len(g) > 1 else f"one seed ({g['seed'].iloc[0]})"
    boom = int(g["exploding"].sum())
    word = f"exploding in {boom} of {len(g)}" if boom else "no explosion"
    text = (f"{setting_label(*key)} ({seeds}): {word}; largest gradient norm {fmt_num(g['max_grad_norm'].max(), 3)} "
            f"= {fmt_num(g['norm_ratio'].max(), 3)}× the median, {fmt_num(100 * g['clipped'].mean(), 2)}% of updates "
            f"clipped")
    spans = [(int(c[5:-5]), estimate(g[c])) for c in columns if c.endswith("_span") and np.isfinite(g[c]).any()]
    if spans:
        text += ("; g_t at the window's last step over its first (last check): "
                 + ", ".join(f"layer {l} {e.text(3)}" for l, e in spans))
    return text + "."


EVERY_STEP = ("With a loss at every character, g_t is the total derivative of all the losses from t on: it is fed "
              "at every step and cannot show whether the gradient of one loss vanishes over many steps, so no "
              "vanishing is read from it here; how far context helps is question 5's.")


def q3_text(rows):
    """Each one-key comparison, then per setting where gradients explode and what g_t shows."""
    if not len(rows):
        return ["No runs that differ only in depth, dropout and clipping."]
    groups = sorted(rows.groupby(list(AXES)), key=lambda kv: (kv[0][2] == "off", kv[0][0], kv[0][1]))
    return (comparison_sentences(rows) + [gradient_sentence(k, g, rows.columns) for k, g in groups]
            + [EVERY_STEP])


COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b")


def draw_gt(ax, first):
    """Each layer's g_t over the window at the last check: one colour per setting, one line style
    per layer."""
    for color, (key, s) in zip(COLORS, sorted(first.items(), key=lambda kv: (kv[0][2] == "off", kv[0]))):
        for layer in sorted(s.layers):
            g = layer_gt(s, layer)
            if not len(g):
                continue
            ax.plot(np.arange(len(g)), g, color=color, ls=("-", "--", ":")[layer % 3], lw=1.4,
                    marker="x" if key[2] == "off" else None, markevery=6, ms=5,      # clipped or not may coincide
                    label=f"{setting_label(*key)}: layer {layer}")
    ax.set_yscale("log")
    ax.set_xlabel("step t within the training window (last check)")
    ax.set_ylabel("batch-mean g_t = ‖∂L/∂h_t‖")
    ax.legend(fontsize=8)


def draw_norms(ax, first):
    """The gradient norm before clipping over training, smoothed."""
    for color, (key, s) in zip(COLORS, sorted(first.items(), key=lambda kv: (kv[0][2] == "off", kv[0]))):
        gn = s.iter.get("grad_norm")
        if gn is not None:
            ax.plot(s.iter_x, stats.smooth(gn, 25) if len(gn) > 50 else gn,
                    color=color, ls=("-", "--", "-.", ":")[COLORS.index(color) % 4], lw=1.0, label=setting_label(*key))
    ax.set_yscale("log")
    ax.set_xlabel("update")
    ax.set_ylabel("gradient norm before clipping (moving mean of 25)")
    ax.legend(fontsize=8)


def draw(fig, runs):
    """The first seed of each setting: its g_t per layer, its gradient norms."""
    first = {}
    for s in sorted(runs, key=lambda s: s.config.get("seed") or 0):
        first.setdefault((int(s.config.get("n_layers", 1)), float(s.config.get("dropout") or 0.0), clipping(s)), s)
    a1, a2 = fig.subplots(1, 2)
    draw_gt(a1, first)
    draw_norms(a2, first)
    fig.suptitle("Depth, dropout and clipping: per-layer g_t and gradient norms (first seed of each setting)",
                 fontsize="medium")


def q3(lm):
    by = series([s for s in lm if s.config.get("cell") != "mlp"], FREE)
    runs = [s for v in by.values() for s in v]
    rows = depth_rows(runs)
    table = rows.drop(columns=["run"]).sort_values(["clip", "n_layers", "dropout", "seed"]) if len(rows) else rows
    spans = [c for c in rows.columns if c.endswith("_span")]
    return Answer(3, TITLE, q3_text(rows), table, (lambda fig: draw(fig, runs)) if len(rows) else None,
                  values=per_seed(rows, "setting", METRICS + tuple(spans)))
