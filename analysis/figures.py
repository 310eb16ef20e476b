"""The figures of one run, assembled from the panels of analysis/panels/: each figure is a row of
panels, a panel left out when its data are absent, so no figure has empty axes.

    figure(snap, name)    the figure `name` of panels.FIGURES: training, grad_norm, grad_hist,
                          grad_time, horizon, saturation, gates, spectrum, omega, the theory's
                          jacobians, lyapunov, surface, groups, ...
    figure_dashboard      all panels and the verdicts on one page
    plot_run              the dashboard and every figure as PNG files

Every function returns a matplotlib Figure (Agg canvas, constrained layout) or None when the
run has none of the data. `save(fig, path)` (analysis/canvas.py) writes it. No pyplot: nothing
opens a window.
"""
import functools
import math
import os
import textwrap

import numpy as np

from . import stats, verdicts as V
from .canvas import DPI, PANEL_H, PANEL_W, draw_row, loss_unit, new_figure, panel_figure, save, title
from .panels import FIGURES, PANELS, seq2seq, transformer
from .stats import fmt_num, fmt_pct


def available_panels(snap, keys):
    return [k for k in keys if PANELS[k].available(snap)]


def figure(snap, name):
    """The figure `name` of FIGURES (analysis/panels/): its panels that have data, side by side;
    None when none has."""
    what, keys = FIGURES[name]
    return panel_figure(snap, what, [PANELS[k] for k in keys])


# name -> what draws <run>_<name>.png: every figure of FIGURES, and the figures a topic draws itself
FIGURE_FUNCTIONS = {
    **{name: functools.partial(figure, name=name) for name in FIGURES},
    # a seq2seq run's <name>_attention.png is its cross-attention heat maps (panels/seq2seq.py)
    "attention": lambda snap: None if snap.family == "seq2seq" else figure(snap, "attention"),
    "attention_maps": transformer.figure_attention,
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
        lines.append(f"valid loss: {s['final_valid_loss']:.4g} {loss_unit(snap)}")
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
        draw_row(sub, snap, [PANELS[k] for k in row], ncols)
    left, right = subs[-1].subfigures(1, 2, wspace=0.0)
    for part, head, text in ((left, "Final figures", summary), (right, "Verdicts", verdict_lines)):
        part.text(0.02, 0.98, head, fontweight="bold", va="top", ha="left")
        part.text(0.02, 0.98, "\n" + text, va="top", ha="left", linespacing=1.45)
    fig.suptitle(title(snap, "training dashboard", width), fontsize="x-large")
    return fig


def plot_run(snap, out_dir, dpi=DPI):
    """Write the dashboard and every available figure of `snap` as PNG under `out_dir`;
    return the paths written, the dashboard first."""
    os.makedirs(out_dir, exist_ok=True)
    written = []
    fig = figure_dashboard(snap)
    written.append(save(fig, os.path.join(out_dir, f"{snap.name}_dashboard.png"), dpi))
    for name, fn in FIGURE_FUNCTIONS.items():
        fig = fn(snap)
        if fig is not None:
            written.append(save(fig, os.path.join(out_dir, f"{snap.name}_{name}.png"), dpi))
    written += seq2seq.plot_seq2seq(snap, out_dir, dpi)
    return written
