"""The figures of one run, assembled from the panels of analysis/panels/: each figure is a row of
panels, a panel left out when its data are absent, so no figure has empty axes.

    figure(snap, name)    the figure `name` of panels.FIGURES: training, grad_norm, grad_hist,
                          grad_time, horizon, saturation, gates, spectrum, omega, the theory's
                          jacobians, lyapunov, surface, groups, ...
    figure_dashboard      all panels and the verdicts, at a printed page's width
    dashboard_pages       the same cut into printed pages, PAGE_ROWS panel rows each
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
from .canvas import (DPI, PAGE_W, PANEL_H, PRINT_COLS, draw_row, loss_unit, new_figure, pack_rows,
                     panel_figure, save, title)
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
    lines = [f"updates done: {s['iterations']} ({s['checks']} check{'s' if s['checks'] != 1 else ''})"]
    if not s["iterations"] and not s["checks"]:
        lines.append("nothing recorded yet: no updates and no checks")
    if math.isfinite(s["final_valid_error"]):
        lines.append(f"valid error: final {s['final_valid_error']:.3g}%, best "
                     f"{s['best_valid_error']:.3g}% at update {int(s['best_valid_error_iter'])}")
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


def dashboard_layout(snap, ncols=PRINT_COLS):
    """Rows of the keys of the panels with data, in the order of FIGURES, `ncols` to a row."""
    keys = [k for _, ks in FIGURES.values() for k in ks]
    rows = pack_rows([PANELS[k] for k in available_panels(snap, keys)], ncols)
    return [[p.key for p in row] for row in rows]


CHARS_PER_INCH = 9.5          # of 10-point text, with room to spare
LINE_IN = 0.21                # inches per line of the text (10 points, line spacing 1.45)


#: panel rows on one printed page of a dashboard (A4 landscape's width; about its height)
PAGE_ROWS = 2


def figure_dashboard(snap, ncols=PRINT_COLS, rows=None):
    """All available panels at a printed page's width, `ncols` to a row so that no text is
    shrunk, with the summary numbers and the verdicts: in the last row's free slot when it has
    one (no slot stays empty), else in a row of their own below. `rows` (start, stop): only those
    panel rows, one page of `dashboard_pages`; the summary and verdicts come with the last."""
    layout = dashboard_layout(snap, ncols)
    start, stop = rows or (0, len(layout))
    panels = [[PANELS[k] for k in row] for row in layout[start:stop]]
    last = stop >= len(layout)
    free = ncols - sum(min(p.span, ncols) for p in panels[-1]) if panels and last else 0
    text_w = PAGE_W * free / ncols if free else PAGE_W / 2      # beside the panels, or half a row
    chars = int(text_w * CHARS_PER_INCH)
    parts = [("Final figures", _bullets(summary_lines(snap), chars)),
             ("Verdicts", _bullets([v.text for v in V.verdicts(snap)] or ["none"], chars))] if last else []
    lines = [text.count("\n") + 2 for _, text in parts]        # + the heading
    heights = [PANEL_H] * len(panels)
    if free:
        heights[-1] = max(PANEL_H, 0.3 + LINE_IN * sum(lines))
    elif last:
        heights.append(0.3 + LINE_IN * max(lines))
    fig = new_figure(PAGE_W, sum(heights) + 1.0)
    subs = np.atleast_1d(fig.subfigures(len(heights), 1, height_ratios=heights, hspace=0.0))
    slots = []
    for sub, row in zip(subs, panels):
        slots = draw_row(sub, snap, row, ncols)
    if parts:
        if free:        # stacked in the free slot, each part as tall as its lines
            places = slots[-1].subfigures(2, 1, height_ratios=lines, hspace=0.0)
        else:
            places = subs[-1].subfigures(1, 2, wspace=0.0)
        for place, (head, text) in zip(places, parts):
            place.text(0.02, 0.98, head, fontweight="bold", va="top", ha="left")
            place.text(0.02, 0.98, "\n" + text, va="top", ha="left", linespacing=1.45)
    pages = max(1, math.ceil(len(layout) / PAGE_ROWS))
    part = f" (page {start // PAGE_ROWS + 1} of {pages})" if rows and pages > 1 else ""
    fig.suptitle(title(snap, "training dashboard" + part, PAGE_W), fontsize="x-large")
    return fig


def dashboard_pages(snap, ncols=PRINT_COLS):
    """The dashboard for print: PAGE_ROWS panel rows to a page, the summary and verdicts on the
    last; a list of figures (one when the dashboard fits a page)."""
    n = len(dashboard_layout(snap, ncols))
    return [figure_dashboard(snap, ncols, (a, min(a + PAGE_ROWS, n))) for a in range(0, max(n, 1), PAGE_ROWS)]


def n_dashboard_pages(snap, ncols=PRINT_COLS):
    return max(1, math.ceil(len(dashboard_layout(snap, ncols)) / PAGE_ROWS))


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
