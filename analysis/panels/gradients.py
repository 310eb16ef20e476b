"""Gradients: the global gradient norm per update (clipping and non-finite steps marked), the
distribution of log10 g_t at the end and over training, and g_t through time (per layer too)."""
import numpy as np
from matplotlib import cm, colors
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .. import stats, verdicts as V
from ..canvas import (COLORS, Panel, at_check, check_label, finite, g_label, has_evolution, has_final, heat,
                      iter_label, legend_below, percent_axis, readable_log_axis, spread, time_label, x_limits)
from ..stats import fmt_num, fmt_pct
from . import theory

MAX_CLIP_MARKERS = 400               # clipped steps marked one by one up to this many


# ------------------------------------------------------------------------- gradient norms

def _has_grad_norm(snap):
    return finite(snap.iter.get("grad_norm")) or finite(snap.iter.get("grad_norm_clipped"))


def _norm_series(snap):
    """(positive norms, colour, label) before and after clipping, where recorded."""
    series = []
    for key, color, label in (("grad_norm", COLORS["before"], "before clipping"),
                              ("grad_norm_clipped", COLORS["after"], "after clipping")):
        y = snap.iter.get(key)
        if finite(y):
            series.append((np.where(np.isfinite(y) & (y > 0), y, np.nan), color, label))
    if len(series) == 2 and np.allclose(series[0][0], series[1][0], equal_nan=True):
        series[1] = (series[1][0], series[1][1], "after clipping (= before: nothing clipped)")
    return series


def _draw_norms(ax, x, series, win):
    widths = [2.4, 1.2]           # "after" drawn thinner on top, so that both stay visible
    if len(x) > 300:   # every update thin and pale first, the running means on top
        for pos, color, _ in series:
            ax.plot(*stats.envelope(x, pos), color=color, lw=0.4, alpha=0.3, rasterized=True)
        for (pos, color, label), lw in zip(series, widths):
            ax.plot(x, stats.smooth_log(pos, win), color=color, lw=lw, label=label)
        ax.plot([], [], color="grey", lw=1.5, label=f"bold: geometric mean of {win} updates")
        ax.plot([], [], color="grey", lw=0.4, label="thin: every update")
    else:
        for (pos, color, label), lw in zip(series, widths):
            ax.plot(x, pos, color=color, lw=lw, marker="." if lw < 2 else None, ms=3, label=label)


def _mark_clipped(ax, snap, win):
    """Clipped updates circled one by one, or, too many for that, their share on a right axis."""
    x = snap.iter_x
    gn = stats.grad_norm_stats(snap)
    clipped = snap.iter.get("clipped")
    g = snap.iter.get("grad_norm")
    updates = "update" if gn["n_clipped"] == 1 else "updates"
    clip_label = f"clipped: {gn['n_clipped']} {updates} ({fmt_pct(gn['share_clipped'], 1)})"
    if clipped is not None and g is not None and 0 < gn["n_clipped"] <= MAX_CLIP_MARKERS:
        sel = (clipped > 0.5) & np.isfinite(g) & (g > 0)
        ax.plot(x[sel], g[sel], ls="none", marker="o", ms=2.5, mfc="none", mew=0.6,
                color=COLORS["clip"], rasterized=True, label=clip_label + ", circled")
    elif clipped is not None and gn["n_clipped"]:
        twin = ax.twinx()
        twin.set_zorder(ax.get_zorder() - 1)      # keep the legend of `ax` on top
        ax.patch.set_visible(False)
        cwin = max(win, 10)
        twin.plot(*stats.envelope(x, 100 * stats.smooth(clipped, cwin)), color=COLORS["clip"],
                  lw=0.9, alpha=0.8)
        twin.set_ylim(0, 100)
        twin.set_ylabel(f"clipped updates (% of {cwin}, red)", color=COLORS["clip"])
        twin.tick_params(axis="y", colors=COLORS["clip"])
        ax.plot([], [], color=COLORS["clip"], lw=0.9, label=clip_label + ", share on right axis")


def _mark_nonfinite(ax, snap):
    """A red line and a triangle on top at each update whose gradient was not finite."""
    x = snap.iter_x
    nonfinite = snap.iter.get("nonfinite")
    g = snap.iter.get("grad_norm")
    bad = np.zeros(len(x), bool)
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
                label=f"non-finite gradient: {int(bad.sum())} updates (red lines)")


def _norm_limits(ax, vals):
    """y limits around the norms (the legend is below the axes: no headroom for it)."""
    if not vals:
        return
    v = np.concatenate(vals)
    v = v[np.isfinite(v) & (v > 0)]
    if len(v):
        ax.set_ylim(v.min() / 2, v.max() * 2)


def draw_grad_norm(ax, snap):
    x = snap.iter_x
    win = max(1, len(x) // 100)
    series = _norm_series(snap)
    _draw_norms(ax, x, series, win)
    _mark_clipped(ax, snap, win)
    cutoff = snap.cfg("cutoff", "clip_cutoff")
    style = snap.cfg("clip", "clipstyle", "clipping")
    if cutoff and style not in (None, "none", "", False):
        ax.axhline(float(cutoff), color="k", ls="--", lw=0.9, label=f"cutoff c = {fmt_num(float(cutoff))}")
    _mark_nonfinite(ax, snap)
    theory.mark_walls(ax, snap)
    ax.set_yscale("log")
    _norm_limits(ax, [pos for pos, _, _ in series])
    x_limits(ax, snap, x)
    readable_log_axis(ax)
    legend_below(ax, ncols=3)
    ax.set_xlabel(iter_label(snap))
    ax.set_ylabel(r"global gradient norm $\|\nabla_\theta L\|_2$")
    ax.set_title("Gradient norm per update")


# --------------------------------------------------------------------- log10 g_t histogram

def _grad_hist_range(counts_rows, edges):
    rows = np.atleast_2d(counts_rows)
    nz = np.flatnonzero(rows.sum(axis=0) > 0)
    lo, hi = (edges[nz[0]], edges[nz[-1] + 1]) if len(nz) else (edges[0], edges[-1])
    lo = min(lo, V.VANISHING_BAND[0] - 1)
    hi = max(hi, V.GROWING_LOG10 + 1)
    return max(lo - 0.5, edges[0]), min(hi + 0.5, edges[-1])


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
        Line2D([], [], color="k", lw=0.8, ls="--",
               label=f"above {V.GROWING_LOG10:g} (g_t > 1): {fmt_pct(above, 1)}"),
    ]
    ax.legend(handles=handles, loc="best", fontsize="small", title_fontsize="small",
              title=f"share of mass, last check ({at_check(snap, k)})\n"
                    f"below {V.VANISHING_LOG10:g}: {fmt_pct(below, 1)}")
    ax.set_xlim(*_grad_hist_range(counts, edges))
    percent_axis(ax, share.max() * 1.45)
    ax.set_xlabel(r"$\log_{10} g_t$, " + g_label(snap) + " (every t and sequence)")
    ax.set_ylabel(f"share of (t, sequence) pairs\n(% per {edges[1] - edges[0]:g}-wide bin)")
    ax.set_title(r"$\log_{10} g_t$ at the end")


def draw_grad_hist_evolution(ax, snap):
    rows = snap.hists["log10_grad"]
    edges = snap.edges["log10_grad"]
    heat(ax, snap, "log10_grad", r"$\log_{10} g_t$", _grad_hist_range(rows, edges),
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


def _fit_label(g, prefix, from_end=False):
    fit = stats.decay_fit(g)
    if fit is None:
        return prefix, None
    b = -fit[0] if from_end else fit[0]   # end-aligned: t counts back from the last token
    word, factor = V.per_step_change(b)
    word += "," if word == "flat" else ""
    return (f"{prefix}: {word} {factor} per step\nback in time "
            f"(slope {b:.3g} decades/step)"), fit


def draw_grad_time(ax, snap):
    gt = snap.grad_time
    rows = spread(list(stats.rows_with_data(gt)))
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
    label, fit = _fit_label(gt[k], f"fit at {at_check(snap, k)}", snap.end_aligned)
    if fit is not None:
        t = np.arange(len(gt[k]))[np.isfinite(gt[k])]
        ax.plot(t, 10 ** (fit[1] + fit[0] * t), "k:", lw=1.3, label=label)
        ax.legend(loc="best", fontsize="small")
    ax.set_yscale("log")
    if len(rows) > 1:
        sm = cm.ScalarMappable(norm=norm, cmap=cmap)
        cb = ax.get_figure(root=False).colorbar(sm, ax=ax, pad=0.01)
        cb.set_label(f"{check_label(snap)} of the check")
    ax.set_xlabel(time_label(snap))
    ax.set_ylabel(g_label(snap) + "\n(batch mean)")
    ax.set_title(f"Gradient through time, {len(rows)} checks" if len(rows) > 1
                 else f"Gradient through time, {at_check(snap, rows[0])}")


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
        label, _ = _fit_label(g, name, snap.end_aligned)
        ax.plot(np.arange(len(g)), np.where(g > 0, g, np.nan), ls=styles[i % 4], lw=1.4,
                label=label)
    ax.set_yscale("log")
    ax.legend(loc="best", fontsize="small")
    ax.set_xlabel(time_label(snap))
    ax.set_ylabel(g_label(snap) + "\n(batch mean, last check)")
    ax.set_title("Gradient through time per layer")


PANELS = [
    Panel("grad_norm", _has_grad_norm, draw_grad_norm, span=2),
    Panel("grad_hist", has_final("log10_grad"), draw_grad_hist),
    Panel("grad_hist_evolution", has_evolution("log10_grad"), draw_grad_hist_evolution),
    Panel("grad_time", _has_grad_time, draw_grad_time),
    Panel("grad_time_layers", _has_layers, draw_grad_time_layers),
]

FIGURES = {
    "grad_norm": ("gradient norm and clipping", ["grad_norm"]),
    "grad_hist": ("distribution of log10 g_t", ["grad_hist", "grad_hist_evolution"]),
    "grad_time": ("gradient through time", ["grad_time", "grad_time_layers"]),
}
