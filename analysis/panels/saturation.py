"""Saturation: the hidden units' distance from saturation d(h) and the gates' d(v), at the end and
over training, and the saturated share of each over training."""
from .. import stats, verdicts as V
from ..canvas import (COLORS, GATE_COLORS, GATE_STYLES, Panel, at_check, check_label, has_evolution, has_final,
                      heat, percent_axis, x_limits)
from ..stats import fmt_pct


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
    ax.legend(loc="best", fontsize="small", title=f"last check ({at_check(snap, k)})",
              title_fontsize="small")
    _pad_x(ax, edges)
    percent_axis(ax, share.max() * 1.3)
    ax.set_xlabel(_d_label(edges) + "  (0 = saturated)")
    ax.set_ylabel(f"share of unit activations\n(% per {edges[1] - edges[0]:g}-wide bin)")
    ax.set_title("Hidden saturation at the end")


def draw_saturation_evolution(ax, snap):
    edges = snap.edges["saturation"]
    heat(ax, snap, "saturation", _d_label(edges), hlines=[(V.SATURATION_D, "--")])
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
        ax.stairs(share, edges, color=GATE_COLORS[g], lw=1.6, ls=GATE_STYLES[g][0],
                  label=f"gate {g}: {fmt_pct(s, 1)} below {V.SATURATION_D:g}")
    ax.axvspan(edges[0], V.SATURATION_D, color=COLORS["band"], alpha=0.12, lw=0)
    _pad_x(ax, edges)
    percent_axis(ax, top * 1.35)
    ax.legend(loc="best", fontsize="small", title="last check", title_fontsize="small")
    ax.set_xlabel(_d_label(edges, "v") + "  (0 = shut or fully open)")
    ax.set_ylabel(f"share of gate activations\n(% per {edges[1] - edges[0]:g}-wide bin)")
    ax.set_title("Gate saturation at the end")


def _has_sat_evolution(snap):
    return _has_gates(snap) and any(has_evolution(f"gate_{g}")(snap) for g in snap.gates)


def draw_saturation_share(ax, snap):
    series = [(f"gate {g}", f"gate_{g}", GATE_COLORS[g], *GATE_STYLES[g]) for g in snap.gates]
    series.append(("hidden h", "saturation", "k", (0, (6, 2)), "x"))
    top = 5.0
    for label, q, color, ls, marker in series:      # style and marker: the shares often coincide
        if q not in snap.hists:
            continue
        keep = stats.rows_with_data(snap.hists[q])
        y = [100 * stats.share_below(snap.hists[q][k], snap.edges[q], V.SATURATION_D) for k in keep]
        ax.plot(snap.check_x[keep], y, color=color, ls=ls, marker=marker, ms=5, mfc="none",
                markevery=max(1, len(keep) // 12), label=label)
        top = max([top, *(1.1 * v for v in y)])
    percent_axis(ax, top)
    x_limits(ax, snap, snap.check_x)
    ax.legend(loc="best", fontsize="small")
    ax.set_xlabel(check_label(snap))
    ax.set_ylabel(f"share saturated, d < {V.SATURATION_D:g} (%)")
    ax.set_title("Saturation over training")


PANELS = [
    Panel("saturation", has_final("saturation"), draw_saturation),
    Panel("saturation_evolution", has_evolution("saturation"), draw_saturation_evolution),
    Panel("gates", _has_gates, draw_gates),
    Panel("saturation_share", _has_sat_evolution, draw_saturation_share),
]

FIGURES = {
    "saturation": ("hidden-unit saturation", ["saturation", "saturation_evolution"]),
    "gates": ("gate saturation", ["gates", "saturation_share"]),
}
