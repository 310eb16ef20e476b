"""What the figures of a run show, stated from the data in one line each.

Every threshold is a named constant here and nowhere else; figures import them to draw the
same lines and bands the verdicts use. A `Verdict` carries its number, so tests can check it
against a direct computation.
"""
import math
from dataclasses import dataclass

import numpy as np

from . import stats
from .stats import fmt_num, fmt_pct

# ------------------------------------------------------------------------------ thresholds

#: g_t = ||dL/dh_t|| below 10**VANISHING_LOG10 counts as vanished: at float32 precision such a
#: gradient no longer changes a weight. The histogram figure shades VANISHING_BAND.
VANISHING_LOG10 = -8.0
VANISHING_BAND = (-12.0, -8.0)
#: "vanishing" when at least this share of the final log10 g_t mass lies below VANISHING_LOG10.
VANISHING_MIN_SHARE = 0.10

#: g_t above 10**GROWING_LOG10 (= 1) counts as large; the histogram prints the share above it.
GROWING_LOG10 = 0.0
#: "growing g_t" when at least this share of the final log10 g_t mass lies above GROWING_LOG10.
GROWING_MIN_SHARE = 0.10

#: "exploding" when the largest finite gradient norm is at least this many times the median.
EXPLODING_NORM_RATIO = 100.0

#: "clipped" is stated when more than this share of the steps were clipped.
CLIPPED_MIN_SHARE = 0.0

#: A unit or gate is saturated when d < SATURATION_D, with d = 1 - |h| for tanh units and
#: d = min(v, 1 - v) for sigmoid units and gates.
SATURATION_D = 0.05
#: "saturated" when at least this share of the final d-histogram lies below SATURATION_D.
SATURATED_MIN_SHARE = 0.20

#: "stalled at chance" when the final validation loss is within this relative distance of the
#: chance-level loss of a classification task (ln 4 for torder).
STALL_REL_TOL = 0.02

#: Chance-level cross-entropy (nats) of the tasks where a stall is well defined (docs/tasks.md).
CHANCE_LOSS = {"torder": math.log(4), "torder3": math.log(8)}


#: A wall on the error surface (diagnostics_level = full), on the 1-D slice of the loss along the
#: update direction: the loss falls to its minimum L* at step length s*, and the unclipped step u
#: overshoots it by at least WALL_OVERSHOOT (u >= 4 s*: on a quadratic, a step that long raises
#: the loss above where it started) into losses at least WALL_JUMP times L*. The wall itself is
#: drawn at the steepest rise between s* and u.
WALL_OVERSHOOT = 4.0
WALL_JUMP = 2.0


@dataclass(frozen=True)
class Verdict:
    kind: str       # vanishing, growing, exploding, nonfinite, clipped, saturated, gate_<g>, rho, ...
    value: float    # the number the text states (a share as 0..1, a norm, ρ at the end, ...)
    text: str

    def __str__(self):
        return self.text


# -------------------------------------------------------------------------------- verdicts

def status(snap):
    s = snap.status
    if s == "failed":
        lines = [ln.strip() for ln in snap.error.splitlines() if ln.strip()]
        if lines and lines[0].startswith("Traceback"):
            lines = lines[-1:]                  # the exception itself, not the stack
        error = " ".join(" ".join(lines).split()) or "no error recorded"
        return Verdict("failed", math.nan, f"failed: {error}")
    if s == "solved":
        it = snap.iterations_done
        return Verdict("solved", float(it), f"solved at iteration {it} (valid error < 1e-4 %)")
    if s == "running":
        return Verdict("running", float(snap.iterations_done),
                       f"still running: snapshot at iteration {snap.iterations_done}")
    if s == "stopped":
        return Verdict("stopped", float(snap.iterations_done), snap.stopped_text)
    if s == "interrupted":
        return Verdict("interrupted", float(snap.iterations_done),
                       f"interrupted at iteration {snap.iterations_done}")
    return None


def _log10_mass(snap, layer, kind, share_of, bound, min_share, label, side):
    """A verdict on the share of the final log10 g_t histogram beyond `bound`."""
    fh = stats.final_hist(snap, "log10_grad", layer)
    if fh is None:
        return None
    share = share_of(fh[0], fh[1], bound)
    if not share >= min_share:
        return None
    where = f" (layer {layer})" if layer else ""
    return Verdict(kind + (f"_l{layer}" if layer else ""), share,
                   f"{label}{where}: {fmt_pct(share)} of log10 g_t mass {side} {bound:g} at the end")


def read_at_last_step_only(snap, layer):
    """Whether a part's last g_t is exactly 0 at every step but the last one: nothing reads it
    earlier (a Transformer's top block under a last-step head), so its zeros are no vanishing."""
    gt = snap.layers[layer].grad_time if layer in snap.layers else None
    k = None if gt is None else stats.last_row(gt)
    if k is None:
        return False
    g = gt[k][np.isfinite(gt[k])]
    return len(g) > 1 and g[-1] > 0 and not np.any(g[:-1])


def vanishing(snap, layer=0):
    if read_at_last_step_only(snap, layer):
        return None
    return _log10_mass(snap, layer, "vanishing", stats.share_below, VANISHING_LOG10, VANISHING_MIN_SHARE,
                       "vanishing", "below")


def growing(snap, layer=0):
    return _log10_mass(snap, layer, "growing", stats.share_above, GROWING_LOG10, GROWING_MIN_SHARE,
                       "large g_t", "above")


def exploding(snap):
    gn = stats.grad_norm_stats(snap)
    mx, med = gn["max"], gn["median"]
    if not (med > 0 and mx >= EXPLODING_NORM_RATIO * med):
        return None
    return Verdict("exploding", mx, f"exploding: max gradient norm {fmt_num(mx, 2)} "
                                    f"(median {fmt_num(med, 2)})")


def nonfinite(snap):
    n = stats.grad_norm_stats(snap)["n_nonfinite"]
    if not n:
        return None
    return Verdict("nonfinite", float(n),
                   f"non-finite gradients in {n} step{'s' if n != 1 else ''}")


def clipped(snap):
    gn = stats.grad_norm_stats(snap)
    share = gn["share_clipped"]
    if not share > CLIPPED_MIN_SHARE:
        return None
    return Verdict("clipped", share, f"clipped {fmt_pct(share)} of steps "
                                     f"({gn['n_clipped']} of {len(snap.iter['clipped'])})")


def saturated(snap):
    fh = stats.final_hist(snap, "saturation")
    if fh is None:
        return None
    share = stats.share_below(fh[0], fh[1], SATURATION_D)
    if not share >= SATURATED_MIN_SHARE:
        return None
    d = "min(h, 1 − h)" if fh[1][-1] <= 0.5 + 1e-9 else "1 − |h|"
    return Verdict("saturated", share, f"hidden units saturated: {fmt_pct(share)} with "
                                       f"{d} < {SATURATION_D:g}")


def gate(snap, name):
    fh = stats.final_hist(snap, f"gate_{name}")
    if fh is None:
        return None
    share = stats.share_below(fh[0], fh[1], SATURATION_D)
    if not share >= SATURATED_MIN_SHARE:
        return None
    text = f"gate {name} saturated: {fmt_pct(share)} with min(v, 1 − v) < {SATURATION_D:g}"
    # /final/sample holds one layer's activations; which one is not recorded, so the near-0 /
    # near-1 split is given only where there is a single layer.
    v = snap.final_sample.get(name) if len(snap.layers) == 1 else None
    if v is not None and v.size:
        v = v[np.isfinite(v)]
        if v.size:
            hi = float(np.mean(v > 1 - SATURATION_D))
            lo = float(np.mean(v < SATURATION_D))
            text += f" (last batch: {fmt_pct(hi)} near 1, {fmt_pct(lo)} near 0)"
    return Verdict(f"gate_{name}", share, text)


def rho(snap):
    start, end = stats.rho_start_end(snap)
    if math.isnan(start) and math.isnan(end):
        return None
    text = f"ρ({snap.recurrent_matrix}) {fmt_num(start)} → {fmt_num(end)}"
    r = snap.check.get("rho")
    if r is not None and len(r):
        above = np.flatnonzero(np.isfinite(r) & (r >= 1.0))
        if len(above) and (start < 1.0 or r[0] < 1.0):
            word = "iteration" if snap.check_xlabel.startswith("iteration") else "check"
            text += f", at or above 1 from {word} {int(snap.check_x[above[0]])}"
    return Verdict("rho", end, text)


FLAT_SLOPE = 0.002   # |log10 slope| below this: under 0.5 % per step, a factor 1.6 over 100 steps


def per_step_change(b):
    """How g_t changes per step back in time for a log10 slope b: ("flat" | "shrinks" | "grows", "×f")."""
    if abs(b) < FLAT_SLOPE:
        return "flat", f"×{10 ** (-b):.4f}"
    return ("shrinks" if b >= 0 else "grows"), f"×{10 ** (-b):.3g}"


def decay_rate(snap):
    gt = snap.grad_time
    k = stats.last_row(gt)
    if k is None:
        return None
    fit = stats.decay_fit(gt[k])
    if fit is None:
        return None
    b = -fit[0] if snap.end_aligned else fit[0]   # end-aligned: t counts back from the last token
    word, factor = per_step_change(b)
    if word == "flat":
        text = f"g_t flat through time: {factor} per step back (log10 slope {b:.3g}/step, last check)"
    else:
        text = f"g_t {word} {factor} per step back in time (log10 slope {b:.3g}/step, last check)"
    return Verdict("decay_rate", b, text)


def horizon(snap):
    """How far back the gradient reaches at the last check (dynamics/probes/horizon.py)."""
    last = stats.last_horizon(snap)
    if last is None:
        return None
    h3, h6, n = int(last[0]), last[1], int(last[2])
    deeper = f"all {n}" if h6 == n else f"{int(h6)}" if math.isfinite(h6) else "?"
    if h3 == n:
        text = f"the gradient reaches back all {n} steps: g_t stays above 10⁻³ of its value at the loss (last check)"
    else:
        text = (f"the gradient reaches back {h3} step{'s' if h3 != 1 else ''} of {n}: g_t falls below 10⁻³ of its "
                f"value at the loss there (10⁻⁶: {deeper}; last check)")
    return Verdict("horizon", h3, text)


def stalled(snap):
    chance = CHANCE_LOSS.get(snap.task)
    loss = snap.check.get("valid_loss")
    if chance is None or loss is None:
        return None
    loss = loss[np.isfinite(loss)]
    if not len(loss) or abs(loss[-1] - chance) > STALL_REL_TOL * chance:
        return None
    n = {"torder": 4, "torder3": 8}[snap.task]
    return Verdict("stalled", float(loss[-1]),
                   f"stalled at chance: valid loss {loss[-1]:.3f} ≈ ln {n} = {chance:.3f}")


# ------------------------------------------------------- the theory's objects (full level)

def _word(snap):
    return "iteration" if snap.check_xlabel.startswith("iteration") else "check"


def bounds(snap):
    """The regime by the bounds at the last check: RNN λ₁ γ < 1 (vanishing certain) or > 1
    (exploding possible); for every cell sup_t ‖J_t‖₂ along the probe trajectory, whose value
    below 1 makes every ‖∂h_T/∂h_{T−k}‖ ≤ sup^k vanish."""
    lg, l1 = snap.check.get("lambda1_gamma"), snap.check.get("lambda1")
    J = snap.theory.get("jac_step_norm")
    if J is None or not len(J):
        return None
    sup = float(np.nanmax(J[-1])) if np.isfinite(J[-1]).any() else math.nan
    trajectory = f"sup_t ‖J_t‖₂ = {fmt_num(sup)} on the probe batch"
    if lg is not None and np.isfinite(lg[-1]):
        gamma = lg[-1] / l1[-1]
        if lg[-1] < 1:
            regime = "vanishing guaranteed (λ₁γ < 1, the sufficient condition)"
        else:
            regime = "vanishing not guaranteed, exploding possible (λ₁γ > 1, the necessary condition)"
        text = f"bounds: {regime}: λ₁({snap.recurrent_matrix}) = {fmt_num(l1[-1])}, 1/γ = {fmt_num(1 / gamma)} at the end"
        crossed = np.flatnonzero(np.diff((lg >= 1).astype(int)) != 0)
        if len(crossed):
            text += f"; crosses 1/γ {len(crossed)}× , last at {_word(snap)} {int(snap.check_x[crossed[-1] + 1])}"
        return Verdict("bounds", float(lg[-1]), text + f"; {trajectory}")
    regime = "vanishing" if sup < 1 else "no bound (sup ‖J_t‖ ≥ 1)"
    return Verdict("bounds", sup, f"regime by the step Jacobians: {regime} ({trajectory} at the end; "
                                  f"the λ₁ < 1/γ bound is the RNN's, a {snap.cell.upper()} has an additive path)")


def lyapunov(snap):
    L = snap.theory.get("lyapunov")
    if L is None or not len(L) or not np.isfinite(L[-1, 0]):
        return None
    lead = L[:, 0]
    k = int(np.nanargmax(lead))
    text = (f"leading Lyapunov exponent {lead[-1]:+.3g} per step at the end (perturbations ×{math.exp(lead[-1]):.3g} "
            f"per step, {'growing' if lead[-1] > 0 else 'shrinking'}); largest {lead[k]:+.3g} at {_word(snap)} "
            f"{int(snap.check_x[k])}")
    return Verdict("lyapunov", float(lead[-1]), text)


def surface_wall(surface, row):
    """The wall on the 1-D slice of surface row `row`, or None: {s_min, loss_min (L*), jump (the
    largest loss within the step over L*), s1, s2, loss1, loss2 (the steepest rise)}."""
    s, L = surface["steps"][row], surface["loss"][row]
    ok = np.isfinite(s)
    s, L = s[ok], np.where(np.isfinite(L[ok]), L[ok], np.inf)
    reach = s <= surface["step_taken"][row] * (1 + 1e-9)
    s, L = s[reach], L[reach]
    if len(s) < 3:
        return None
    k = int(np.argmin(L))
    if L[k] <= 0 or s[-1] < WALL_OVERSHOOT * max(s[k], s[1]) or L[k:].max() < WALL_JUMP * L[k]:
        return None
    rise = L[k + 1:] / L[k:-1]
    j = k + int(np.argmax(rise))
    return {"s_min": float(s[k]), "loss_min": float(L[k]), "jump": float(L[k:].max() / L[k]),
            "s1": float(s[j]), "s2": float(s[j + 1]), "loss1": float(L[j]), "loss2": float(L[j + 1])}


def loss_at(surface, row, step):
    """The 1-D slice's loss at step length `step`, interpolated in log s."""
    s, L = surface["steps"][row], surface["loss"][row]
    ok = np.isfinite(s) & (s > 0) & np.isfinite(L)
    if ok.sum() < 2:
        return math.nan
    return float(np.interp(math.log10(step), np.log10(s[ok]), L[ok]))


def wall(snap):
    """When the run met a wall: the surface with the largest jump among those that have one."""
    sf = snap.surface
    if not sf or not len(sf.get("iter", ())):
        return None
    found = [(r, surface_wall(sf, r)) for r in range(len(sf["iter"]))]
    found = [(r, w) for r, w in found if w is not None]
    if not found:
        return Verdict("wall", math.nan, f"no wall on the {len(sf['iter'])} error-surface slices (no unclipped step "
                                         f"overshoots the minimum along its direction ×{WALL_OVERSHOOT:g} into a "
                                         f"loss ×{WALL_JUMP:g} above it)")
    r, w = max(found, key=lambda f: f[1]["jump"])
    u, c = sf["step_taken"][r], sf["step_clipped"][r]
    text = (f"met a wall at iteration {int(sf['iter'][r])} (‖g‖ = {fmt_num(sf['grad_norm'][r])}): along the update "
            f"direction the loss falls from {fmt_num(sf['loss'][r][0])} to {fmt_num(w['loss_min'])} at step "
            f"{fmt_num(w['s_min'])}, then jumps ×{fmt_num(w['jump'])} (steepest {fmt_num(w['loss1'])} → "
            f"{fmt_num(w['loss2'])} between {fmt_num(w['s1'])} and {fmt_num(w['s2'])}); the unclipped step "
            f"{fmt_num(u)} lands at {fmt_num(loss_at(sf, r, u))}")
    if c < u * (1 - 1e-9):
        text += f", the clipped step {fmt_num(c)} at {fmt_num(loss_at(sf, r, c))}"
    text += f" (walls in {len(found)} of {len(sf['iter'])} slices)"
    return Verdict("wall", float(sf["iter"][r]), text)


def sharpness(snap):
    y = snap.check.get("sharpness")
    if y is None or not len(y) or not np.isfinite(y).any():
        return None
    last = y[np.isfinite(y)][-1]
    lr = snap.cfg("lr")
    text = f"sharpness (top Hessian eigenvalue, probe batch) {fmt_num(last)} at the end, max {fmt_num(np.nanmax(y))}"
    if lr:
        text += f" (2/lr = {fmt_num(2 / float(lr))})"
    return Verdict("sharpness", float(last), text)


def verdicts(snap):
    """All verdicts that hold for the run, most important first."""
    out = [status(snap), vanishing(snap)]
    out += [vanishing(snap, l) for l in sorted(snap.layers) if l > 0]
    out += [growing(snap), exploding(snap), nonfinite(snap), clipped(snap), stalled(snap),
            saturated(snap)]
    out += [gate(snap, g) for g in snap.gates]
    out += [rho(snap), decay_rate(snap), horizon(snap)]
    out += [bounds(snap), lyapunov(snap), wall(snap), sharpness(snap)]
    return [v for v in out if v is not None]
