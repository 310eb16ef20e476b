"""The lab study: the run files of `make lab` turned into one chapter of answers.

A study folder (runs/lab-quick/) holds four sweeps: `lm/` (the language-model grid and the
window MLPs), `classify/` and `seq2seq/` (the families' comparisons and teacher forcing at three
seeds) and `presets/` (A1–A5, B1–B2, C0–C1). Each question below is one function that takes the loaded runs
and returns an `Answer`: sentences generated from the numbers, the table they come from, and a
figure. Nothing here is written by hand about a result: where the numbers turn, the words turn.

What several questions share (the Answer, how a question finds its runs, numbers over seeds,
the labels that name a run, one row per language-model run) is in common.py.
"""
import math
from pathlib import Path

import pandas as pd

from .. import stats, verdicts as V
from ..stats import fmt_num
from .common import Answer, cell_name, clear, clipping, column, last_finite, one_line, series, spread
from .q1_configuration import q1
from .q2_capacity import q2
from .q3_depth import depth_rows, q3
from .q4_cells import q4
from .q5_context import position_loss, q5, useful_context
from .q6_teacher_forcing import q6

PARTS = ("lm", "classify", "seq2seq", "presets")   # the study's folders, one sweep each


# ---------------------------------------------------------------------------- reading

def is_study(folder):
    """Whether `folder` holds a lab study: run files in at least one of its PARTS subfolders."""
    folder = Path(folder)
    return folder.is_dir() and any(any((folder / p).glob("**/*.h5")) for p in PARTS)


def load_study(folder):
    """{"lm", "families", "presets": [Snapshot]}: the finished (or solved) runs under the study's
    PARTS folders, by family (text; classification and seq2seq; the synthetic tasks); the others
    under "unfinished"."""
    from ..read import load
    folder = Path(folder)
    study = {"lm": [], "families": [], "presets": [], "unfinished": []}
    for p in PARTS:
        for f in sorted((folder / p).glob("**/*.h5")):
            s = load(f)
            if s.status not in ("finished", "solved"):     # a run still to come (or to resume) answers nothing yet
                study["unfinished"].append(s)
                continue
            study["lm" if s.family == "text" else "presets" if s.family == "synthetic" else "families"].append(s)
    return study


# ------------------------------------------------------------- 7. the training-dynamics chapter

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


def clipping_paragraph(rows):
    """A1 against A2 against A3: what clipping bounds and what it costs."""
    r = rows.set_index("run")
    have = [n for n in ("A1", "A2", "A3") if n in r.index]
    if len(have) < 2:
        return None
    parts = [f"{n} (clip {r.loc[n, 'clip']}) {fmt_num(r.loc[n, 'max_grad_norm'], 2)}" for n in have]
    s = [f"Clipping regimes ({', '.join(have)}): the largest gradient norm is " + ", ".join(parts) + "; "
         + ("only " if sum(r.loc[have, "exploding"]) == 1 else "")
         + (", ".join(n for n in have if r.loc[n, "exploding"]) + " explode"
            + ("s" if sum(r.loc[have, "exploding"]) == 1 else "")
            + f" (max ≥ {V.EXPLODING_NORM_RATIO:g}× median)" if r.loc[have, "exploding"].any() else
            "none explodes") + "."]
    s.append("Clipped updates: " + ", ".join(f"{n} {_pct(r.loc[n, 'clipped'])}" for n in have) + ".")
    loss = [r.loc[n, "final_valid_loss"] for n in have]
    order = ("tighter clipping slows learning" if all(b > a for a, b in zip(loss, loss[1:])) else
             "tighter clipping speeds learning" if all(b < a for a, b in zip(loss, loss[1:])) else
             "no monotone effect of the cutoff on learning")
    losses = ", ".join(f"{n} {fmt_num(x, 3)}" for n, x in zip(have, loss))
    rhos = ", ".join(f"{n} {fmt_num(r.loc[n, 'rho_end'], 3)}" for n in have)
    s.append(f"Final validation loss {losses}: {order}; ρ at the end {rhos}.")
    return " ".join(s)


def cell_paragraph(rows, pairs=(("A1", "A4"), ("A2", "A5"), ("B1", "B2"))):
    """RNN against GRU on the same task and clipping."""
    r = rows.set_index("run")
    out = []
    for a, b in pairs:
        if a not in r.index or b not in r.index:
            continue
        x, y = r.loc[a], r.loc[b]
        rx, ry = x["max_grad_norm"] / x["median_grad_norm"], y["max_grad_norm"] / y["median_grad_norm"]
        err = ("lower" if y["final_valid_error"] < x["final_valid_error"] else
               "higher" if y["final_valid_error"] > x["final_valid_error"] else "the same")
        out.append(f"{a} against {b} ({x['task']}, clip {x['clip']}): the {y['cell']}'s gradient norm spikes "
                   f"{'less' if ry < rx else 'more'} than the {x['cell']}'s (max/median {fmt_num(ry, 2)} against "
                   f"{fmt_num(rx, 2)}); {_pct(y['vanishing'])} against {_pct(x['vanishing'])} of log10 g_t mass below "
                   f"{V.VANISHING_LOG10:g}; gates saturated {_pct(y['gate_saturated'])}; final validation error "
                   f"{fmt_num(y['final_valid_error'], 3)}% against {fmt_num(x['final_valid_error'], 3)}% ({err}).")
    return " ".join(out) or None


def c_paragraph(rows):
    """C1 against C0: what smart_tanh, clipping and Ω change on temporal order."""
    r = rows.set_index("run")
    if "C0" not in r.index or "C1" not in r.index:
        return None
    c0, c1 = r.loc["C0"], r.loc["C1"]

    def outcome(x, n):
        if x["status"] == "solved":
            return f"{n} is solved at update {int(x['updates'])} ({fmt_num(x['final_valid_error'], 3)}% error)"
        return (f"{n} ends at {fmt_num(x['final_valid_error'], 3)}% error after {int(x['updates'])} updates"
                + (" (stalled at chance)" if x["stalled"] else ""))
    return (f"C1 against C0 (temporal order): {outcome(c1, 'C1')}, {outcome(c0, 'C0')}. "
            f"Per step back in time g_t changes ×{fmt_num(c1['decay_per_step'], 3)} in C1 against "
            f"×{fmt_num(c0['decay_per_step'], 3)} in C0 ({'flatter' if abs(math.log(c1['decay_per_step'])) < abs(math.log(c0['decay_per_step'])) else 'steeper'} "
            f"in C1); ρ at the end {fmt_num(c1['rho_end'], 3)} against {fmt_num(c0['rho_end'], 3)}; "
            f"largest gradient norm {fmt_num(c1['max_grad_norm'], 2)} against {fmt_num(c0['max_grad_norm'], 2)}, "
            f"{_pct(c1['clipped'])} of C1's updates clipped.")


def q7_text(rows):
    if not len(rows):
        return ["No preset runs."]
    return [p for p in (clipping_paragraph(rows), cell_paragraph(rows), c_paragraph(rows)) if p] or \
        ["The preset runs hold none of the pairs compared here."]


def q7(presets):
    order = {n: i for i, n in enumerate(("A1", "A2", "A3", "A4", "A5", "B1", "B2", "C0", "C1"))}
    snaps = sorted(presets, key=lambda s: order.get(preset_name(s), 99))
    rows = pd.DataFrame([dyn_row(s) for s in snaps])
    return Answer(7, "Training dynamics of A1–A5, B1–B2, C0–C1", q7_text(rows), rows, None,
                  notes=[s for s in snaps])


# ---------------------------------------------------------------------------- the chapter

def answers(study, curves=None):
    """The seven answers of a loaded study ({part: [Snapshot]})."""
    lm, fam, pre = study.get("lm", []), study.get("families", []), study.get("presets", [])
    return [q1(lm), q2(lm), q3(lm), q4(lm, fam), q5(lm, curves), q6(fam), q7(pre)]


def cpu_seconds(study):
    """The runs' own recorded time (training, validation and checks), summed, and their number."""
    walls = [last_finite(column(s, "wall_time")) for part, runs in study.items() if part != "unfinished" for s in runs]
    walls = [w for w in walls if math.isfinite(w)]
    return float(sum(walls)), len(walls)
