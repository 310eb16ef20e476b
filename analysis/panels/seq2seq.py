"""Figures of a seq2seq run (family "seq2seq"), drawn from its per-check arrays:

    figure_attention      attention heat maps of the fixed examples early, middle and late
    figure_exact_length   greedy exact match against source length (and per input format)
    figure_encoder_grad   encoder g_t through source time, each layer and direction
    figure_teacher        teacher-forcing ratio and exact match over training
    figure_attention_entropy   a Transformer's attention entropy per head, gradient per block

plus two panels for `dynamics compare` (exact match against length, encoder g_t at the last check).
Its figures are whole figures, not rows of dashboard panels: no PANELS, no FIGURES.
"""
import os

import numpy as np
from matplotlib import cm, colors, patches
from matplotlib.ticker import MaxNLocator

from ..canvas import (G_LABEL, PANEL_H, PANEL_W, finish, iter_label, new_figure, panel_figure, percent_axis, save,
                      spread, title, x_limits)
from . import transformer

PANELS = []
FIGURES = {}


def is_seq2seq(snap):
    return snap.family == "seq2seq"


def checks_with(snap, name):
    a = snap.arrays.get(name)
    return [] if a is None else [k for k in range(len(a)) if np.isfinite(np.asarray(a[k], float)).any()]


CELL = 0.16          # inches per source character and output step in the attention maps
TICK_PT = 8          # points: a character per cell, the least that reads in print


def _at(snap, k):
    return f"update {int(snap.check_x[k])}"


# ----------------------------------------------------------------------------- attention
def figure_attention(snap):
    """Rows: fixed validation examples; columns: checks early, middle and late. x: source
    characters, y: the characters the model wrote (greedy), then <eos>. Every cell is the same
    square, CELL inches, so panels grow with their example and 30-symbol sources keep one
    legible label per character."""
    rows = checks_with(snap, "attention")
    if not rows:
        return None
    picks = sorted({rows[0], rows[len(rows) // 2], rows[-1]})
    maps, outputs = snap.arrays["attention"], snap.arrays["attention_output"]
    sources = [str(s) for s in snap.static["example_source"]]
    n = len(sources)
    longest = max(len(s) for s in sources)
    steps = [[min(len(str(outputs[k][e])) + 1, maps.shape[2]) for k in picks] for e in range(n)]
    tallest = [max(row) for row in steps]
    width = max(8.0, len(picks) * (longest * CELL + 0.9) + 1.3)
    height = sum(tallest) * CELL + n * 0.75 + 1.2
    fig = new_figure(width, height)
    axes = fig.subplots(n, len(picks), squeeze=False,
                        gridspec_kw=dict(height_ratios=tallest, width_ratios=[longest] * len(picks)))
    for e in range(n):
        src = sources[e]
        for j, k in enumerate(picks):
            ax = axes[e, j]
            out = str(outputs[k][e])
            m = steps[e][j]
            ax.imshow(maps[k, e, :m, :len(src)], cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xlim(-0.5, longest - 0.5)
            ax.set_ylim(tallest[e] - 0.5, -0.5)
            ax.set_anchor("NW")
            ax.set_xticks(range(len(src)), list(src.replace(" ", "␣")), fontsize=TICK_PT)
            ylabels = list(out.replace(" ", "␣"))[:m] + (["<eos>"] if len(out) + 1 <= maps.shape[2] else [])
            ax.set_yticks(range(len(ylabels)), ylabels, fontsize=TICK_PT)
            ax.tick_params(length=2, pad=1)
            for spine in ax.spines.values():
                spine.set_visible(False)
            ax.add_patch(patches.Rectangle((-0.5, -0.5), len(src), m, fill=False, lw=0.6, clip_on=False))   # frame
            if e == 0:
                ax.set_title(_at(snap, k), fontsize="medium")
            if j == 0:
                ax.set_ylabel("output", fontsize="small")
            if e == n - 1:
                ax.set_xlabel("source", fontsize="small")
    sm = cm.ScalarMappable(norm=colors.Normalize(0, 1), cmap="Greys")
    transformer = snap.cell == "transformer"      # several layers and heads: the top one's mean is drawn
    fig.colorbar(sm, ax=axes, shrink=min(0.5, 4.0 / height),
                 label="attention weight a_tj" + (" (mean of the heads)" if transformer else ""))
    what = "top decoder block's cross-attention" if transformer else "attention"
    fig.suptitle(title(snap, f"{what} on fixed validation examples (greedy decoding)", width), fontsize="large")
    return fig


# ----------------------------------------------------------------------------- exact match
def draw_exact_by_length(ax, snap, color=None, label=None, all_checks=True):
    """Greedy exact match (%) against source length, at checks spread over training."""
    a = snap.arrays["exact_by_length"]
    rows = checks_with(snap, "exact_by_length")
    picks = spread(rows) if all_checks else rows[-1:]
    norm = colors.Normalize(vmin=float(snap.check_x[picks[0]]), vmax=float(snap.check_x[picks[-1]]) + 1)
    for k in picks:
        y = np.asarray(a[k], float)
        last = k == picks[-1]
        ax.plot(np.arange(len(y)), y, marker="o", ms=3, lw=2.0 if last else 1.0,
                color=color or cm.viridis(0.85 * norm(snap.check_x[k])),
                label=label if label else (_at(snap, k) if len(picks) <= 6 else None))
    percent_axis(ax)
    ax.set_xlabel("source length (characters)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))   # lengths are whole characters
    ax.set_ylabel("greedy exact match (%)")
    ax.set_title("Exact match against source length")
    ax.grid(alpha=0.3)


def figure_exact_length(snap):
    if not checks_with(snap, "exact_by_length"):
        return None
    formats = [str(f) for f in snap.static.get("formats", [])]
    per_format = len(formats) > 1 and checks_with(snap, "exact_by_format")
    width = PANEL_W * (2 if per_format else 1.4)
    fig = new_figure(width, PANEL_H + 1.0)
    axes = fig.subplots(1, 2 if per_format else 1, squeeze=False)[0]
    draw_exact_by_length(axes[0], snap)
    axes[0].legend(fontsize="small", title="check", loc="best")
    if per_format:
        k = per_format[-1]
        y = snap.arrays["exact_by_format"][k]
        bars = axes[1].bar(range(len(formats)), y, color="#2ca02c")
        axes[1].bar_label(bars, fmt="%.1f", fontsize="small")
        axes[1].set_xticks(range(len(formats)), formats, rotation=20, fontsize="small")
        percent_axis(axes[1], 108)      # room for the labels on the bars, the axis to 100
        axes[1].set_ylabel("greedy exact match (%)")
        axes[1].set_title(f"Per input format, {_at(snap, k)}")
    fig.suptitle(title(snap, "exact match on the validation set", width), fontsize="large")
    return finish(fig)


# ----------------------------------------------------------------------------- gradients
def encoder_parts(snap):
    return [(i, name) for i, name in snap.part_names.items() if name.startswith("enc")]


def draw_encoder_grad(ax, snap, index, k_rows, color=None, label=None):
    gt = snap.layers[index].grad_time
    norm = colors.Normalize(vmin=float(snap.check_x[k_rows[0]]), vmax=float(snap.check_x[k_rows[-1]]) + 1)
    for k in k_rows:
        g = gt[k]
        last = k == k_rows[-1]
        ax.plot(np.arange(len(g)), np.where(g > 0, g, np.nan), lw=2.0 if last else 1.0,
                color=color or cm.viridis(0.85 * norm(snap.check_x[k])),
                label=label if label else (_at(snap, k) if len(k_rows) <= 6 else None))
    ax.set_yscale("log")
    ax.set_xlabel("source step t (0 = first character)")
    ax.set_ylabel(G_LABEL + "\n(mean over sequences reaching t)")


def figure_encoder_grad(snap):
    parts = [(i, name) for i, name in encoder_parts(snap)
             if snap.layers.get(i) is not None and snap.layers[i].grad_time is not None]
    if not parts:
        return None
    rows = [k for k in range(len(snap.check_x)) if np.isfinite(snap.layers[parts[0][0]].grad_time[k]).any()]
    if not rows:
        return None
    picks = spread(rows)
    fig = new_figure(max(10.0, PANEL_W * len(parts)), PANEL_H + 1.0)
    axes = fig.subplots(1, len(parts), squeeze=False)[0]
    for ax, (i, name) in zip(axes, parts):
        draw_encoder_grad(ax, snap, i, picks)
        direction = {"f": "forward", "b": "backward"}.get(name[-1], "")
        ax.set_title(f"Encoder {name} {direction}".strip())
    axes[0].legend(fontsize="small", title="check")
    what = "∂L/∂x_t of the residual stream after each block" if snap.cell == "transformer" else "∂L/∂h_t"
    fig.suptitle(title(snap, f"encoder {what} through source time", PANEL_W * len(parts)), fontsize="large")
    return finish(fig)


# ----------------------------------------------------------------------------- teacher forcing
def figure_teacher(snap):
    ratio = snap.arrays.get("tf_ratio")
    if ratio is None or not is_seq2seq(snap):
        return None
    fig = new_figure(2 * PANEL_W, PANEL_H + 1.0)
    left, right = fig.subplots(1, 2)
    used = np.asarray(snap.arrays["tf_used"], float).reshape(-1)
    ratio = np.asarray(ratio, float).reshape(-1)
    keep = np.isfinite(ratio)
    it = np.arange(1, keep.sum() + 1)
    left.plot(it, used[keep], lw=0.6, color="#1f77b4", alpha=0.6, label="target tokens fed (share)")
    left.plot(it, ratio[keep], lw=2.0, ls="--", color="k", label="scheduled ratio ε_i")
    left.set_ylim(0, 1)
    for line in left.lines:          # a ratio of 1 or 0 on the frame, drawn whole
        line.set_clip_on(False)
    x_limits(left, snap, it)
    left.set_xlabel(iter_label(snap))
    left.set_ylabel("teacher-forcing ratio")
    left.set_title("Teacher forcing applied per update")
    left.legend(fontsize="small", loc="lower left")
    for key, name, color, ls, marker in (       # styles and markers: the curves meet near 100 %
            ("greedy_exact", "greedy exact match", "#2ca02c", "-", "o"),
            ("beam_exact", "beam exact match", "#9467bd", "--", "s"),
            ("greedy_token_acc", "greedy token accuracy", "#ff7f0e", "-.", "^"),
            ("tf_token_acc", "teacher-forced token accuracy", "#7f7f7f", ":", "v")):
        y = snap.check.get(key)
        if y is not None and len(y):
            right.plot(snap.check_x, y, marker=marker, ms=4, mfc="none", lw=1.4, ls=ls, color=color, label=name)
    percent_axis(right)
    x_limits(right, snap, snap.check_x)
    right.set_xlabel(iter_label(snap))
    right.set_ylabel("validation (%)")
    right.set_title("Validation accuracy over training")
    right.legend(fontsize="small", loc="lower right")
    right.grid(alpha=0.3)
    fig.suptitle(title(snap, "teacher forcing and exact match", 2 * PANEL_W), fontsize="large")
    return finish(fig)


def figure_attention_entropy(snap):
    """A Transformer's attention entropies per head and gradient norm per block (the panels of
    `<name>_attention.png` of the other families; here that name holds the heat maps)."""
    what, keys = transformer.FIGURES["attention"]
    by_key = {p.key: p for p in transformer.PANELS}
    return panel_figure(snap, what, [by_key[k] for k in keys])


#: figure name -> function of a snapshot, each written as <run>_<name>.png
FIGURE_FUNCTIONS = {"attention": figure_attention, "exact_length": figure_exact_length,
                    "encoder_grad": figure_encoder_grad, "teacher": figure_teacher,
                    "attention_entropy": figure_attention_entropy}


def plot_seq2seq(snap, out_dir, dpi):
    """The seq2seq figures of `snap` that have data, as PNG files; their paths."""
    written = []
    if not is_seq2seq(snap):
        return written
    for name, fn in FIGURE_FUNCTIONS.items():
        fig = fn(snap)
        if fig is not None:
            written.append(save(fig, os.path.join(out_dir, f"{snap.name}_{name}.png"), dpi))
    return written


# ----------------------------------------------------------------------------- compare panels
def compare_exact_by_length(ax, runs):
    for s, color in runs:
        if "exact_by_length" in s.arrays and checks_with(s, "exact_by_length"):
            draw_exact_by_length(ax, s, color=color, label=s.name, all_checks=False)
    ax.set_title("Exact match against source length, last check")


def compare_encoder_grad(ax, runs):
    for s, color in runs:
        parts = encoder_parts(s)
        if parts and s.layers[parts[0][0]].grad_time is not None and len(s.layers[parts[0][0]].grad_time):
            draw_encoder_grad(ax, s, parts[0][0], [len(s.check_x) - 1], color=color, label=s.name)
    ax.set_title("Encoder (first layer, forward) g_t, last check")


COMPARE_PANELS = [
    ("exact_by_length", lambda s: "exact_by_length" in s.arrays, compare_exact_by_length),
    ("encoder_grad_time", lambda s: is_seq2seq(s) and bool(encoder_parts(s)), compare_encoder_grad),
]
