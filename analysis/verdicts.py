"""What the figures of a run show, stated from the data in one line each.

Every threshold is a named constant here and nowhere else; figures import them to draw the
same lines and bands the verdicts use. A `Verdict` carries its number, so tests can check it
against a direct computation.
"""
import math
from dataclasses import dataclass

import numpy as np

from . import stats
from .classify_figures import end_aligned
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

#: Chance-level cross-entropy (nats) of the tasks where a stall is well defined (TASKS.md).
CHANCE_LOSS = {"torder": math.log(4), "torder3": math.log(8)}


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


def decay_rate(snap):
    gt = snap.grad_time
    k = stats.last_row(gt)
    if k is None:
        return None
    fit = stats.decay_fit(gt[k])
    if fit is None:
        return None
    b = -fit[0] if end_aligned(snap) else fit[0]   # end-aligned: t counts back from the last token
    factor = 10 ** (-b)
    if b >= 0:
        text = f"g_t shrinks ×{factor:.3g} per step back in time (log10 slope {b:.3g}/step, last check)"
    else:
        text = f"g_t grows ×{factor:.3g} per step back in time (log10 slope {b:.3g}/step, last check)"
    return Verdict("decay_rate", b, text)


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


def verdicts(snap):
    """All verdicts that hold for the run, most important first."""
    out = [status(snap), vanishing(snap)]
    out += [vanishing(snap, l) for l in sorted(snap.layers) if l > 0]
    out += [growing(snap), exploding(snap), nonfinite(snap), clipped(snap), stalled(snap),
            saturated(snap)]
    out += [gate(snap, g) for g in snap.gates]
    out += [rho(snap), decay_rate(snap)]
    return [v for v in out if v is not None]
