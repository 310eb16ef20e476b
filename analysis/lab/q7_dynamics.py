"""Question 7: the training dynamics of the presets A1–A5, B1–B2, C0–C1, each at its seeds.

First how every preset ends against what a network that ignores its inputs reaches (the task's
input-blind predictor, counted on fresh sequences), then why, from the diagnostics: the clipping
regimes of A1–A3 and A1's largest blow-up, RNN against GRU (A1/A4, A2/A5, B1/B2) with what the
GRU's gates do, how far the gradient reaches in B1/B2, and C1 against C0 at the same budget. Every
number over seeds is an Estimate, every comparison in the words `intervals.sentence` allows. The
chapter adds an overlay of the presets' diagnostics and each preset's dashboard (`notes`)."""
import functools
import math

import numpy as np
import pandas as pd

from tasks.synthetic import get as get_task

from .. import stats, verdicts as V
from ..intervals import against, estimate, sentence
from ..stats import fmt_num
from .common import Answer, cell_name, clipping, per_seed

TITLE = "Training dynamics of A1–A5, B1–B2, C0–C1"
PRESETS = ("A1", "A2", "A3", "A4", "A5", "B1", "B2", "C0", "C1")     # the chapter's order
CLIPPING = ("A1", "A2", "A3")                                        # the same task, tighter cutoffs
CELL_PAIRS = (("A1", "A4"), ("A2", "A5"), ("B1", "B2"))              # RNN against GRU
TASK_NAMES = {"mem": "Memorization", "mul": "Multiplication", "add": "Addition", "torder": "Temporal order",
              "torder3": "3-bit temporal order", "perm": "Random permutation"}
SOFTMAX_TASKS = ("mem", "torder", "torder3", "perm")                 # a class per sequence or per step
#: a gate value within this distance of 0.5 neither passes nor blocks: the gate is not used
NEAR_HALF = 0.1
BASELINE_SEQUENCES = 2000              # per length, for the input-blind predictor
METRICS = ("final_valid_error", "final_valid_loss", "max_grad_norm", "median_grad_norm", "norm_ratio", "clipped",
           "rho_end", "vanishing", "decay_per_step", "horizon_1e3", "hidden_saturated")


def preset_name(s):
    """A1 for the run `preset=A1` or `preset=A1,seed=53` (a sweep point), or `A1`."""
    return s.name.split("preset=")[-1].split(",")[0]


# ------------------------------------------------------------------------- the baseline

@functools.lru_cache(maxsize=None)
def baseline(task, lo, hi, options=()):
    """(loss, error %) of the input-blind predictor on `task` over lengths lo..hi: the mean target or
    the class frequencies (tasks.synthetic.Task.constant_baseline), averaged over five lengths."""
    t = get_task(task, **dict(options))
    rng = np.random.default_rng(0)
    found = [t.constant_baseline(BASELINE_SEQUENCES, int(n), rng) for n in np.linspace(lo, hi, 5)]
    return float(np.mean([f[0] for f in found])), 100.0 * float(np.mean([f[1] for f in found]))


def run_baseline(s):
    c = s.config
    options = tuple((k, c[k]) for k in ("n_values", "n_pos") if s.task == "mem" and k in c)
    return baseline(s.task, int(c.get("min_length")), int(c.get("max_length")), options)


# -------------------------------------------------------------------------------- one row a run

def gate_shares(s, name):
    """(share within NEAR_HALF of 0.5, share saturated) of gate `name` at the last check."""
    fh = stats.final_hist(s, f"gate_{name}")
    if fh is None:
        return math.nan, math.nan
    counts, edges = fh[0], fh[1]
    # the histogram is of d = min(v, 1 − v): d ≥ 0.5 − NEAR_HALF is v within NEAR_HALF of 0.5
    return (stats.share_above(counts, edges, 0.5 - NEAR_HALF), stats.share_below(counts, edges, V.SATURATION_D))


def hidden_saturation(s):
    """The share of hidden activations with 1 − |h| below the saturation bound at the last check."""
    fh = stats.final_hist(s, "saturation")
    return stats.share_below(fh[0], fh[1], V.SATURATION_D) if fh is not None else math.nan


def dyn_row(s):
    sm = stats.summary(s)
    vs = {v.kind: v for v in V.verdicts(s)}
    decay = vs.get("decay_rate")
    horizon = stats.last_horizon(s)
    loss0, error0 = run_baseline(s)
    row = {"run": preset_name(s), "seed": s.config.get("seed"), "task": s.task, "cell": cell_name(s),
           "min_length": s.config.get("min_length"), "max_length": s.config.get("max_length"),
           "clip": clipping(s), "status": s.status, "updates": sm["iterations"],
           "final_valid_error": sm["final_valid_error"], "baseline_error": error0,
           "eval_sequences": int(s.config.get("eval_batch_size") or 1000),
           "final_valid_loss": sm["final_valid_loss"], "baseline_loss": loss0,
           "max_grad_norm": sm["max_grad_norm"], "median_grad_norm": sm["median_grad_norm"],
           "norm_ratio": sm["max_grad_norm"] / sm["median_grad_norm"] if sm["median_grad_norm"] > 0 else math.nan,
           "clipped": sm["share_clipped"], "rho_end": sm["rho_end"],
           "vanishing": vs["vanishing"].value if "vanishing" in vs else 0.0,
           "decay_per_step": 10 ** (-decay.value) if decay is not None else math.nan,
           "horizon_1e3": horizon[0] if horizon else math.nan, "horizon_steps": horizon[2] if horizon else math.nan,
           "hidden_saturated": hidden_saturation(s),
           "exploding": "exploding" in vs, "stalled": "stalled" in vs}
    for g in s.gates:
        row[f"gate_{g}_half"], row[f"gate_{g}_saturated"] = gate_shares(s, g)
    return row


def est(rows, run, col):
    return estimate(rows.loc[rows["run"] == run, col])


def pct(e):
    """An Estimate of a share (0..1) in percent."""
    return type(e)(tuple(100 * v for v in e.values), 100 * e.mean, 100 * e.low, 100 * e.high)


# --------------------------------------------------------------------------- the outcomes

def below_baseline(g):
    """The runs of `g` whose final error is below the input-blind predictor's by more than two
    standard errors of a share counted on their validation set (eval_batch_size sequences)."""
    p = g["baseline_error"] / 100
    se = 100 * np.sqrt(p * (1 - p) / g["eval_sequences"])
    return g[g["final_valid_error"] < g["baseline_error"] - 2 * se]


def listing(names):
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def outcome_sentence(rows, task, runs):
    """The presets of one task against its input-blind predictor: solved, error and loss."""
    g = rows[rows["run"].isin(runs)]
    loss0, error0 = g["baseline_loss"].iloc[0], g["baseline_error"].iloc[0]
    solved = int((g["status"] == "solved").sum())
    seeds = sorted(set(int(n) for n in g.groupby("run").size()))
    words = {"below": "below it", "above": "above it", "at": "within noise of it", "n/a": "n/a"}
    loss = [f"{r} {est(g, r, 'final_valid_loss').text(3)} ({words[against(est(g, r, 'final_valid_loss'), loss0)]})"
            for r in runs]
    out = (f"{TASK_NAMES.get(task, task)} ({', '.join(runs)}; {'/'.join(map(str, seeds))} seeds each; at most "
           f"{int(g['updates'].max())} updates): solved in {solved} of {len(g)} runs. The input-blind predictor's "
           f"validation error is {fmt_num(error0, 3)}%, its loss {fmt_num(loss0, 3)}. Validation error at the end (%): "
           + "; ".join(f"{r} {est(g, r, 'final_valid_error').text(3)}" for r in runs)
           + ". Validation loss: " + "; ".join(loss) + ".")
    above = [r for r in runs if against(est(g, r, "final_valid_loss"), loss0) == "above"]
    if above:
        out += (f" {listing(above)} end{'s' if len(above) == 1 else ''} with a loss above the input-blind "
                f"predictor's: {'its' if len(above) == 1 else 'their'} predicted probabilities fit the targets worse "
                f"than the class frequencies alone." if g["task"].iloc[0] in SOFTMAX_TASKS else
                f" {listing(above)} end{'s' if len(above) == 1 else ''} with a loss above the mean predictor's.")
    below = below_baseline(g)
    if solved:
        return out
    if not len(below):
        return (out + f" No run ends with an error below the input-blind predictor's by more than two standard "
                      f"errors of its validation count: {TASK_NAMES.get(task, task).lower()} is unsolved in "
                      f"{'both' if len(runs) == 2 else 'all'} of {listing(runs)}.")
    return (out + f" Below the input-blind predictor's error by more than two standard errors of the validation "
                  f"count: {len(below)} of {len(g)} runs ("
            + ", ".join(f"{r.run} seed {r.seed}: {fmt_num(r.final_valid_error, 3)}%" for r in below.itertuples())
            + ").")


def outcome_sentences(rows):
    tasks = list(dict.fromkeys(rows["task"]))
    return [outcome_sentence(rows, t, list(dict.fromkeys(rows.loc[rows["task"] == t, "run"]))) for t in tasks]


# ------------------------------------------------------------------------------ clipping (A1–A3)

def explosions(rows, run):
    g = rows[rows["run"] == run]
    return f"{run} explodes in {int(g['exploding'].sum())} of {len(g)} seeds"


def clipping_paragraph(rows):
    """A1 against A2 against A3: what clipping bounds and what it costs, over seeds."""
    have = [n for n in CLIPPING if n in set(rows["run"])]
    if len(have) < 2:
        return None
    cut = {n: rows.loc[rows["run"] == n, "clip"].iloc[0] for n in have}
    s = ["Clipping regimes (" + ", ".join(f"{n} clip {cut[n]}" for n in have) + "): the largest gradient norm is "
         + ", ".join(f"{n} {est(rows, n, 'max_grad_norm').text(3)}" for n in have) + "; "
         + ", ".join(explosions(rows, n) for n in have)
         + f" (the norm before clipping ≥ {V.EXPLODING_NORM_RATIO:g}× its median). Clipped updates (%): "
         + ", ".join(f"{n} {pct(est(rows, n, 'clipped')).text(3)}" for n in have) + "."]
    for a, b in zip(have, have[1:]):
        s.append(f"Final validation loss, {b} against {a}: "
                 + sentence(b, est(rows, b, "final_valid_loss"), a, est(rows, a, "final_valid_loss"), True) + ".")
    s.append("ρ at the end: " + ", ".join(f"{n} {est(rows, n, 'rho_end').text(3)}" for n in have) + ".")
    return " ".join(s)


def blowup_sentence(s):
    """The largest gradient norm of run `s`: when, how far above the median, and what the largest
    singular value of the recurrent matrix and the training loss did around it."""
    gn = np.asarray(s.iter.get("grad_norm", []), dtype=float)
    if not len(gn) or not np.isfinite(gn).any():
        return None
    k = int(np.nanargmax(gn))
    u = int(s.iter_x[k])
    med = float(np.nanmedian(gn))
    loss = np.asarray(s.iter.get("loss", []), dtype=float)
    before = float(np.nanmean(loss[max(0, k - 50):k])) if k else math.nan
    after = float(np.nanmax(loss[k:k + 20])) if len(loss) > k else math.nan
    text = (f"{preset_name(s)}'s largest blow-up (seed {s.config.get('seed')}): the gradient norm reaches "
            f"{fmt_num(gn[k], 3)} at update {u}, {fmt_num(gn[k] / med, 3)}× its median; the training loss goes from "
            f"{fmt_num(before, 3)} (mean of the 50 updates before) to {fmt_num(after, 3)} (largest of the 20 from it)")
    sig = np.asarray(s.check.get("sigma_max", []), dtype=float)
    if len(sig) and np.isfinite(sig).any():
        j = int(np.searchsorted(s.check_x, u))            # the first check at or after the blow-up
        if 0 < j < len(sig):
            text += (f"; σ_max({s.recurrent_matrix}) goes from {fmt_num(sig[j - 1], 3)} at update "
                     f"{int(s.check_x[j - 1])} to {fmt_num(sig[j], 3)} at {int(s.check_x[j])}")
    return text + "."


# ----------------------------------------------------------------------------- RNN against GRU

def gate_words(rows, run):
    """What the GRU's gates do at the end: per gate the share of values near 0.5 (where a gate
    neither passes nor blocks: unused) and the share saturated."""
    g = rows[rows["run"] == run]
    gates = [c[5:-5] for c in g.columns if c.startswith("gate_") and c.endswith("_half") and g[c].notna().any()]
    if not gates:
        return ""
    half = {n: pct(estimate(g[f"gate_{n}_half"])) for n in gates}
    sat = {n: pct(estimate(g[f"gate_{n}_saturated"])) for n in gates}
    unused = [n for n in gates if half[n].mean > 50]
    verdict = (f"{' and '.join(unused)} mostly unused, {'they sit' if len(unused) > 1 else 'it sits'} near 0.5"
               if unused else "in use: most values away from 0.5")
    return (f" {run}'s gates at the end, % of values within {NEAR_HALF:g} of 0.5 (a gate there neither passes nor "
            f"blocks) and % saturated: " + "; ".join(f"{n} {half[n].text(3)} and {sat[n].text(3)}" for n in gates)
            + f": {verdict}.")


def cell_sentences(rows, a, b):
    """Preset `a` (the RNN) against `b` (the GRU) on the same task and clipping."""
    task, clip = rows.loc[rows["run"] == a, "task"].iloc[0], rows.loc[rows["run"] == a, "clip"].iloc[0]
    return (f"{a} against {b} ({task}, clip {clip}), the largest gradient norm over its median: "
            + sentence(b, est(rows, b, "norm_ratio"), a, est(rows, a, "norm_ratio"), True, 3)
            + "; final validation loss: "
            + sentence(b, est(rows, b, "final_valid_loss"), a, est(rows, a, "final_valid_loss"), True)
            + "." + gate_words(rows, b))


def cell_paragraph(rows, pairs=CELL_PAIRS):
    have = set(rows["run"])
    out = [cell_sentences(rows, a, b) for a, b in pairs if a in have and b in have]
    return " ".join(out) or None


# ------------------------------------------------------------------ how far the gradient reaches

def reach_paragraph(rows, runs=("B1", "B2")):
    """Per run: g_t's change per step back, the log10 g_t mass below the vanishing bound, the
    horizon at 10⁻³ against the sequence, and ρ at the end."""
    have = [r for r in runs if r in set(rows["run"])]
    if not have:
        return None
    parts = []
    for r in have:
        g = rows[rows["run"] == r]
        steps = estimate(g["horizon_steps"])
        parts.append(f"{r}: g_t changes ×{est(rows, r, 'decay_per_step').text(3)} per step back, "
                     f"{pct(est(rows, r, 'vanishing')).text(3)}% of the log10 g_t mass lies below "
                     f"{V.VANISHING_LOG10:g}, the gradient falls below 10⁻³ of its value at the loss "
                     f"{est(rows, r, 'horizon_1e3').text(3)} steps back (of {fmt_num(steps.mean, 3)}), "
                     f"ρ at the end {est(rows, r, 'rho_end').text(3)}")
    g = rows[rows["run"].isin(have)]
    lo, hi = int(g["min_length"].min()), int(g["max_length"].max())
    short = all(est(rows, r, "horizon_1e3").mean < 0.5 * est(rows, r, "horizon_steps").mean for r in have)
    why = (f" In every one the gradient falls a thousandfold within half of the {lo}–{hi} steps of a sequence, "
           f"along which the marked inputs lie: the loss hardly tells the weights how to read the inputs far "
           f"from the end." if short else
           " The gradient reaches at least half of the sequence in some of them: vanishing alone does not explain "
           "how they end.")
    return f"How far the gradient reaches in {listing(have)}: " + "; ".join(parts) + "." + why


# ------------------------------------------------------------------------------ C1 against C0

def c_paragraph(rows):
    """C1 against C0 at the same budget: what smart_tanh, clipping and Ω change on temporal order."""
    have = set(rows["run"])
    if "C0" not in have or "C1" not in have:
        return None
    budget = {r: int(rows.loc[rows["run"] == r, "updates"].max()) for r in ("C0", "C1")}
    solved = {r: int((rows.loc[rows["run"] == r, "status"] == "solved").sum()) for r in ("C0", "C1")}
    seeds = {r: int((rows["run"] == r).sum()) for r in ("C0", "C1")}
    same = "the same budget, " if budget["C0"] == budget["C1"] else ""
    return (f"C1 against C0 (temporal order, {same}at most {max(budget.values())} updates): solved in "
            f"{solved['C1']} of {seeds['C1']} against {solved['C0']} of {seeds['C0']}; final validation error (%): "
            + sentence("C1", est(rows, "C1", "final_valid_error"), "C0", est(rows, "C0", "final_valid_error"), True)
            + ". Per step back g_t changes ×" + est(rows, "C1", "decay_per_step").text(3) + " in C1 against ×"
            + est(rows, "C0", "decay_per_step").text(3) + " in C0; ρ at the end "
            + est(rows, "C1", "rho_end").text(3) + " against " + est(rows, "C0", "rho_end").text(3)
            + "; largest gradient norm " + est(rows, "C1", "max_grad_norm").text(3) + " against "
            + est(rows, "C0", "max_grad_norm").text(3) + "; C1's updates clipped (%): "
            + pct(est(rows, "C1", "clipped")).text(3) + ".")


def saturation_sentence(rows):
    """Hidden saturation at the end for every preset, the largest named."""
    have = list(dict.fromkeys(rows["run"]))
    est_ = {r: pct(est(rows, r, "hidden_saturated")) for r in have}
    est_ = {r: e for r, e in est_.items() if e.n}
    if not est_:
        return None
    top = max(est_, key=lambda r: est_[r].mean)
    head = (f"Hidden units saturated at the end (% of activations with 1 − |h| < {V.SATURATION_D:g}): "
            + "; ".join(f"{r} {e.text(3)}" for r, e in est_.items()) + ". ")
    if est_[top].mean >= 100 * V.SATURATED_MIN_SHARE:
        return head + (f"The most: {top}, where that share of the units passes almost no gradient back "
                       f"(tanh′ = 1 − h² ≈ 0).")
    return head + (f"None reaches {100 * V.SATURATED_MIN_SHARE:g}%: saturated units do not explain these "
                   f"outcomes.")


def q7_text(rows, snaps):
    if not len(rows):
        return ["No preset runs."]
    a1 = [s for s in snaps if preset_name(s) == "A1"]
    blowup = blowup_sentence(max(a1, key=lambda s: stats.grad_norm_stats(s)["max"])) if a1 else None
    found = (outcome_sentences(rows)
             + [p for p in (clipping_paragraph(rows), blowup, saturation_sentence(rows), cell_paragraph(rows),
                            reach_paragraph(rows), c_paragraph(rows)) if p])
    return found


# ------------------------------------------------------------------------------------ figure

STYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1)))


def draw(fig, snaps):
    """The presets overlaid, first seed of each: gradient norm, ρ and g_t by steps back; a row per
    task (A1–A5, B1–B2, C0–C1), so that each row shares its length of training."""
    first = {}
    for s in sorted(snaps, key=lambda s: s.config.get("seed") or 0):
        first.setdefault(preset_name(s), s)
    groups = [[n for n in names if n in first] for names in (PRESETS[:5], PRESETS[5:7], PRESETS[7:])]
    groups = [g for g in groups if g]
    axes = np.atleast_2d(fig.subplots(len(groups), 3))
    for row, names in zip(axes, groups):
        for k, n in enumerate(names):
            s = first[n]
            style = dict(color=f"C{k}", ls=STYLES[k % len(STYLES)], lw=1.1, label=f"{n} ({s.task}, {cell_name(s)}, "
                                                                                 f"clip {clipping(s)})")
            gn = np.asarray(s.iter.get("grad_norm", []), dtype=float)
            if len(gn):
                row[0].plot(s.iter_x, stats.smooth_log(gn, 50) if len(gn) > 100 else gn, **style)
            rho = s.check.get("rho")
            if rho is not None:
                row[1].plot(s.check_x, rho, marker="o", ms=2, **style)
            k_last = stats.last_row(s.grad_time)
            if k_last is not None:
                g = s.grad_time[k_last]
                g = g[np.isfinite(g)][::-1]                      # steps back from the loss
                row[2].plot(np.arange(len(g)), np.where(g > 0, g, np.nan), **style)
        row[0].set(yscale="log", xlabel="update", ylabel="‖∇L‖ (geometric mean of 50)")
        row[1].axhline(1.0, color="grey", lw=0.8)
        row[1].set(xlabel="update", ylabel="ρ of the recurrent matrix")
        row[2].set(yscale="log", xlabel="steps back from the last step (last check)", ylabel="g_t = ‖∂L/∂h_t‖ (batch mean)")
        row[0].legend(fontsize=8)
    fig.suptitle("The presets overlaid (first seed of each)", fontsize="medium")


def q7(presets):
    order = {n: i for i, n in enumerate(PRESETS)}
    snaps = sorted(presets, key=lambda s: (order.get(preset_name(s), 99), s.config.get("seed") or 0))
    rows = pd.DataFrame([dyn_row(s) for s in snaps])
    values = per_seed(rows.assign(setting=rows["run"]), "setting", METRICS) if len(rows) else None
    first = {}
    for s in snaps:                                       # snaps are in seed order within a preset
        first.setdefault(preset_name(s), s)
    return Answer(7, TITLE, q7_text(rows, snaps), rows, (lambda fig: draw(fig, snaps)) if len(rows) else None,
                  notes=list(first.values()), values=values)
