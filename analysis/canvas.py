"""What every figure shares: the `Panel` a figure is made of, the Agg figure without pyplot
(`new_figure`, `freeze`, `save`), the title with the run's key config, the sizes, colours and
axis labels, and small helpers the panels of several topics use.

A panel draws one axes from a `Snapshot` and says whether the run has its data; a figure is
rows of panels (`panel_figure`), the ones without data left out, so no figure has empty axes.
Figures are made to be printed: at most PRINT_COLS panels side by side on a page's width, so that
their text (matplotlib's sizes, "small" at 8.3 pt the least) is read at its own size; what every
panel's axes need for print (a marker on a lone point, a plain range for a degenerate axis, shares
on 0–100 %) is done once here, in `finish_axes` and `percent_axis`.
This module imports no panel and no figure: the topics of analysis/panels/ build on it, and
analysis/figures.py assembles them.
"""
import math
import textwrap
from dataclasses import dataclass
from typing import Callable

import numpy as np
from matplotlib import colors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import LogFormatter, MaxNLocator, ScalarFormatter
from matplotlib.transforms import offset_copy

from . import stats
from .stats import fmt_num

PANEL_W, PANEL_H = 5.4, 4.0          # inches per panel
PAGE_W, PAGE_H = 11.69, 8.27         # A4 landscape, inches: the printed page
PRINT_COLS = 2                       # panels side by side on a page's width
DPI = 100
COLORS = {"before": "#1f77b4", "after": "#ff7f0e", "clip": "#d62728", "nonfinite": "#8b0000",
          "valid": "#2ca02c", "train": "#1f77b4", "band": "#d62728", "rho": "#9467bd",
          "sigma": "#8c564b"}
GATE_COLORS = {"z": "#1f77b4", "r": "#ff7f0e", "i": "#2ca02c", "f": "#d62728", "o": "#9467bd"}
BLOCK_MARKERS = ("o", "s", "^", "v", "D", "P")     # a marker per block or run, beside its colour
#: (line style, marker) per gate: gates' curves often lie on one another, so colour alone is not enough
GATE_STYLES = {"z": ("-", "o"), "r": ("--", "s"), "i": ("-", "o"), "f": ("--", "s"), "o": (":", "^")}
G_LABEL = r"$g_t = \|\partial L/\partial h_t\|_2$"
G_LABEL_TRANSFORMER = r"$g_t = \|\partial L/\partial x_t\|_2$ (residual stream)"
END_ALIGNED_LABEL = "steps before each sequence's last token (0 = last token)"


@dataclass
class Panel:
    """One axes of a figure: `available(snap)` says whether the run has its data, `draw(ax, snap)`
    draws it; `span` is its width in panel columns."""
    key: str
    available: Callable
    draw: Callable
    span: int = 1


# ----------------------------------------------------------------------------- labels

def g_label(snap):
    """What g_t is: ‖∂L/∂h_t‖ of the recurrent states, or a Transformer's ‖∂L/∂x_t‖ after a block."""
    return G_LABEL_TRANSFORMER if getattr(snap, "cell", "") == "transformer" else G_LABEL


def axis_word(label):
    """"update" for an axis of updates, whatever the optimiser (the reader calls them
    'iteration (SGD update)', also in an Adam run); other labels ("check number") unchanged."""
    return "update" if label.startswith("iteration") else label


def check_label(snap):
    """The x label of the per-check arrays: "update", or "check number" for a final-state NPZ."""
    return axis_word(snap.check_xlabel)


def iter_label(snap):
    """The x label of the per-update arrays."""
    return axis_word(snap.iter_xlabel)


def time_label(snap):
    return END_ALIGNED_LABEL if snap.end_aligned else "time step t (0 = first input)"


def token(snap):
    """What a language model predicts: char or word."""
    return "word" if snap.attrs.get("tokens") == "word" else "char"


def loss_unit(snap):
    if snap.task in ("add", "mul"):
        return "squared error"
    if snap.task == "text":
        return f"nats/{token(snap)}"
    return "nats"


def at_check(snap, k):
    """'update 2000' (or 'check 12') for check row k."""
    word = "update" if check_label(snap) == "update" else "check"
    return f"{word} {int(snap.check_x[k])}"


# ----------------------------------------------------------------------------- figures

def new_figure(width, height):
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def freeze(fig, dpi=DPI):
    """Run the constrained layout once and keep it: savefig would otherwise lay the figure out
    again in a dry-run draw and once more in the real one (most of the cost of a dashboard)."""
    fig.set_dpi(dpi)
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)
        fig.set_layout_engine(None)
    return fig


def save(fig, path, dpi=DPI):
    """Write `fig` to `path` (format from the suffix); the size is exactly figsize × dpi."""
    freeze(fig, dpi).savefig(path, dpi=dpi)
    return path


def pack_rows(panels, ncols=PRINT_COLS):
    """Rows of `panels` (objects with a `span`), each panel in the first row with room for it,
    so that a wide panel leaves no hole before it; a panel wider than a row gets a row."""
    rows, used = [], []
    for p in panels:
        span = min(p.span, ncols)
        free = [i for i, u in enumerate(used) if u + span <= ncols]
        if free:
            rows[free[0]].append(p)
            used[free[0]] += span
        else:
            rows.append([p])
            used.append(span)
    return rows


def draw_row(parent, snap, panels, ncols=None):
    """Draw `panels` side by side in `parent`, each in its own subfigure so that a colour bar or
    a long label in one panel does not squeeze the others; `ncols` pads a short row. Returns the
    subfigures, the padding's last."""
    spans = [p.span for p in panels]
    widths = spans + ([ncols - sum(spans)] if ncols and sum(spans) < ncols else [])
    subs = np.atleast_1d(parent.subfigures(1, len(widths), width_ratios=widths, wspace=0.0))
    for sub, panel in zip(subs, panels):
        ax = sub.add_subplot()
        panel.draw(ax, snap)
        for drawn in sub.axes:
            finish_axes(drawn)
    return subs


def panel_figure(snap, what, panels):
    """The `panels` that have data, PRINT_COLS to a row, titled `what`; None when none has."""
    panels = [p for p in panels if p.available(snap)]
    if not panels:
        return None
    rows = pack_rows(panels)
    ncols = max(sum(min(p.span, PRINT_COLS) for p in row) for row in rows)
    width = max(PANEL_W * ncols, 10.0)
    fig = new_figure(width, PANEL_H * len(rows) + 0.9)
    subs = np.atleast_1d(fig.subfigures(len(rows), 1, hspace=0.0))
    for sub, row in zip(subs, rows):
        draw_row(sub, snap, row, ncols)
    fig.suptitle(title(snap, what, width), fontsize="large")
    return fig


# ------------------------------------------------------------------------ title and config

def config_parts(snap):
    """The key config of a run as {key: short text}: task, cell (+ activation), layers, init,
    clipping and cutoff, Ω alpha, hidden size, lengths, learning rate."""
    c = snap.cfg
    parts = {"task": f"task {snap.task}"} if snap.task != "?" else {}
    _model_parts(snap, parts)
    _clip_parts(snap, parts)
    _seq2seq_parts(snap, parts)
    _size_parts(snap, parts)
    lr = c("lr", "learning_rate")
    if lr is not None:
        opt = c("optimizer")
        parts["lr"] = (f"{opt} " if opt and opt != "sgd" else "") + f"lr {fmt_num(float(lr))}"
        schedule = c("lr_schedule")
        if schedule and schedule != "constant":
            parts["lr"] += f" {schedule}"
    return _classify_parts(snap, parts)


def _model_parts(snap, parts):
    """cell (+ activation), tokens, layers, init."""
    c = snap.cfg
    act = c("activation", "act")
    parts["cell"] = f"{snap.cell.upper()} {act}" if act and snap.cell == "rnn" else snap.cell.upper()
    if snap.cell == "mlp":
        parts["cell"] = f"MLP W={c('window')}"
    if c("tokens") == "word":
        parts["tokens"] = f"words (vocab {c('vocab_size')})"
    layers = c("n_layers", "layers")
    if layers and int(layers) > 1:
        parts["layers"] = f"{layers} layers"
    init = c("init") if snap.cell != "transformer" else None
    if init:
        parts["init"] = f"init {init}"


def _clip_parts(snap, parts):
    """clipping and its cutoff, Ω alpha, gate initialisation."""
    c = snap.cfg
    style = c("clip", "clipstyle", "clipping")
    cutoff = c("cutoff", "clip_cutoff")
    if style is not None or cutoff is not None:
        clipping_on = style not in ("", "none", False) and cutoff not in (None, 0)
        parts["clip"] = (f"clip {style or 'rescale'} c={fmt_num(float(cutoff))}" if clipping_on
                         else "no clipping")
    alpha = c("alpha", "omega_alpha")
    if alpha is not None:
        parts["alpha"] = f"Ω α={fmt_num(float(alpha))}" if float(alpha) else "no Ω"
    if c("gate_init") not in (None, "default") and snap.cell in ("gru", "lstm", "lnlstm"):
        parts["gate_init"] = f"{c('gate_init')} gates"


def _seq2seq_parts(snap, parts):
    """A seq2seq run's attention and teacher forcing."""
    if snap.family != "seq2seq":
        return
    c = snap.cfg
    if snap.cell != "transformer":
        parts["attention"] = "no attention" if c("attention") == "none" else f"{c('attention')} attention"
    tf, schedule = c("teacher_forcing"), c("tf_schedule")
    if tf is not None and (float(tf) != 1.0 or schedule not in (None, "constant")):
        parts["teacher_forcing"] = f"TF {fmt_num(float(tf))}" + (
            f" {schedule} k={fmt_num(float(c('tf_k')))}" if schedule not in (None, "constant") else "")


def _size_parts(snap, parts):
    """hidden size (a Transformer's width and heads) and sequence lengths."""
    c = snap.cfg
    hidden = c("n_hidden", "nhid", "hidden")
    if snap.cell == "transformer":
        parts["hidden"] = f"d={c('d_model')}, {c('n_heads')} heads, {c('positions')} positions"
    elif hidden is not None:
        parts["hidden"] = f"H={hidden}"
    lo, hi = c("min_length"), c("max_length")
    if c("task") in ("names_gen", "sentiment_gen"):   # whole sequences: the class enters instead
        parts["length"] = f"condition {c('condition')}"
    elif lo is not None and c("task") == "text":   # a text run's window is min_length
        parts["length"] = f"T {lo}"
    elif lo is not None and hi is not None and c("task") != "date":   # date: lengths by format
        parts["length"] = f"T {lo}–{hi}" if lo != hi else f"T {lo}"
    elif c("seq_len", "bptt") is not None:
        parts["length"] = f"T {c('seq_len', 'bptt')}"


def _classify_parts(snap, parts):
    """A classification run's key config: pooling, directions, class balance and weighting,
    sentiment's lengths and distance, truncation (other runs' parts pass unchanged)."""
    if snap.family != "classify":
        return parts
    c = snap.cfg
    parts.pop("alpha", None)
    if c("bidirectional"):
        parts["cell"] = "bi" + parts["cell"]
    parts["pooling"] = f"{c('pooling')} pooling"
    if snap.task == "names":
        parts.pop("length", None)
        if c("class_balance"):
            parts["balance"] = "balance " + "/".join(fmt_num(float(p)) for p in c("class_balance"))
    elif c("distance") is not None and int(c("distance")) >= 0:
        parts["distance"] = f"distance {c('distance')}"
    if c("class_weighting") not in (None, "none"):
        parts["weighting"] = f"{c('class_weighting')} weighting"
    if c("truncate"):
        parts["truncate"] = f"last {c('truncate')} tokens"
    return parts


def config_line(snap):
    """The key config of a run in one line: task, cell, activation, init, clipping, Ω, sizes, lr."""
    return " · ".join(config_parts(snap).values())


def title(snap, what, width_in):
    status = "final-state NPZ" if snap.source == "npz" else snap.status
    if status == "running":
        status = f"running, snapshot at update {snap.iterations_done}"
    elif status == "stopped":
        status = f"stopped without closing at update {snap.iterations_done}"
    head = f"{snap.name} ({status}): {what}" if what else f"{snap.name} ({status})"
    chars = max(40, int(width_in * 8.5))     # of the x-large title that fit in the width, with room
    return "\n".join(textwrap.wrap(head, chars) + textwrap.wrap(config_line(snap), chars))


# ----------------------------------------------------------------------------- axes

class _PlainLogFormatter(LogFormatter):
    """Log-axis labels as plain numbers (0.3, 2, 50) instead of 3×10⁻¹."""

    def _num_to_string(self, x, vmin, vmax):
        return f"{x:g}"


def readable_log_axis(ax, axis="y", max_decades=3.0):
    """On a log axis spanning few decades, label minor ticks too, as plain numbers."""
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    if lo > 0 and hi > 0 and math.log10(hi / lo) <= max_decades:
        target = ax.yaxis if axis == "y" else ax.xaxis
        target.set_major_formatter(_PlainLogFormatter())
        target.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False,
                                                      minor_thresholds=(2, 0.5)))


def log_if_spans(ax, *arrays, decades=1.5):
    """Log y axis when the positive finite values span more than `decades` decades."""
    vals = np.concatenate([np.asarray(a, float).ravel() for a in arrays if a is not None])
    vals = vals[np.isfinite(vals)]
    if len(vals) and np.all(vals > 0) and np.log10(vals.max() / vals.min()) > decades:
        ax.set_yscale("log")
        return True
    return False


def x_limits(ax, snap, x):
    """From 0 (or the first x below it) to the last x, with room for a marker at the end."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if len(x):
        lo, hi = min(0.0, float(x.min())), float(x.max())
        ax.set_xlim(lo, hi + 0.04 * max(hi - lo, 1.0))


def percent_axis(ax, top=100.0):
    """An accuracy or share (%) axis from 0 to `top` (room above the highest value), never above
    100; lines and markers at 0 or 100 drawn whole over the frame instead of cut or hidden by it."""
    ax.set_ylim(0, min(100.0, float(top)))
    for line in ax.lines:
        line.set_clip_on(False)
        line.set_zorder(max(line.get_zorder(), 3))        # above the spines (2.5)


def legend_below(ax, ncols=2, **kwargs):
    """The legend under the axes, below the x label, where it hides no data and needs no headroom
    on a log or a 0–100 % axis; the constrained layout makes room for it."""
    below_label = offset_copy(ax.transAxes, fig=ax.get_figure(root=True), y=-0.55, units="inches")
    return ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), bbox_transform=below_label,
                     ncols=ncols, fontsize="small", **kwargs)


# ------------------------------------------------------------------- rules for every axes

LONE_MARKER = "o"


def finish(fig):
    """`finish_axes` on every axes of a figure drawn in one piece (not of panels); `fig`."""
    for ax in fig.axes:
        finish_axes(ax)
    return fig


def finish_axes(ax):
    """What every panel needs for print, whoever drew it: a lone point gets a marker (a one-point
    line draws nothing), a degenerate axis a plain range."""
    _mark_lone_points(ax)
    _plain_degenerate_axes(ax)


def _mark_lone_points(ax):
    """A line with fewer than two finite points is invisible without a marker: give it one, in
    its legend entry too."""
    marked = set()
    for line in ax.lines:
        x, y = (np.asarray(v, float) for v in (line.get_xdata(), line.get_ydata()))
        if len(x) != len(y) or line.get_marker() not in (None, "None", "", " ", ".", ","):
            continue
        if np.sum(np.isfinite(x) & np.isfinite(y)) == 1:
            line.set_marker(LONE_MARKER)
            line.set_markersize(max(line.get_markersize(), 5))
            marked.add(line.get_label())
    legend = ax.get_legend()
    if legend is not None and marked:
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            if text.get_text() in marked and isinstance(handle, Line2D):
                handle.set_marker(LONE_MARKER)


def _plain_degenerate_axes(ax):
    """One update on the x axis, or values equal to four digits (a norm clipped at its cutoff
    every time), would get an axis of rounding noise (0.96 to 1.04, an offset of +1.814, ten
    ticks all labelled 0.01): widen it to a plain range. Limits the panel chose are kept."""
    for axis, (lo, hi), auto, set_lim in (
            (ax.xaxis, ax.dataLim.intervalx, ax.get_autoscalex_on(), ax.set_xlim),
            (ax.yaxis, ax.dataLim.intervaly, ax.get_autoscaley_on(), ax.set_ylim)):
        if not (np.isfinite(lo) and np.isfinite(hi)):
            continue
        formatter = axis.get_major_formatter()
        if isinstance(formatter, ScalarFormatter):
            formatter.set_useOffset(False)
        if not auto:
            continue
        if axis.get_scale() == "log":
            if lo > 0 and hi <= lo * (1 + 1e-3):
                set_lim(lo / 2, hi * 2)
            continue
        centre = (lo + hi) / 2
        if hi - lo > (1e-3 * abs(centre) if centre else 0):
            continue
        if axis is ax.xaxis:        # an x axis of updates or steps: from 0 to past the point
            set_lim(min(0.0, lo), hi + 0.04 * max(abs(hi), 1.0))
        else:
            half = 0.05 * abs(centre) if centre else 1.0
            set_lim(centre - half, centre + half)


def _check_edges(x):
    """Cell edges around the check positions x, for a heat map."""
    x = np.asarray(x, float)
    if len(x) == 1:
        return np.array([x[0] - 0.5, x[0] + 0.5])
    mid = (x[1:] + x[:-1]) / 2
    return np.concatenate([[x[0] - (mid[0] - x[0])], mid, [x[-1] + (x[-1] - mid[-1])]])


def heat(ax, snap, q, label, ylim=None, hlines=()):
    """Histogram `q` over training: one column per check with data, each column's share of its
    mass per bin on a log colour scale; `hlines` are (y, line style) marks."""
    rows = snap.hists[q]
    edges = snap.edges[q]
    keep = stats.rows_with_data(rows)
    rows, x = rows[keep], snap.check_x[keep]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = 100 * rows / rows.sum(axis=1, keepdims=True)
    masked = np.ma.masked_less_equal(share.T, 0)
    vmax = float(masked.max()) if masked.count() else 100.0       # a share: at most 100 %
    vmin = min(max(float(masked.min()) if masked.count() else 1e-3, 1e-3), vmax / 10)
    mesh = ax.pcolormesh(_check_edges(x), edges, masked, shading="flat", cmap="magma",
                         norm=colors.LogNorm(vmin=vmin, vmax=vmax), rasterized=True)
    ax.set_facecolor("#f4f4f4")
    cb = ax.get_figure(root=False).colorbar(mesh, ax=ax, pad=0.01)
    cb.set_label("share of the check's mass (% per bin, log scale)")
    for y, style in hlines:
        ax.axhline(y, color="#00bfff", lw=1.0, ls=style)
    if ylim:
        ax.set_ylim(*ylim)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))   # the colour bar narrows the panel
    ax.set_xlabel(check_label(snap))
    ax.set_ylabel(label)


# ----------------------------------------------------------------------------- data

def finite(y):
    """`y` has at least one finite value."""
    return y is not None and len(y) and np.any(np.isfinite(y))


def spread(indices, n=6):
    """At most `n` of `indices`, evenly spread, the first and the last kept."""
    if len(indices) <= n:
        return list(indices)
    pick = np.unique(np.round(np.linspace(0, len(indices) - 1, n)).astype(int))
    return [indices[i] for i in pick]


def has_final(q):
    """Availability: histogram `q` has a check with data."""
    return lambda snap: stats.final_hist(snap, q) is not None


def has_evolution(q):
    """Availability: histogram `q` has two checks with data or more (a heat map over training)."""
    return lambda snap: q in snap.hists and len(stats.rows_with_data(snap.hists[q])) >= 2
