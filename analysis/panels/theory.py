"""Panels of the theory's objects (diagnostics_level = full, the theory probes of dynamics/), drawn
where a run has the data:

    jacobians   ‖J_t‖₂ along the probe trajectory; ‖∂h_T/∂h_{T−k}‖₂ against k
    lyapunov    the top-k Lyapunov exponents over training; sharpness against 2/lr
    surface     the loss along the update direction (1-D, log steps) and a 2-D slice,
                the unclipped and the clipped step marked, the wall named
    groups      per-group gradient norms and update/weight ratios per update

The bounds λ₁ < 1/γ (vanishing) and λ₁ > 1/γ (exploding possible) are drawn on the ρ panel
(panels/spectrum.py), the walls met on the gradient-norm panel (panels/gradients.py).
"""

import numpy as np
from matplotlib import cm, colors

from .. import stats, verdicts as V
from ..canvas import BLOCK_MARKERS, Panel, check_label, iter_label, x_limits
from ..stats import fmt_num

GROUP_COLORS = {"W_hh": "#9467bd", "W_xh": "#2ca02c", "W_hy": "#ff7f0e"}
MARKS = {"taken": "#d62728", "clipped": "#1f77b4"}


def _rows(snap, key):
    a = snap.theory.get(key)
    return a is not None and len(a) and np.isfinite(a).any()


def _spread_rows(n, most=6):
    return sorted(set(np.linspace(0, n - 1, min(n, most)).round().astype(int)))


def _by_iteration(ax, snap, key, draw_row, label):
    """One line per check spread over training, coloured by iteration, with a colour bar."""
    rows = _spread_rows(len(snap.theory[key]))
    x = snap.check_x
    norm = colors.Normalize(x[rows[0]], max(x[rows[-1]], x[rows[0]] + 1))
    cmap = cm.viridis
    for k in rows:
        draw_row(k, cmap(norm(x[k])))
    bar = ax.figure.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.01)
    bar.set_label(label)


# ------------------------------------------------------------------------------ Jacobians

def _state(snap):
    return r"s_t = [h_t, c_t]" if snap.cell == "lstm" else r"h_t"


def draw_jac_steps(ax, snap):
    J = snap.theory["jac_step_norm"]
    t = np.arange(1, J.shape[1] + 1)
    _by_iteration(ax, snap, "jac_step_norm", lambda k, c: ax.plot(t, J[k], color=c, lw=1.2), check_label(snap))
    ax.axhline(1.0, color="k", ls="--", lw=0.9, label="‖J_t‖ = 1")
    lg = snap.check.get("lambda1_gamma")
    if lg is not None and np.isfinite(lg[-1]):
        ax.axhline(lg[-1], color="#d62728", ls=":", lw=1.2, label=f"λ₁γ at the end = {fmt_num(lg[-1])} (bounds ‖J_t‖)")
    if _log_needed(J):
        ax.set_yscale("log")
    ax.legend(loc="best", fontsize="small")
    ax.set_xlabel("step t of the probe sequences")
    s = _state(snap)
    ax.set_ylabel(rf"$\|J_t\|_2 = \|\partial {s} / \partial {s.replace('_t', '_{{t-1}}')}\|_2$" "\n(batch mean)")
    ax.set_title("Step Jacobians along the trajectory")


def _log_needed(a):
    v = a[np.isfinite(a) & (a > 0)]
    return len(v) and v.max() / v.min() > 30


def draw_jac_products(ax, snap):
    P = snap.theory["jac_prod_norm"]
    k = np.arange(1, P.shape[1] + 1)
    _by_iteration(ax, snap, "jac_prod_norm", lambda r, c: ax.plot(k, P[r], color=c, lw=1.2), check_label(snap))
    ax.axhline(1.0, color="k", ls="--", lw=0.9, label="norm 1")
    ax.set_yscale("log")
    ax.legend(loc="best", fontsize="small")
    ax.set_xlabel("steps back k")
    s = "s" if snap.cell == "lstm" else "h"
    ax.set_ylabel(rf"$\|\partial {s}_T/\partial {s}_{{T-k}}\|_2$" "\n(geometric mean over the batch)")
    ax.set_title(r"Products of Jacobians $J_T \cdots J_{T-k+1}$")


# ------------------------------------------------------------------------------ Lyapunov

def draw_lyapunov(ax, snap):
    L = snap.theory["lyapunov"]
    x = snap.check_x
    cmap = cm.plasma
    for i in range(L.shape[1]):             # a marker per exponent: close exponents overlap
        ax.plot(x, L[:, i], color=cmap(i / max(L.shape[1], 2)), lw=1.6 if i == 0 else 1.0, ms=4,
                marker=BLOCK_MARKERS[i % len(BLOCK_MARKERS)], markevery=max(1, len(x) // 10),
                label=f"λ_{i + 1}" + (" (leading)" if i == 0 else ""))
    ax.axhline(0.0, color="k", ls="--", lw=0.9, label="0: perturbations neither grow nor shrink")
    x_limits(ax, snap, x)
    ax.legend(loc="best", fontsize="small", ncols=2)
    ax.set_xlabel(check_label(snap))
    ax.set_ylabel("Lyapunov exponent (natural log per step)")
    ax.set_title(f"Top {L.shape[1]} Lyapunov exponents of the recurrence")


def _has_sharpness(snap):
    y = snap.check.get("sharpness")
    return y is not None and len(y) and np.isfinite(y).any()


def draw_sharpness(ax, snap):
    y = snap.check["sharpness"]
    x = snap.check_x
    ax.plot(x, np.abs(y), color="#8c564b", lw=1.4, marker="." if len(x) < 60 else None,
            label="|top Hessian eigenvalue| (probe batch)")
    neg = y < 0
    if neg.any():
        ax.plot(x[neg], -y[neg], ls="none", marker="v", color="#8c564b", ms=4, label="negative eigenvalue")
    lr = snap.cfg("lr")
    if lr and (snap.cfg("optimizer") in (None, "sgd")):
        ax.axhline(2 / float(lr), color="k", ls="--", lw=0.9, label=f"2/lr = {fmt_num(2 / float(lr))}")
    ax.set_yscale("log")
    x_limits(ax, snap, x)
    ax.legend(loc="best", fontsize="small")
    ax.set_xlabel(check_label(snap))
    ax.set_ylabel("sharpness |λ_max(∇²L)| (loss per parameter²)")
    ax.set_title("Sharpness (power iteration on finite-difference HVPs)")


# ------------------------------------------------------------------------- error surface

def _has_surface(snap):
    return len(snap.surface.get("iter", ())) > 0


def surface_row(snap):
    """The surface to show: the one with the largest wall, else the last one."""
    sf = snap.surface
    walls = [(r, V.surface_wall(sf, r)) for r in range(len(sf["iter"]))]
    walls = [(r, w) for r, w in walls if w is not None]
    if walls:
        r, w = max(walls, key=lambda f: f[1]["jump"])
        return r, w
    return len(sf["iter"]) - 1, None


def _slice(sf, r):
    s, L = sf["steps"][r], sf["loss"][r]
    ok = np.isfinite(s) & (s > 0)
    return s[ok], L[ok]


def draw_surface_line(ax, snap):
    sf = snap.surface
    r, w = surface_row(snap)
    others = [k for k in _spread_rows(len(sf["iter"]), 5) if k != r]
    for k in others:
        s, L = _slice(sf, k)
        ax.plot(s, L, color="0.7", lw=0.8)
    if others:
        ax.plot([], [], color="0.7", lw=0.8, label=("update " if len(others) == 1 else "updates ") + ", ".join(str(int(sf["iter"][k])) for k in others))
    s, L = _slice(sf, r)
    ax.plot(s, L, color="k", lw=1.6, marker=".", ms=3, label=f"update {int(sf['iter'][r])}, "
                                                           f"‖g‖ = {fmt_num(sf['grad_norm'][r])}")
    ax.axhline(sf["loss"][r][0], color="k", ls=":", lw=0.8, label=f"loss at s = 0: {fmt_num(sf['loss'][r][0])}")
    u, c = sf["step_taken"][r], sf["step_clipped"][r]
    ax.axvline(u, color=MARKS["taken"], ls="--", lw=1.1,
               label=f"unclipped step lr‖g‖ {fmt_num(u)} → {fmt_num(V.loss_at(sf, r, u))}")
    if c < u * (1 - 1e-9):
        ax.axvline(c, color=MARKS["clipped"], ls="--", lw=1.1,
                   label=f"clipped step {fmt_num(c)} → {fmt_num(V.loss_at(sf, r, c))}")
    if w is not None:
        ax.plot([w["s_min"]], [w["loss_min"]], marker="v", color="k", ms=7, ls="none",
                label=f"minimum {fmt_num(w['loss_min'])} at s = {fmt_num(w['s_min'])}")
        ax.axvspan(w["s1"], w["s2"], color="#d62728", alpha=0.25,
                   label=f"wall: {fmt_num(w['loss1'])} → {fmt_num(w['loss2'])}, ×{fmt_num(w['jump'])} over the minimum")
    ax.set_xscale("log")
    finite = L[np.isfinite(L)]
    if len(finite) and finite.max() > 0 and finite.max() / max(finite.min(), 1e-300) > 30:
        ax.set_yscale("log")
    ax.legend(loc="upper left", fontsize="small")
    ax.set_xlabel("step length s along −g/‖g‖ (g before clipping)")
    ax.set_ylabel(f"training-batch loss ({'squared error' if snap.task in ('add', 'mul') else 'nats'})")
    ax.set_title("Error surface along the update direction" + (" (wall)" if w is not None else ""))


def draw_surface_plane(ax, snap):
    sf = snap.surface
    r, w = surface_row(snap)
    n = len(sf["grid_s"][r])
    Z = sf["loss_2d"][r][:n * n].reshape(n, n)           # rows: offset t, columns: step s
    s, t = sf["grid_s"][r], sf["grid_t"][r]
    finite = Z[np.isfinite(Z)]
    positive = len(finite) and finite.min() > 0
    norm = colors.LogNorm(finite.min(), finite.max()) if positive and finite.max() / finite.min() > 10 else None
    mesh = ax.pcolormesh(s, t, np.where(np.isfinite(Z), Z, np.nan), shading="nearest", cmap="magma", norm=norm)
    ax.figure.colorbar(mesh, ax=ax, pad=0.01).set_label("training-batch loss")
    u, c = sf["step_taken"][r], sf["step_clipped"][r]
    ax.plot([u], [0], marker="X", ms=10, color=MARKS["taken"], mec="w", ls="none", label=f"unclipped step {fmt_num(u)}")
    if c < u * (1 - 1e-9):
        ax.plot([c], [0], marker="o", ms=9, color=MARKS["clipped"], mec="w", ls="none",
                label=f"clipped step {fmt_num(c)}")
    if w is not None:
        ax.axvspan(w["s1"], w["s2"], color="w", alpha=0.35, label="wall on the 1-D slice")
    ax.set_xscale("log")
    ax.legend(loc="lower left", fontsize="small", framealpha=0.85)
    ax.set_xlabel("step length s along −g/‖g‖")
    ax.set_ylabel("offset along a random orthogonal direction")
    ax.set_title(f"2-D slice of the error surface, update {int(sf['iter'][r])}")


# ----------------------------------------------------------------------------- groups

def _groups(snap, kind):
    prefix = f"{kind}_"
    return [k[len(prefix):] for k in snap.iter if k.startswith(prefix) and k[len(prefix):].startswith("W_")]


def _has_groups(kind):
    return lambda snap: any(np.isfinite(snap.iter[f"{kind}_{g}"]).any() for g in _groups(snap, kind))


def _draw_groups(ax, snap, kind, ylabel, title):
    x = snap.iter_x
    win = max(1, len(x) // 100)
    for j, g in enumerate(_groups(snap, kind)):
        y = snap.iter[f"{kind}_{g}"]
        y = np.where(np.isfinite(y) & (y > 0), y, np.nan)
        color = GROUP_COLORS.get(g.split("_l")[0], f"C{j}")
        ls = "-" if "_l" not in g else "--"         # layers by line style, groups by colour and marker
        marker = BLOCK_MARKERS[j % len(BLOCK_MARKERS)]
        if len(x) > 300:
            ax.plot(*stats.envelope(x, y), color=color, lw=0.4, alpha=0.25, rasterized=True)
            ax.plot(x, stats.smooth_log(y, win), color=color, lw=1.5, ls=ls, marker=marker, ms=4,
                    markevery=len(x) // 10, label=f"{g} (geometric mean of {win})")
        else:
            ax.plot(x, y, color=color, lw=1.0, ls=ls, marker=marker, ms=3, markevery=max(1, len(x) // 10),
                    label=g)
    ax.set_yscale("log")
    ax.legend(loc="best", fontsize="small")
    x_limits(ax, snap, x)
    ax.set_xlabel(iter_label(snap))
    ax.set_ylabel(ylabel)
    ax.set_title(title)


def draw_group_grad(ax, snap):
    _draw_groups(ax, snap, "grad_norm", r"$\|\nabla_W L\|_2$ before clipping", "Gradient norm per parameter group")


def draw_group_ratio(ax, snap):
    _draw_groups(ax, snap, "update_ratio", r"$\|\Delta W\|_2 / \|W\|_2$ per update", "Update-to-weight ratio")


def mark_walls(ax, snap):
    """On the gradient-norm panel: a star at each update whose error-surface slice met a wall."""
    sf = snap.surface
    if not sf or not len(sf.get("iter", ())):
        return
    rows = [r for r in range(len(sf["iter"])) if V.surface_wall(sf, r) is not None]
    if rows:
        ax.plot(sf["iter"][rows], sf["grad_norm"][rows], ls="none", marker="*", ms=12, color="#ffbf00", mec="k",
                mew=0.6, zorder=5, label=f"wall met on the error surface ({len(rows)} of {len(sf['iter'])} slices)")


# ---------------------------------------------------------------------------- bounds on ρ

def draw_bounds(ax, snap):
    """On the ρ panel: λ₁ = σ_max is drawn there already; add 1/γ and shade λ₁ < 1/γ (RNN)."""
    lg, l1 = snap.check.get("lambda1_gamma"), snap.check.get("lambda1")
    if lg is None or l1 is None or not np.isfinite(lg).any():
        return
    gamma = float(np.nanmedian(lg / l1))
    lo, hi = ax.get_ylim()
    ax.axhline(1 / gamma, color="#2ca02c", ls="-.", lw=1.2,
               label=f"1/γ = {fmt_num(1 / gamma)}: λ₁ = σ_max below ⇒ vanishing (shaded); above ⇒ exploding possible")
    ax.axhspan(0, 1 / gamma, color="#2ca02c", alpha=0.07)
    ax.set_ylim(min(lo, 0.95 / gamma), max(hi, 1.05 / gamma))


# ------------------------------------------------------------------------------ register

PANELS = [
    Panel("jac_steps", lambda s: _rows(s, "jac_step_norm"), draw_jac_steps),
    Panel("jac_products", lambda s: _rows(s, "jac_prod_norm"), draw_jac_products),
    Panel("lyapunov", lambda s: _rows(s, "lyapunov"), draw_lyapunov),
    Panel("sharpness", _has_sharpness, draw_sharpness),
    Panel("surface_line", _has_surface, draw_surface_line),
    Panel("surface_plane", _has_surface, draw_surface_plane),
    Panel("group_grad", _has_groups("grad_norm"), draw_group_grad),
    Panel("group_ratio", _has_groups("update_ratio"), draw_group_ratio),
]

FIGURES = {
    "jacobians": ("step Jacobians and their products", ["jac_steps", "jac_products"]),
    "lyapunov": ("Lyapunov exponents and sharpness", ["lyapunov", "sharpness"]),
    "surface": ("error surface along the update direction", ["surface_line", "surface_plane"]),
    "groups": ("per-group gradient norms and update ratios", ["group_grad", "group_ratio"]),
}
