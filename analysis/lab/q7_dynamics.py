"""Question 7: the training dynamics of the presets A1–A5, B1–B2, C0–C1. One row per preset from its
summary and verdicts, and three comparison paragraphs: the clipping regimes (A1–A3), RNN against
GRU (A1/A4, A2/A5, B1/B2), and C1 against C0. The chapter adds each preset's dashboard (`notes`)."""
import math

import pandas as pd

from .. import stats, verdicts as V
from ..stats import fmt_num
from .common import Answer, cell_name, clipping

TITLE = "Training dynamics of A1–A5, B1–B2, C0–C1"
PRESETS = ("A1", "A2", "A3", "A4", "A5", "B1", "B2", "C0", "C1")     # the chapter's order
CLIPPING = ("A1", "A2", "A3")                                        # the same task, tighter cutoffs
CELL_PAIRS = (("A1", "A4"), ("A2", "A5"), ("B1", "B2"))              # RNN against GRU


def preset_name(s):
    """A1 for the run `preset=A1` (a sweep point) or `A1`."""
    return s.name.split("preset=")[-1].split(",")[0]


def dyn_row(s):
    sm = stats.summary(s)
    vs = {v.kind: v for v in V.verdicts(s)}
    gates = [v.value for k, v in vs.items() if k.startswith("gate_")]
    decay = vs.get("decay_rate")
    return {"run": preset_name(s), "task": s.task, "cell": cell_name(s), "clip": clipping(s),
            "status": s.status, "updates": sm["iterations"], "final_valid_error": sm["final_valid_error"],
            "final_valid_loss": sm["final_valid_loss"], "max_grad_norm": sm["max_grad_norm"],
            "median_grad_norm": sm["median_grad_norm"], "clipped": sm["share_clipped"],
            "rho_end": sm["rho_end"], "vanishing": vs["vanishing"].value if "vanishing" in vs else 0.0,
            "exploding": "exploding" in vs, "gate_saturated": max(gates) if gates else 0.0,
            "decay_per_step": 10 ** (-decay.value) if decay is not None else math.nan,
            "stalled": "stalled" in vs}


def _pct(x):
    return f"{100 * x:.0f}%"


def _explosions(r, have):
    """Which of the runs `have` explode: "only A1 explodes (max ≥ …× median)", "A1, A2 explode (…)"
    or "none explodes"."""
    boom = r.loc[have, "exploding"]
    if not boom.any():
        return "none explodes"
    one = sum(boom) == 1
    return (("only " if one else "") + ", ".join(n for n in have if r.loc[n, "exploding"]) + " explode"
            + ("s" if one else "") + f" (max ≥ {V.EXPLODING_NORM_RATIO:g}× median)")


def clipping_paragraph(rows):
    """A1 against A2 against A3: what clipping bounds and what it costs."""
    r = rows.set_index("run")
    have = [n for n in CLIPPING if n in r.index]
    if len(have) < 2:
        return None
    parts = [f"{n} (clip {r.loc[n, 'clip']}) {fmt_num(r.loc[n, 'max_grad_norm'], 2)}" for n in have]
    s = [f"Clipping regimes ({', '.join(have)}): the largest gradient norm is " + ", ".join(parts) + "; "
         + _explosions(r, have) + "."]
    s.append("Clipped updates: " + ", ".join(f"{n} {_pct(r.loc[n, 'clipped'])}" for n in have) + ".")
    loss = [r.loc[n, "final_valid_loss"] for n in have]
    order = ("tighter clipping slows learning" if all(b > a for a, b in zip(loss, loss[1:])) else
             "tighter clipping speeds learning" if all(b < a for a, b in zip(loss, loss[1:])) else
             "no monotone effect of the cutoff on learning")
    losses = ", ".join(f"{n} {fmt_num(x, 3)}" for n, x in zip(have, loss))
    rhos = ", ".join(f"{n} {fmt_num(r.loc[n, 'rho_end'], 3)}" for n in have)
    s.append(f"Final validation loss {losses}: {order}; ρ at the end {rhos}.")
    return " ".join(s)


def cell_sentence(a, b, x, y):
    """Preset `a` (row x, the RNN) against `b` (row y, the GRU) on the same task and clipping."""
    rx, ry = x["max_grad_norm"] / x["median_grad_norm"], y["max_grad_norm"] / y["median_grad_norm"]
    err = ("lower" if y["final_valid_error"] < x["final_valid_error"] else
           "higher" if y["final_valid_error"] > x["final_valid_error"] else "the same")
    return (f"{a} against {b} ({x['task']}, clip {x['clip']}): the {y['cell']}'s gradient norm spikes "
            f"{'less' if ry < rx else 'more'} than the {x['cell']}'s (max/median {fmt_num(ry, 2)} against "
            f"{fmt_num(rx, 2)}); {_pct(y['vanishing'])} against {_pct(x['vanishing'])} of log10 g_t mass below "
            f"{V.VANISHING_LOG10:g}; gates saturated {_pct(y['gate_saturated'])}; final validation error "
            f"{fmt_num(y['final_valid_error'], 3)}% against {fmt_num(x['final_valid_error'], 3)}% ({err}).")


def cell_paragraph(rows, pairs=CELL_PAIRS):
    """RNN against GRU on the same task and clipping."""
    r = rows.set_index("run")
    out = [cell_sentence(a, b, r.loc[a], r.loc[b]) for a, b in pairs if a in r.index and b in r.index]
    return " ".join(out) or None


def _outcome(x, n):
    """How preset `n` (row x) ended: solved at an update, or its error after its updates."""
    if x["status"] == "solved":
        return f"{n} is solved at update {int(x['updates'])} ({fmt_num(x['final_valid_error'], 3)}% error)"
    return (f"{n} ends at {fmt_num(x['final_valid_error'], 3)}% error after {int(x['updates'])} updates"
            + (" (stalled at chance)" if x["stalled"] else ""))


def c_paragraph(rows):
    """C1 against C0: what smart_tanh, clipping and Ω change on temporal order."""
    r = rows.set_index("run")
    if "C0" not in r.index or "C1" not in r.index:
        return None
    c0, c1 = r.loc["C0"], r.loc["C1"]
    flatter = abs(math.log(c1["decay_per_step"])) < abs(math.log(c0["decay_per_step"]))
    return (f"C1 against C0 (temporal order): {_outcome(c1, 'C1')}, {_outcome(c0, 'C0')}. "
            f"Per step back in time g_t changes ×{fmt_num(c1['decay_per_step'], 3)} in C1 against "
            f"×{fmt_num(c0['decay_per_step'], 3)} in C0 ({'flatter' if flatter else 'steeper'} "
            f"in C1); ρ at the end {fmt_num(c1['rho_end'], 3)} against {fmt_num(c0['rho_end'], 3)}; "
            f"largest gradient norm {fmt_num(c1['max_grad_norm'], 2)} against {fmt_num(c0['max_grad_norm'], 2)}, "
            f"{_pct(c1['clipped'])} of C1's updates clipped.")


def q7_text(rows):
    if not len(rows):
        return ["No preset runs."]
    return [p for p in (clipping_paragraph(rows), cell_paragraph(rows), c_paragraph(rows)) if p] or \
        ["The preset runs hold none of the pairs compared here."]


def q7(presets):
    order = {n: i for i, n in enumerate(PRESETS)}
    snaps = sorted(presets, key=lambda s: order.get(preset_name(s), 99))
    rows = pd.DataFrame([dyn_row(s) for s in snaps])
    return Answer(7, TITLE, q7_text(rows), rows, None, notes=list(snaps))
