"""Figures of one run. Each figure is a list of panels; a panel draws one axes from a
`Snapshot` and is left out when its data are absent, so no figure has empty axes.

    figure_grad_hist      log10 g_t histogram at the end, and over training (heat map)
    figure_grad_time      g_t against t at checks spread over training; per layer
    figure_saturation     hidden saturation 1 - |h| at the end, and over training
    figure_gates          gate saturation min(v, 1 - v) per gate, and over training
    figure_training       validation error, training and validation loss (LM: bpc, perplexity)
    figure_grad_norm      global gradient norm before/after clipping, clipped and non-finite steps
    figure_spectrum       ρ and σ_max of the recurrent matrix; its eigenvalues at start and end
    figure_omega          Ω and steps in the past
    jacobians, lyapunov, surface, groups: the theory's objects (analysis/theory_figures.py)
    figure_dashboard      all panels and the verdicts on one page

Every function returns a matplotlib Figure (Agg canvas, constrained layout) or None when the
run has none of the data. `save(fig, path)` writes it. No pyplot: nothing opens a window.
"""
import math
import textwrap
from dataclasses import dataclass
from typing import Callable

import numpy as np
from matplotlib import cm, colors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import LogFormatter, MaxNLocator

from . import classify_figures, conditional_figures, stats, theory_figures, transformer_figures as TF, verdicts as V
from .stats import fmt_num, fmt_pct

PANEL_W, PANEL_H = 5.4, 4.0          # inches per panel
MAX_CLIP_MARKERS = 400               # clipped steps marked one by one up to this many
DPI = 100
COLORS = {"before": "#1f77b4", "after": "#ff7f0e", "clip": "#d62728", "nonfinite": "#8b0000",
          "valid": "#2ca02c", "train": "#1f77b4", "band": "#d62728", "rho": "#9467bd",
          "sigma": "#8c564b"}
GATE_COLORS = {"z": "#1f77b4", "r": "#ff7f0e", "i": "#2ca02c", "f": "#d62728", "o": "#9467bd"}
G_LABEL = r"$g_t = \|\partial L/\partial h_t\|_2$"
G_LABEL_TRANSFORMER = r"$g_t = \|\partial L/\partial x_t\|_2$ (residual stream)"


def g_label(snap):
    """What g_t is: ‖∂L/∂h_t‖ of the recurrent states, or a Transformer's ‖∂L/∂x_t‖ after a block."""
    return G_LABEL_TRANSFORMER if getattr(snap, "cell", "") == "transformer" else G_LABEL


# ----------------------------------------------------------------------------- plumbing

@dataclass
class Panel:
    key: str
    available: Callable
    draw: Callable
    span: int = 1


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


def config_parts(snap):
    """The key config of a run as {key: short text}: task, cell (+ activation), layers, init,
    clipping and cutoff, Ω alpha, hidden size, lengths, learning rate."""
    c = snap.cfg
    parts = {"task": f"task {snap.task}"} if snap.task != "?" else {}
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
    if snap.family == "seq2seq" and snap.cell != "transformer":
        parts["attention"] = "no attention" if c("attention") == "none" else f"{c('attention')} attention"
    tf, schedule = c("teacher_forcing"), c("tf_schedule")
    if snap.family == "seq2seq" and tf is not None and (float(tf) != 1.0 or schedule not in (None, "constant")):
        parts["teacher_forcing"] = f"TF {fmt_num(float(tf))}" + (
            f" {schedule} k={fmt_num(float(c('tf_k')))}" if schedule not in (None, "constant") else "")
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
    lr = c("lr", "learning_rate")
    if lr is not None:
        opt = c("optimizer")
        parts["lr"] = (f"{opt} " if opt and opt != "sgd" else "") + f"lr {fmt_num(float(lr))}"
        schedule = c("lr_schedule")
        if schedule and schedule != "constant":
            parts["lr"] += f" {schedule}"
    return classify_figures.config_parts(snap, parts)


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


def _finite(y):
    return y is not None and len(y) and np.any(np.isfinite(y))


def _log_if_spans(ax, *arrays, decades=1.5):
    """Log y axis when the positive finite values span more than `decades` decades."""
    vals = np.concatenate([np.asarray(a, float).ravel() for a in arrays if a is not None])
    vals = vals[np.isfinite(vals)]
    if len(vals) and np.all(vals > 0) and np.log10(vals.max() / vals.min()) > decades:
        ax.set_yscale("log")
        return True
    return False


def _check_edges(x):
    """Cell edges around the check positions x, for a heat map."""
    x = np.asarray(x, float)
    if len(x) == 1:
        return np.array([x[0] - 0.5, x[0] + 0.5])
    mid = (x[1:] + x[:-1]) / 2
    return np.concatenate([[x[0] - (mid[0] - x[0])], mid, [x[-1] + (x[-1] - mid[-1])]])


def _loss_unit(snap):
    if snap.task in ("add", "mul"):
        return "squared error"
    if snap.task == "text":
        return f"nats/{_token(snap)}"
    return "nats"


def _token(snap):
    """What a language model predicts: char or word."""
    return "word" if snap.attrs.get("tokens") == "word" else "char"


def _at(snap, k):
    """'iteration 2000' (or 'check 12') for check row k."""
    word = "iteration" if snap.check_xlabel.startswith("iteration") else "check"
    return f"{word} {int(snap.check_x[k])}"


def _x_limits(ax, snap, x):
    if len(x):
        ax.set_xlim(min(0, float(np.nanmin(x))), float(np.nanmax(x)) * 1.01 + 1e-9)


# --------------------------------------------------------------------- log10 g_t histogram

def _grad_hist_range(counts_rows, edges):
    rows = np.atleast_2d(counts_rows)
    nz = np.flatnonzero(rows.sum(axis=0) > 0)
    lo, hi = (edges[nz[0]], edges[nz[-1] + 1]) if len(nz) else (edges[0], edges[-1])
    lo = min(lo, V.VANISHING_BAND[0] - 1)
    hi = max(hi, V.GROWING_LOG10 + 1)
    return max(lo - 0.5, edges[0]), min(hi + 0.5, edges[-1])


def _has_final(q):
    return lambda snap: stats.final_hist(snap, q) is not None


def _has_evolution(q):
    return lambda snap: q in snap.hists and len(stats.rows_with_data(snap.hists[q])) >= 2


def draw_grad_hist(ax, snap):
    counts, edges, k = stats.final_hist(snap, "log10_grad")
    share = 100 * counts / counts.sum()
    ax.stairs(share, edges, fill=True, color=COLORS["before"], alpha=0.75)
    lo_b, hi_b = V.VANISHING_BAND
    ax.axvspan(lo_b, hi_b, color=COLORS["band"], alpha=0.12, lw=0)
    ax.axvline(V.GROWING_LOG10, color="k", lw=0.8, ls="--")
    in_band = stats.share_between(counts, edges, lo_b, hi_b)
    below = stats.share_below(counts, edges, V.VANISHING_LOG10)
    above = stats.share_above(counts, edges, V.GROWING_LOG10)
    handles = [
        Patch(color=COLORS["band"], alpha=0.25,
              label=f"vanishing band [{lo_b:g}, {hi_b:g}): {fmt_pct(in_band, 1)}"),
        Patch(color="none", label=f"below {V.VANISHING_LOG10:g}: {fmt_pct(below, 1)}"),
        Line2D([], [], color="k", lw=0.8, ls="--",
               label=f"above {V.GROWING_LOG10:g} (g_t > 1): {fmt_pct(above, 1)}"),
    ]
    ax.legend(handles=handles, loc="best", fontsize="small",
              title=f"share of mass, last check ({_at(snap, k)})", title_fontsize="small")
    ax.set_xlim(*_grad_hist_range(counts, edges))
    ax.set_ylim(0, share.max() * 1.45)
    ax.set_xlabel(r"$\log_{10} g_t$, " + g_label(snap) + " (every t and sequence)")
    ax.set_ylabel(f"share of (t, sequence) pairs\n(% per {edges[1] - edges[0]:g}-wide bin)")
    ax.set_title(r"$\log_{10} g_t$ at the end")


def _heat(ax, snap, q, label, ylim=None, hlines=()):
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


def draw_grad_hist_evolution(ax, snap):
    rows = snap.hists["log10_grad"]
    edges = snap.edges["log10_grad"]
    _heat(ax, snap, "log10_grad", r"$\log_{10} g_t$", _grad_hist_range(rows, edges),
          hlines=[(V.VANISHING_BAND[0], ":"), (V.VANISHING_BAND[1], "--"), (V.GROWING_LOG10, "-")])
    ax.set_title(r"$\log_{10} g_t$ over training" "\n" r"(lines: $-12$ dotted, $-8$ dashed, 0 solid)",
                 fontsize="medium")


# ------------------------------------------------------------------ gradient through time

def _through_time(rows):
    """g_t through time needs two steps or more (a window MLP records one: it has no recurrence)."""
    return stats.last_row(rows) is not None and rows.shape[1] >= 2


def _has_grad_time(snap):
    return _through_time(snap.grad_time)


def _has_layers(snap):
    return sum(_through_time(l.grad_time) for l in snap.layers.values()) >= 2


def _spread(indices, n=6):
    if len(indices) <= n:
        return list(indices)
    pick = np.unique(np.round(np.linspace(0, len(indices) - 1, n)).astype(int))
    return [indices[i] for i in pick]


def _fit_label(g, prefix, end_aligned=False):
    fit = stats.decay_fit(g)
    if fit is None:
        return prefix, None
    b = -fit[0] if end_aligned else fit[0]   # end-aligned: t counts back from the last token
    word, factor = V.per_step_change(b)
    word += "," if word == "flat" else ""
    return (f"{prefix}: {word} {factor} per step\nback in time "
            f"(slope {b:.3g} decades/step)"), fit


def draw_grad_time(ax, snap):
    gt = snap.grad_time
    rows = _spread(list(stats.rows_with_data(gt)))
    x = snap.check_x
    norm = colors.Normalize(vmin=float(x[rows[0]]), vmax=float(x[rows[-1]]) + (len(rows) == 1))
    cmap = colors.ListedColormap(cm.viridis(np.linspace(0, 0.85, 256)))
    for k in rows:
        g = gt[k]
        t = np.arange(len(g))
        final = k == rows[-1]
        ax.plot(t, np.where(g > 0, g, np.nan), color=cmap(norm(x[k])), lw=2.0 if final else 1.0,
                alpha=1.0 if final else 0.8)
    k = rows[-1]
    label, fit = _fit_label(gt[k], f"fit at {_at(snap, k)}", classify_figures.end_aligned(snap))
    if fit is not None:
        t = np.arange(len(gt[k]))[np.isfinite(gt[k])]
        ax.plot(t, 10 ** (fit[1] + fit[0] * t), "k:", lw=1.3, label=label)
        ax.legend(loc="best", fontsize="small")
    ax.set_yscale("log")
    if len(rows) > 1:
        sm = cm.ScalarMappable(norm=norm, cmap=cmap)
        cb = ax.get_figure(root=False).colorbar(sm, ax=ax, pad=0.01)
        cb.set_label(f"{snap.check_xlabel} of the check")
    ax.set_xlabel(classify_figures.time_label(snap))
    ax.set_ylabel(g_label(snap) + "\n(batch mean)")
    ax.set_title(f"Gradient through time, {len(rows)} checks" if len(rows) > 1
                 else f"Gradient through time, {_at(snap, rows[0])}")


def draw_grad_time_layers(ax, snap):
    styles = ["-", "--", "-.", ":"]
    for i, l in enumerate(sorted(snap.layers)):
        gt = snap.layers[l].grad_time
        k = stats.last_row(gt)
        if k is None:
            continue
        g = gt[k]
        name = "layer 0 (input side)" if l == 0 else f"layer {l}"
        if not snap.part_names.get(l, "0").isdigit():   # named parts: layer0_fwd, block0, ...
            name = snap.part_names[l]
        label, _ = _fit_label(g, name, classify_figures.end_aligned(snap))
        ax.plot(np.arange(len(g)), np.where(g > 0, g, np.nan), ls=styles[i % 4], lw=1.4,
                label=label)
    ax.set_yscale("log")
    ax.legend(loc="best", fontsize="small")
    ax.set_xlabel(classify_figures.time_label(snap))
    ax.set_ylabel(g_label(snap) + "\n(batch mean, last check)")
    ax.set_title("Gradient through time per layer")


# ------------------------------------------------------------------------------ saturation

def _d_label(edges, what="h"):
    if what == "h":
        return r"$d(h) = \min(h, 1-h)$" if edges[-1] <= 0.5 + 1e-9 else r"$d(h) = 1 - |h|$"
    return r"$d(v) = \min(v, 1-v)$"


def _pad_x(ax, edges):
    """x limits a little beyond the bin edges, so a bar in an end bin is not hidden by the frame."""
    pad = 0.015 * (edges[-1] - edges[0])
    ax.set_xlim(edges[0] - pad, edges[-1] + pad)


def draw_saturation(ax, snap):
    counts, edges, k = stats.final_hist(snap, "saturation")
    share = 100 * counts / counts.sum()
    ax.stairs(share, edges, fill=True, color=COLORS["rho"], alpha=0.7)
    s = stats.share_below(counts, edges, V.SATURATION_D)
    ax.axvspan(edges[0], V.SATURATION_D, color=COLORS["band"], alpha=0.12, lw=0,
               label=f"saturated, d < {V.SATURATION_D:g}: {fmt_pct(s, 1)}")
    ax.legend(loc="best", fontsize="small", title=f"last check ({_at(snap, k)})",
              title_fontsize="small")
    _pad_x(ax, edges)
    ax.set_ylim(0, share.max() * 1.3)
    ax.set_xlabel(_d_label(edges) + "  (0 = saturated)")
    ax.set_ylabel(f"share of unit activations\n(% per {edges[1] - edges[0]:g}-wide bin)")
    ax.set_title("Hidden saturation at the end")


def draw_saturation_evolution(ax, snap):
    edges = snap.edges["saturation"]
    _heat(ax, snap, "saturation", _d_label(edges), hlines=[(V.SATURATION_D, "--")])
    ax.set_title(f"Hidden saturation over training\n(dashed: d = {V.SATURATION_D:g})",
                 fontsize="medium")


def _has_gates(snap):
    return any(stats.final_hist(snap, f"gate_{g}") is not None for g in snap.gates)


def draw_gates(ax, snap):
    edges = None
    top = 0
    for g in snap.gates:
        fh = stats.final_hist(snap, f"gate_{g}")
        if fh is None:
            continue
        counts, edges, _ = fh
        share = 100 * counts / counts.sum()
        top = max(top, share.max())
        s = stats.share_below(counts, edges, V.SATURATION_D)
        ax.stairs(share, edges, color=GATE_COLORS[g], lw=1.6,
                  label=f"gate {g}: {fmt_pct(s, 1)} below {V.SATURATION_D:g}")
    ax.axvspan(edges[0], V.SATURATION_D, color=COLORS["band"], alpha=0.12, lw=0)
    _pad_x(ax, edges)
    ax.set_ylim(0, top * 1.35)
    ax.legend(loc="best", fontsize="small", title="last check", title_fontsize="small")
    ax.set_xlabel(_d_label(edges, "v") + "  (0 = shut or fully open)")
    ax.set_ylabel(f"share of gate activations\n(% per {edges[1] - edges[0]:g}-wide bin)")
    ax.set_title("Gate saturation at the end")


def _has_sat_evolution(snap):
    return _has_gates(snap) and any(_has_evolution(f"gate_{g}")(snap) for g in snap.gates)


def draw_saturation_share(ax, snap):
    series = [(f"gate {g}", f"gate_{g}", GATE_COLORS[g], "-") for g in snap.gates]
    series.append(("hidden h", "saturation", "k", "--"))
    for label, q, color, ls in series:
        if q not in snap.hists:
            continue
        keep = stats.rows_with_data(snap.hists[q])
        y = [100 * stats.share_below(snap.hists[q][k], snap.edges[q], V.SATURATION_D) for k in keep]
        ax.plot(snap.check_x[keep], y, color=color, ls=ls, marker="." if len(keep) < 60 else None,
                label=label)
    ax.set_ylim(0, max(5.0, ax.get_ylim()[1]))
    ax.legend(loc="best", fontsize="small")
    ax.set_xlabel(snap.check_xlabel)
    ax.set_ylabel(f"share saturated, d < {V.SATURATION_D:g} (%)")
    ax.set_title("Saturation over training")


# ------------------------------------------------------------------------- training curves

def _has_error(snap):
    return _finite(snap.check.get("valid_error"))


def _has_loss(snap):
    return any(_finite(src.get(k)) for src, k in ((snap.check, "valid_loss"),
                                                  (snap.check, "train_loss"), (snap.iter, "loss")))


def draw_valid_error(ax, snap):
    y = snap.check["valid_error"]
    x = snap.check_x
    ax.plot(x, y, color=COLORS["valid"], marker="." if len(x) < 80 else None, lw=1.4,
            label="validation error")
    if np.any(np.isfinite(y)):
        i = int(np.nanargmin(y))
        ax.plot(x[i], y[i], "o", mfc="none", color="k", ms=8,
                label=f"best {y[i]:.3g}% at {int(x[i])}")
        f = y[np.isfinite(y)][-1]
        ax.plot([], [], " ", label=f"final {f:.3g}%")
    ax.set_ylim(0, max(5.0, float(np.nanmax(y)) * 1.08) if np.any(np.isfinite(y)) else None)
    _x_limits(ax, snap, x)
    ax.legend(loc="best", fontsize="small")
    ax.set_xlabel(snap.check_xlabel)
    ax.set_ylabel("validation error (%)")
    ax.set_title("Validation error")


def draw_loss(ax, snap):
    arrays = []
    raw = snap.iter.get("loss")
    if _finite(raw):
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
        if _finite(y):
            ax.plot(snap.check_x, y, color=color, marker=marker if len(y) < 80 else None, ms=3,
                    lw=1.4 if key == "valid_loss" else 0.8,
                    ls="-" if key == "valid_loss" else ":", label=label)
            arrays.append(y)
    chance = V.CHANCE_LOSS.get(snap.task)
    if chance:
        n = {"torder": 4, "torder3": 8}[snap.task]
        ax.axhline(chance, color="grey", ls="--", lw=0.9, label=f"chance, ln {n} = {chance:.3f}")
    if _log_if_spans(ax, *arrays):
        readable_log_axis(ax)
    ax.legend(loc="best", fontsize="small")
    ax.set_xlabel(snap.iter_xlabel if _finite(raw) else snap.check_xlabel)
    ax.set_ylabel(f"loss ({_loss_unit(snap)})")
    ax.set_title("Training and validation loss")


def _has_lm(snap):
    return _finite(snap.check.get("valid_bpc")) or _finite(snap.check.get("valid_ppl"))


def draw_lm(ax, snap):
    x = snap.check_x
    marker = "." if len(x) < 80 else None
    handles = []
    bpc = snap.check.get("valid_bpc")
    if _finite(bpc):
        handles += ax.plot(x, bpc, color=COLORS["valid"], marker=marker, lw=1.4,
                           label=f"bits per character (final {bpc[np.isfinite(bpc)][-1]:.4g})")
        ax.set_ylabel("validation bits per character")
    ppl = snap.check.get("valid_ppl")
    if _finite(ppl):
        other = ax.twinx() if _finite(bpc) else ax
        handles += other.plot(x, ppl, color="#e377c2", ls="--", marker=marker, lw=1.2,
                              label=f"perplexity per {_token(snap)} (final {ppl[np.isfinite(ppl)][-1]:.4g})")
        other.set_ylabel(f"validation perplexity per {_token(snap)}")
    _x_limits(ax, snap, x)
    ax.legend(handles=handles, loc="best", fontsize="small")
    ax.set_xlabel(snap.check_xlabel)
    ax.set_title("Language model: validation bpc and perplexity", fontsize="medium")


# ------------------------------------------------------------------------- gradient norms

def _has_grad_norm(snap):
    return _finite(snap.iter.get("grad_norm")) or _finite(snap.iter.get("grad_norm_clipped"))


def draw_grad_norm(ax, snap):
    it = snap.iter
    x = snap.iter_x
    n = len(x)
    win = max(1, n // 100)
    dense = n > 300
    series = []
    for key, color, label in (("grad_norm", COLORS["before"], "before clipping"),
                              ("grad_norm_clipped", COLORS["after"], "after clipping")):
        y = it.get(key)
        if _finite(y):
            series.append((np.where(np.isfinite(y) & (y > 0), y, np.nan), color, label))
    vals = [pos for pos, _, _ in series]
    if len(series) == 2 and np.allclose(series[0][0], series[1][0], equal_nan=True):
        series[1] = (series[1][0], series[1][1], "after clipping (= before: nothing clipped)")
    widths = [2.4, 1.2]           # "after" drawn thinner on top, so that both stay visible
    if dense:          # every update thin and pale first, the running means on top
        for pos, color, _ in series:
            ax.plot(*stats.envelope(x, pos), color=color, lw=0.4, alpha=0.3, rasterized=True)
        for (pos, color, label), lw in zip(series, widths):
            ax.plot(x, stats.smooth_log(pos, win), color=color, lw=lw, label=label)
    else:
        for (pos, color, label), lw in zip(series, widths):
            ax.plot(x, pos, color=color, lw=lw, marker="." if lw < 2 else None, ms=3, label=label)
    if dense:
        ax.plot([], [], color="grey", lw=1.5, label=f"bold: geometric mean of {win} updates")
        ax.plot([], [], color="grey", lw=0.4, label="thin: every update")
    gn = stats.grad_norm_stats(snap)
    clipped = it.get("clipped")
    g = it.get("grad_norm")
    clip_label = f"clipped: {gn['n_clipped']} steps ({fmt_pct(gn['share_clipped'], 1)})"
    twin = None
    if clipped is not None and g is not None and 0 < gn["n_clipped"] <= MAX_CLIP_MARKERS:
        sel = (clipped > 0.5) & np.isfinite(g) & (g > 0)
        ax.plot(x[sel], g[sel], ls="none", marker="o", ms=2.5, mfc="none", mew=0.6,
                color=COLORS["clip"], rasterized=True, label=clip_label + ", circled")
    elif clipped is not None and gn["n_clipped"]:
        # Too many to mark one by one: the share of clipped updates per window, right axis.
        twin = ax.twinx()
        twin.set_zorder(ax.get_zorder() - 1)      # keep the legend of `ax` on top
        ax.patch.set_visible(False)
        cwin = max(win, 10)
        twin.plot(*stats.envelope(x, 100 * stats.smooth(clipped, cwin)), color=COLORS["clip"],
                  lw=0.9, alpha=0.8)
        twin.set_ylim(0, 100 / 0.74)
        twin.set_yticks([0, 25, 50, 75, 100])
        twin.set_ylabel(f"clipped updates (% of {cwin}, red)", color=COLORS["clip"])
        twin.tick_params(axis="y", colors=COLORS["clip"])
        ax.plot([], [], color=COLORS["clip"], lw=0.9, label=clip_label + ", share on right axis")
    cutoff = snap.cfg("cutoff", "clip_cutoff")
    style = snap.cfg("clip", "clipstyle", "clipping")
    if cutoff and style not in (None, "none", "", False):
        ax.axhline(float(cutoff), color="k", ls="--", lw=0.9, label=f"cutoff c = {fmt_num(float(cutoff))}")
    nonfinite = it.get("nonfinite")
    bad = np.zeros(n, bool)
    if nonfinite is not None:
        bad |= nonfinite > 0.5
    if g is not None:
        bad |= ~np.isfinite(g)
    if bad.any():
        trans = ax.get_xaxis_transform()
        for xb in x[bad][:500]:
            ax.axvline(xb, color=COLORS["nonfinite"], lw=0.6, alpha=0.5)
        ax.plot(x[bad], np.full(bad.sum(), 1.0), ls="none", marker="v", ms=7,
                color=COLORS["nonfinite"], transform=trans, clip_on=False,
                label=f"non-finite gradient: {int(bad.sum())} steps (red lines)")
    theory_figures.mark_walls(ax, snap)
    ax.set_yscale("log")
    if vals:
        v = np.concatenate(vals)
        v = v[np.isfinite(v) & (v > 0)]
        if len(v):
            lo, hi = np.log10(v.min() / 2), np.log10(v.max() * 2)
            ax.set_ylim(10 ** lo, 10 ** (hi + 0.35 * max(hi - lo, 1)))
    _x_limits(ax, snap, x)
    readable_log_axis(ax)
    ax.legend(loc="upper left", fontsize="small", ncols=3)
    ax.set_xlabel(snap.iter_xlabel)
    ax.set_ylabel(r"global gradient norm $\|\nabla_\theta L\|_2$")
    ax.set_title("Gradient norm per update")


# -------------------------------------------------------------------------------- spectrum

def _has_rho(snap):
    return _finite(snap.check.get("rho")) or _finite(snap.check.get("sigma_max"))


def _has_eigen(snap):
    name = snap.recurrent_matrix
    return any(name in w and stats.eigenvalues(w[name]) is not None
               for w in (snap.start_weights, snap.final_weights))


def draw_rho(ax, snap):
    name = snap.recurrent_matrix
    x = snap.check_x
    for key, color, label in (("rho", COLORS["rho"], f"spectral radius ρ({name})"),
                              ("sigma_max", COLORS["sigma"], f"largest singular value σ_max({name})")):
        y = snap.check.get(key)
        if _finite(y):
            ax.plot(x, y, color=color, lw=1.5, marker="." if len(x) < 80 else None, label=label)
    start, end = stats.rho_start_end(snap)
    if name in snap.start_weights and math.isfinite(start):
        ax.plot([0], [start], "o", color=COLORS["rho"], mfc="none", label=f"ρ before training: {start:.3g}")
    ax.axhline(1.0, color="k", ls="--", lw=0.9, label="ρ = 1")
    theory_figures.draw_bounds(ax, snap)
    _x_limits(ax, snap, x)
    ax.legend(loc="best", fontsize="small")
    ax.set_xlabel(snap.check_xlabel)
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


# ------------------------------------------------------------------------------------ Ω

def _has_omega(snap):
    return _finite(snap.iter.get("omega"))


def _has_past(snap):
    return _finite(snap.iter.get("steps_in_past"))


def _series(ax, snap, y, color, label):
    x = snap.iter_x
    win = max(1, len(y) // 100)
    if len(y) > 300:
        ax.plot(*stats.envelope(x, y), color=color, lw=0.4, alpha=0.35, rasterized=True)
        ax.plot(x, stats.smooth(y, win), color=color, lw=1.5, label=f"{label}, mean of {win} updates")
    else:
        ax.plot(x, y, color=color, lw=1.0, marker=".", ms=3, label=label)
    _x_limits(ax, snap, x)
    ax.set_xlabel(snap.iter_xlabel)


def draw_omega(ax, snap):
    y = snap.iter["omega"]
    _series(ax, snap, y, "#17becf", "Ω")
    if _log_if_spans(ax, y):
        readable_log_axis(ax)
    alpha = snap.cfg("alpha")
    ax.legend(loc="best", fontsize="small", title=f"α = {alpha}" if alpha is not None else None)
    ax.set_ylabel(r"$\Omega$ (dimensionless, 0 = norm kept)")
    ax.set_title("Regulariser Ω")


def draw_past(ax, snap):
    y = 100 * snap.iter["steps_in_past"]
    _series(ax, snap, y, "#bcbd22", "steps in the past")
    ax.set_ylim(0, 105)
    ax.legend(loc="best", fontsize="small")
    ax.set_ylabel("steps in the past\n(% of (t, sequence) pairs kept by Ω)")
    ax.set_title("Steps in the past")


# ---------------------------------------------------------------------------- registry

PANELS = {p.key: p for p in (
    Panel("valid_error", _has_error, draw_valid_error),
    Panel("loss", _has_loss, draw_loss),
    Panel("lm", _has_lm, draw_lm),
    Panel("grad_norm", _has_grad_norm, draw_grad_norm, span=2),
    Panel("grad_hist", _has_final("log10_grad"), draw_grad_hist),
    Panel("grad_hist_evolution", _has_evolution("log10_grad"), draw_grad_hist_evolution),
    Panel("grad_time", _has_grad_time, draw_grad_time),
    Panel("grad_time_layers", _has_layers, draw_grad_time_layers),
    Panel("saturation", _has_final("saturation"), draw_saturation),
    Panel("saturation_evolution", _has_evolution("saturation"), draw_saturation_evolution),
    Panel("gates", _has_gates, draw_gates),
    Panel("saturation_share", _has_sat_evolution, draw_saturation_share),
    Panel("rho", _has_rho, draw_rho),
    Panel("eigenvalues", _has_eigen, draw_eigen),
    Panel("omega", _has_omega, draw_omega),
    Panel("steps_in_past", _has_past, draw_past),
    *(Panel(*p) for p in theory_figures.PANELS),
    *(Panel(*entry) for entry in classify_figures.PANELS),
    Panel("generation", conditional_figures.has_generation, conditional_figures.draw_generation),
)}

PANELS.update({p.key: p for p in (   # a Transformer's per-check arrays
    Panel("attn_entropy", TF._has("attn_entropy"), TF.draw_attn_entropy),
    *(Panel(name, TF._has(name), TF.seq2seq_entropy_drawer(name)) for name in TF.SEQ2SEQ_ENTROPY),
    Panel("block_grad_norm", TF._has("block_grad_norm"), TF.draw_block_grad_norm),
)})

#: figure name -> (title, panels); the dashboard shows them all in this order.
FIGURES = {
    "training": ("validation error and loss", ["valid_error", "loss", "lm", "generation"]),
    "grad_norm": ("gradient norm and clipping", ["grad_norm"]),
    "grad_hist": ("distribution of log10 g_t", ["grad_hist", "grad_hist_evolution"]),
    "grad_time": ("gradient through time", ["grad_time", "grad_time_layers"]),
    "saturation": ("hidden-unit saturation", ["saturation", "saturation_evolution"]),
    "gates": ("gate saturation", ["gates", "saturation_share"]),
    "spectrum": ("recurrent matrix spectrum", ["rho", "eigenvalues"]),
    "omega": ("regulariser Ω", ["omega", "steps_in_past"]),
    **theory_figures.FIGURES,
    "attention": ("attention entropy and gradient per block", ["attn_entropy", *TF.SEQ2SEQ_ENTROPY, "block_grad_norm"]),
    "classification": classify_figures.FIGURE,
}


def available_panels(snap, keys):
    return [k for k in keys if PANELS[k].available(snap)]


def _draw_row(parent, snap, keys, ncols=None):
    """Draw `keys` side by side in `parent`, each panel in its own subfigure so that a colour
    bar or a long label in one panel does not squeeze the others; `ncols` pads a short row."""
    spans = [PANELS[k].span for k in keys]
    widths = spans + ([ncols - sum(spans)] if ncols and sum(spans) < ncols else [])
    subs = np.atleast_1d(parent.subfigures(1, len(widths), width_ratios=widths, wspace=0.0))
    for sub, k in zip(subs, keys):
        ax = sub.add_subplot()
        PANELS[k].draw(ax, snap)


def _panel_figure(snap, name):
    what, keys = FIGURES[name]
    keys = available_panels(snap, keys)
    if not keys:
        return None
    cols = sum(PANELS[k].span for k in keys)
    width = max(PANEL_W * cols, 10.0)
    height = PANEL_H + 0.9
    fig = new_figure(width, height)
    _draw_row(fig, snap, keys)
    fig.suptitle(title(snap, what, width), fontsize="large")
    return fig


def figure_training(snap):
    """Validation error (%), training and validation loss against iteration."""
    return _panel_figure(snap, "training")


def figure_grad_norm(snap):
    """Global gradient norm before/after clipping (log y), clipped and non-finite steps."""
    return _panel_figure(snap, "grad_norm")


def figure_grad_hist(snap):
    """log10 g_t histogram at the last check with the vanishing band; its evolution."""
    return _panel_figure(snap, "grad_hist")


def figure_grad_time(snap):
    """g_t against t at checks spread over training, the fitted per-step rate; per layer."""
    return _panel_figure(snap, "grad_time")


def figure_saturation(snap):
    """Hidden saturation histogram at the end; its evolution as a heat map."""
    return _panel_figure(snap, "saturation")


def figure_gates(snap):
    """Gate saturation histograms per gate at the end; saturated share over training."""
    return _panel_figure(snap, "gates")


def figure_spectrum(snap):
    """ρ and σ_max of the recurrent matrix over training; eigenvalues at start and end."""
    return _panel_figure(snap, "spectrum")


def figure_omega(snap):
    """Ω and steps in the past over training (only when recorded)."""
    return _panel_figure(snap, "omega")


FIGURE_FUNCTIONS = {
    "training": figure_training, "grad_norm": figure_grad_norm, "grad_hist": figure_grad_hist,
    "grad_time": figure_grad_time, "saturation": figure_saturation, "gates": figure_gates,
    "spectrum": figure_spectrum, "omega": figure_omega,
    # diagnostics_level = full (analysis/theory_figures.py)
    **{name: (lambda snap, name=name: _panel_figure(snap, name)) for name in theory_figures.FIGURES},
    # a seq2seq run's <name>_attention.png is its cross-attention heat maps (seq2seq_figures.py)
    "attention": lambda snap: None if snap.family == "seq2seq" else _panel_figure(snap, "attention"),
    "attention_maps": TF.figure_attention,
    "classification": lambda snap: _panel_figure(snap, "classification"),
}


# ---------------------------------------------------------------------------- dashboard

def summary_lines(snap):
    s = stats.summary(snap)
    lines = [f"iterations done: {s['iterations']} ({s['checks']} checks)"]
    if not s["iterations"] and not s["checks"]:
        lines.append("nothing recorded yet: no updates and no checks")
    if math.isfinite(s["final_valid_error"]):
        lines.append(f"valid error: final {s['final_valid_error']:.3g}%, best "
                     f"{s['best_valid_error']:.3g}% at {int(s['best_valid_error_iter'])}")
    if math.isfinite(s["final_valid_loss"]):
        lines.append(f"valid loss: {s['final_valid_loss']:.4g} {_loss_unit(snap)}")
    if math.isfinite(s["valid_ppl"]):
        lines.append(f"valid perplexity {s['valid_ppl']:.4g}, {s['valid_bpc']:.4g} bits/char")
    if math.isfinite(s["max_grad_norm"]):
        lines.append(f"gradient norm: max {fmt_num(s['max_grad_norm'])}, median "
                     f"{fmt_num(s['median_grad_norm'])}; clipped {fmt_pct(s['share_clipped'])}")
    if math.isfinite(s["rho_start"]) or math.isfinite(s["rho_end"]):
        lines.append(f"ρ({snap.recurrent_matrix}): {fmt_num(s['rho_start'])} → {fmt_num(s['rho_end'])}")
    if math.isfinite(s["wall_time"]):
        lines.append(f"wall time: {stats.fmt_duration(s['wall_time'])}")
    return lines


def _bullets(lines, width, max_chars=400):
    """Bullet lines wrapped to `width` characters; a very long one (a traceback) is cut."""
    out = []
    for line in lines:
        line = " ".join(line.split())
        if len(line) > max_chars:
            line = line[:max_chars - 1] + "…"
        out += textwrap.wrap(line, width, initial_indent="• ", subsequent_indent="   ") or ["•"]
    return "\n".join(out)


def _pack(keys, ncols):
    """Rows of panel keys, left to right, a panel that does not fit starting a new row."""
    rows, row, used = [], [], 0
    for k in keys:
        span = min(PANELS[k].span, ncols)
        if used + span > ncols:
            rows.append(row)
            row, used = [], 0
        row.append(k)
        used += span
    if row:
        rows.append(row)
    return rows


def dashboard_layout(snap, ncols=4):
    keys = [k for _, ks in FIGURES.values() for k in ks]
    return _pack(available_panels(snap, keys), ncols)


def figure_dashboard(snap, ncols=4):
    """All available panels on one page, with the summary numbers and the verdicts."""
    rows = dashboard_layout(snap, ncols)
    chars = int(PANEL_W * ncols / 2 * 9.5)        # characters that fit in half the page
    summary = _bullets(summary_lines(snap), chars)
    verdict_lines = _bullets([v.text for v in V.verdicts(snap)] or ["none"], chars)
    n_text = max(summary.count("\n"), verdict_lines.count("\n")) + 1
    text_h = 0.45 + 0.21 * n_text
    width = PANEL_W * ncols
    height = PANEL_H * len(rows) + text_h + 1.0
    fig = new_figure(width, height)
    subs = np.atleast_1d(fig.subfigures(len(rows) + 1, 1,
                                        height_ratios=[PANEL_H] * len(rows) + [text_h], hspace=0.0))
    for sub, row in zip(subs, rows):
        _draw_row(sub, snap, row, ncols)
    left, right = subs[-1].subfigures(1, 2, wspace=0.0)
    for part, head, text in ((left, "Final figures", summary), (right, "Verdicts", verdict_lines)):
        part.text(0.02, 0.98, head, fontweight="bold", va="top", ha="left")
        part.text(0.02, 0.98, "\n" + text, va="top", ha="left", linespacing=1.45)
    fig.suptitle(title(snap, "training dashboard", width), fontsize="x-large")
    return fig


def plot_run(snap, out_dir, dpi=DPI):
    """Write the dashboard and every available figure of `snap` as PNG under `out_dir`;
    return the paths written, the dashboard first."""
    import os
    os.makedirs(out_dir, exist_ok=True)
    written = []
    fig = figure_dashboard(snap)
    written.append(save(fig, os.path.join(out_dir, f"{snap.name}_dashboard.png"), dpi))
    for name, fn in FIGURE_FUNCTIONS.items():
        fig = fn(snap)
        if fig is not None:
            written.append(save(fig, os.path.join(out_dir, f"{snap.name}_{name}.png"), dpi))
    from .seq2seq_figures import plot_seq2seq
    written += plot_seq2seq(snap, out_dir, dpi)
    return written
