"""Overlays across runs: validation error, gradient norm before and after clipping, ρ, the
final log10 g_t histograms and g_t against t at the last check, one colour per run."""
import math

import numpy as np
from matplotlib.colors import to_hex

from . import stats, verdicts as V
from .canvas import (BLOCK_MARKERS, G_LABEL, PAGE_W, PANEL_H, PANEL_W, PRINT_COLS, check_label, config_parts, finish_axes, iter_label,
                     new_figure, percent_axis, readable_log_axis, time_label)
from .panels import conditional, seq2seq
from .stats import fmt_num

MAX_RUNS_SINGLE_PALETTE = 10


def run_colors(n):
    from matplotlib import colormaps
    cmap = colormaps["tab10" if n <= MAX_RUNS_SINGLE_PALETTE else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def labels(snaps):
    """Legend labels: the run name, plus the config items in which the runs differ."""
    names = [s.name for s in snaps]
    if len(set(names)) < len(names):           # same name twice: add the file
        names = [f"{s.name} ({s.path})" for s in snaps]
    parts = [config_parts(s) for s in snaps]
    keys = [k for k in dict.fromkeys(k for p in parts for k in p)
            if len({p.get(k) for p in parts}) > 1]
    out = []
    for name, p in zip(names, parts):
        extra = ", ".join(p[k] for k in keys if k in p)
        out.append(f"{name}: {extra}" if extra else name)
    return out


def common_config(snaps):
    parts = [config_parts(s) for s in snaps]
    return " · ".join(v for k, v in parts[0].items() if all(p.get(k) == v for p in parts))


# --------------------------------------------------------------------------------- panels

def _few(y):
    """A marker where a line would show too few points to be seen (a run with one check)."""
    return "o" if np.isfinite(np.asarray(y, dtype=float)).sum() < 3 else None


def _valid_error(ax, runs):
    for s, color in runs:
        y = s.check.get("valid_error")
        if y is not None and len(y):
            ax.plot(s.check_x, y, color=color, lw=1.4, marker=_few(y))
    percent_axis(ax, 1.08 * max(float(np.nanmax(s.check["valid_error"])) for s, _ in runs
                                if _finite(s.check.get("valid_error"))))
    ax.set_xlim(0, None)
    ax.set_xlabel(check_label(runs[0][0]))
    ax.set_ylabel("validation error (%)")
    ax.set_title("Validation error")


def _grad_norm(key, what):
    def draw(ax, runs):
        n = max(len(s.iter_x) for s, _ in runs)
        win = max(1, n // 40)          # overlaid runs need heavier smoothing than one run
        cutoffs = 0
        for s, color in runs:
            y = s.iter.get(key)
            if y is None or not len(y):
                continue
            pos = np.where(np.isfinite(y) & (y > 0), y, np.nan)
            ax.plot(s.iter_x, stats.smooth_log(pos, win), color=color, lw=1.3)
            c = s.cfg("cutoff")
            if key == "grad_norm_clipped" and c and s.cfg("clip", "clipstyle") not in ("none", ""):
                ax.axhline(float(c), color=color, ls=":", lw=1.0)
                cutoffs += 1
        ax.set_yscale("log")
        readable_log_axis(ax)
        ax.set_xlim(0, None)
        ax.set_xlabel(iter_label(runs[0][0]))
        ax.set_ylabel(r"global gradient norm $\|\nabla_\theta L\|_2$")
        ax.set_title(f"Gradient norm {what}" + (f", geometric mean of {win} updates" if win > 1 else ""),
                     fontsize="medium")
        if cutoffs:             # the legend names only what is drawn
            ax.plot([], [], color="grey", ls=":", lw=1.0, label="cutoff c (run colour)")
            ax.legend(loc="best", fontsize="small")
    return draw


def _rho(ax, runs):
    for s, color in runs:
        y = s.check.get("rho")
        if y is not None and len(y):
            ax.plot(s.check_x, y, color=color, lw=1.4, marker=_few(y))
    ax.axhline(1.0, color="k", ls="--", lw=0.9, label="ρ = 1")
    ax.legend(loc="best", fontsize="small")
    ax.set_xlim(0, None)
    ax.set_xlabel(check_label(runs[0][0]))
    ax.set_ylabel("spectral radius ρ of the recurrent matrix")
    ax.set_title("Spectral radius ρ(W_rec)")


def _grad_hist(ax, runs):
    lo, hi = V.VANISHING_BAND[0] - 1, V.GROWING_LOG10 + 1
    for s, color in runs:
        fh = stats.final_hist(s, "log10_grad")
        if fh is None:
            continue
        counts, edges, _ = fh
        ax.stairs(100 * counts / counts.sum(), edges, color=color, lw=1.4)
        nz = np.flatnonzero(counts)
        lo, hi = min(lo, edges[nz[0]]), max(hi, edges[nz[-1] + 1])
    ax.axvspan(*V.VANISHING_BAND, color="#d62728", alpha=0.12, lw=0,
               label=f"vanishing band [{V.VANISHING_BAND[0]:g}, {V.VANISHING_BAND[1]:g})")
    ax.axvline(V.GROWING_LOG10, color="k", ls="--", lw=0.8, label="g_t = 1")
    ax.set_xlim(lo - 0.5, hi + 0.5)
    percent_axis(ax, ax.get_ylim()[1] * 1.3)
    ax.legend(loc="upper left", fontsize="small")
    ax.set_xlabel(r"$\log_{10} g_t$ (last check, every t and sequence)")
    ax.set_ylabel("share of (t, sequence) pairs (% per bin)")
    ax.set_title(r"Final $\log_{10} g_t$ histograms")


BLOCK_STYLES = ("-", "--", "-.", ":")


def _grad_time(ax, runs):
    """The main part's g_t at the last check; for a Transformer every block's ‖∂L/∂x_t‖, one
    line style per block (its top block alone is 0 before the last step of a last-step task)."""
    names = []            # the blocks' part names (block0, ...; an encoder–decoder's enc0, ..., dec0, ...)
    for s, color in runs:
        curves = [(s.grad_time, "-")]
        if s.cell == "transformer":
            curves = [(s.layers[l].grad_time, BLOCK_STYLES[i % 4]) for i, l in enumerate(sorted(s.layers))]
            if len(curves) > len(names):
                names = [s.part_names.get(l, f"block{l}") for l in sorted(s.layers)]
        for gt, style in curves:
            k = None if gt is None else stats.last_row(gt)
            if k is not None:
                g = gt[k]
                g = np.where(g > 0, g, np.nan)
                ax.plot(np.arange(len(g)), g, color=color, ls=style, lw=1.4, marker=_few(g))
    if len(names) > 1:
        from matplotlib.lines import Line2D
        ax.legend([Line2D([], [], color="0.3", ls=BLOCK_STYLES[i % 4]) for i in range(len(names))],
                  [f"Transformer {name}" for name in names], fontsize="small", loc="best")
    ax.set_yscale("log")
    ends = {time_label(s) for s, _ in runs}
    ax.set_xlabel(ends.pop() if len(ends) == 1 else "time step t (from the start or the end, per run)")
    ax.set_ylabel(G_LABEL + " (batch mean)")
    ax.set_title("Gradient through time, last check")


def run_marker(i):
    return BLOCK_MARKERS[i % len(BLOCK_MARKERS)]


def _mark_runs(ax, runs):
    """A marker per run on its curves, beside its colour, so that overlapping runs stay apart in
    print and for readers who do not tell the colours apart. The panels of several topics draw a
    run in its colour, so a curve's run is found by its colour; lines across the axes (a cutoff)
    keep their style."""
    marker_of = {to_hex(c): run_marker(i) for i, (_, c) in enumerate(runs)}
    for line in ax.lines:
        marker = marker_of.get(to_hex(line.get_color()))
        n = len(line.get_xdata())
        if marker and n > 1 and line.get_marker() in (None, "None", "") and line.get_transform() == ax.transData:
            line.set(marker=marker, ms=4, markevery=max(1, n // 8))


def _any(runs, test):
    return any(test(s) for s, _ in runs)


def _finite(a):
    return a is not None and len(a) and np.any(np.isfinite(a))


PANELS = [
    ("valid_error", lambda s: _finite(s.check.get("valid_error")), _valid_error),
    ("grad_norm", lambda s: _finite(s.iter.get("grad_norm")), _grad_norm("grad_norm", "before clipping")),
    ("grad_norm_clipped", lambda s: _finite(s.iter.get("grad_norm_clipped")),
     _grad_norm("grad_norm_clipped", "after clipping")),
    ("rho", lambda s: _finite(s.check.get("rho")), _rho),
    ("grad_hist", lambda s: stats.final_hist(s, "log10_grad") is not None, _grad_hist),
    ("grad_time", lambda s: stats.last_row(s.grad_time) is not None, _grad_time),
    ("generation", conditional.has_generation, conditional.compare_controllability),
    *seq2seq.COMPARE_PANELS,
]


def figure_compare(snaps, title=None, ncols=PRINT_COLS):
    """One figure overlaying `snaps`; None when none of the panels has data."""
    runs = list(zip(snaps, run_colors(len(snaps))))
    panels = [(key, draw) for key, test, draw in PANELS if _any(runs, test)]
    if not panels:
        return None
    ncols = min(ncols, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    names = labels(snaps)
    legend_rows = math.ceil(len(names) / 2)
    width = max(PANEL_W * ncols, PAGE_W)
    fig = new_figure(width, PANEL_H * nrows + 1.2 + 0.22 * legend_rows)
    for i, (key, draw) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        draw(ax, runs)
        _mark_runs(ax, runs)
        finish_axes(ax)
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color=c, lw=2, marker=run_marker(i)) for i, (_, c) in enumerate(runs)]
    fig.legend(handles, names, loc="outside lower center", ncols=2 if len(names) > 1 else 1,
               fontsize="medium", title="runs", title_fontsize="medium")
    common = common_config(snaps)
    head = title or f"Comparison of {len(snaps)} run{'s' if len(snaps) != 1 else ''}"
    fig.suptitle(head + (f"\nshared: {common}" if common else ""), fontsize="large")
    return fig


def group_by_task(snaps):
    """{task: [snapshots]} in first-seen order."""
    groups = {}
    for s in snaps:
        groups.setdefault(s.task, []).append(s)
    return groups


def describe(snaps):
    """One line per run for a terminal: name, final error, max gradient norm, ρ end."""
    lines = []
    for s, label in zip(snaps, labels(snaps)):
        sm = stats.summary(s)
        lines.append(f"{label}: valid error {fmt_num(sm['final_valid_error'])}%, "
                     f"max grad norm {fmt_num(sm['max_grad_norm'])}, ρ end {fmt_num(sm['rho_end'])}")
    return lines
