"""What every figure shares: the `Panel` a figure is made of, the Agg figure without pyplot
(`new_figure`, `freeze`, `save`), the title with the run's key config, the sizes, colours and
axis labels, and small helpers the panels of several topics use.

A panel draws one axes from a `Snapshot` and says whether the run has its data; a figure is a
row of panels (`panel_figure`), the ones without data left out, so no figure has empty axes.
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
from matplotlib.ticker import LogFormatter, MaxNLocator

from . import stats
from .stats import fmt_num

PANEL_W, PANEL_H = 5.4, 4.0          # inches per panel
DPI = 100
COLORS = {"before": "#1f77b4", "after": "#ff7f0e", "clip": "#d62728", "nonfinite": "#8b0000",
          "valid": "#2ca02c", "train": "#1f77b4", "band": "#d62728", "rho": "#9467bd",
          "sigma": "#8c564b"}
GATE_COLORS = {"z": "#1f77b4", "r": "#ff7f0e", "i": "#2ca02c", "f": "#d62728", "o": "#9467bd"}
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
    """'iteration 2000' (or 'check 12') for check row k."""
    word = "iteration" if snap.check_xlabel.startswith("iteration") else "check"
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


def draw_row(parent, snap, panels, ncols=None):
    """Draw `panels` side by side in `parent`, each in its own subfigure so that a colour bar or
    a long label in one panel does not squeeze the others; `ncols` pads a short row."""
    spans = [p.span for p in panels]
    widths = spans + ([ncols - sum(spans)] if ncols and sum(spans) < ncols else [])
    subs = np.atleast_1d(parent.subfigures(1, len(widths), width_ratios=widths, wspace=0.0))
    for sub, panel in zip(subs, panels):
        ax = sub.add_subplot()
        panel.draw(ax, snap)


def panel_figure(snap, what, panels):
    """One row of the `panels` that have data, titled `what`; None when none has."""
    panels = [p for p in panels if p.available(snap)]
    if not panels:
        return None
    cols = sum(p.span for p in panels)
    width = max(PANEL_W * cols, 10.0)
    height = PANEL_H + 0.9
    fig = new_figure(width, height)
    draw_row(fig, snap, panels)
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
        status = f"running, snapshot at iteration {snap.iterations_done}"
    head = f"{snap.name} ({status}): {what}" if what else f"{snap.name} ({status})"
    chars = max(40, int(width_in * 11))
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
    if len(x):
        ax.set_xlim(min(0, float(np.nanmin(x))), float(np.nanmax(x)) * 1.01 + 1e-9)


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
    vmin = max(float(masked.min()) if masked.count() else 1e-3, 1e-3)
    mesh = ax.pcolormesh(_check_edges(x), edges, masked, shading="flat", cmap="magma",
                         norm=colors.LogNorm(vmin=vmin, vmax=max(float(masked.max()), vmin * 10)),
                         rasterized=True)
    ax.set_facecolor("#f4f4f4")
    cb = ax.get_figure(root=False).colorbar(mesh, ax=ax, pad=0.01)
    cb.set_label("share of the check's mass (% per bin, log scale)")
    for y, style in hlines:
        ax.axhline(y, color="#00bfff", lw=1.0, ls=style)
    if ylim:
        ax.set_ylim(*ylim)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))   # the colour bar narrows the panel
    ax.set_xlabel(snap.check_xlabel)
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
