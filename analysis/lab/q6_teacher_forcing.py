"""Question 6: teacher forcing against scheduled sampling. The seq2seq runs that differ only in the
teacher-forcing schedule: a sweep of constant ratios (the share of steps that read the target
token rather than the decoder's own argmax) and a decaying schedule. For each: exposure bias
(teacher-forced minus greedy token accuracy), how noisy training is at the end and how high the
gradient norm peaks, and greedy exact match."""
import math

import numpy as np
import pandas as pd

from .. import stats
from ..stats import fmt_num
from ..intervals import better, estimate, sentence
from .common import (SEQ2SEQ_TASKS, Answer, column, error_bars, last_finite, over_seeds, per_seed, series,
                     setup_label)

TITLE = "Teacher forcing: stability against exposure bias"
FREE = ("teacher_forcing", "tf_schedule", "tf_k")     # what the question varies
COMPARED = ("exposure_bias", "greedy_exact", "loss_noise", "max_grad_norm")


def loss_noise(s, window=50, share=0.3):
    """Standard deviation of the training loss around its moving mean over the last `share` of the
    updates: how noisy training is at the end."""
    loss = np.asarray(s.iter.get("loss", np.zeros(0)), dtype=float)
    loss = loss[np.isfinite(loss)]
    if len(loss) < 2 * window:
        return math.nan
    tail = loss[-max(window, int(share * len(loss))):]
    smooth = np.convolve(tail, np.ones(window) / window, mode="valid")
    return float(np.std(tail[window - 1:] - smooth))


def schedule_label(s):
    c = s.config
    sched = c.get("tf_schedule", "constant")
    if sched == "constant":
        return f"teacher forcing {fmt_num(float(c.get('teacher_forcing', 1.0)))}"
    return f"{sched.replace('_', ' ')} k={fmt_num(float(c.get('tf_k', 0)))}"


def tf_rows(runs):
    rows = []
    for s in runs:
        tf, greedy = last_finite(column(s, "tf_token_acc")), last_finite(column(s, "greedy_token_acc"))
        constant = s.config.get("tf_schedule", "constant") == "constant"
        rows.append({"schedule": schedule_label(s), "seed": s.config.get("seed"),
                     "ratio": float(s.config.get("teacher_forcing", 1.0)) if constant else np.nan,
                     "exposure_bias": tf - greedy, "greedy_exact": last_finite(column(s, "greedy_exact")),
                     "loss_noise": loss_noise(s), "max_grad_norm": stats.grad_norm_stats(s)["max"],
                     "final_valid_loss": last_finite(column(s, "valid_loss"))})
    return pd.DataFrame(rows)


def schedule_sentences(full, other, rows):
    """`other` schedule against full teacher forcing, each number over the seeds of each."""
    est = {col: over_seeds(rows, "schedule", col) for col in COMPARED}

    def cmp(col, lower_is_better, digits=3):
        return sentence(other, est[col][other], full, est[col][full], lower_is_better, digits)
    decodes = better(est["greedy_exact"][other], est["greedy_exact"][full], lower_is_better=False)
    verdict = {"a": f"{other} decodes better", "b": f"{full} decodes better"}.get(decodes, "neither decodes better")
    return [f"Exposure bias (teacher-forced minus greedy token accuracy at the end, points): "
            f"{cmp('exposure_bias', True)}.",
            f"Training stability, the training loss's deviation from its 50-update mean at the end: "
            f"{cmp('loss_noise', True)}; the largest gradient norm: {cmp('max_grad_norm', True)}.",
            f"At inference, greedy exact match (%): {cmp('greedy_exact', False)}: {verdict}."]


def ratio_sentences(rows):
    """The constant ratios as a sweep: greedy exact match and exposure bias at each, then the best
    ratio against 1."""
    g = rows[rows["ratio"].notna()]
    ratios = sorted(g["ratio"].unique())
    if len(ratios) < 3:
        return []
    exact, bias = over_seeds(g, "ratio", "greedy_exact"), over_seeds(g, "ratio", "exposure_bias")
    out = [f"Constant teacher-forcing ratio from {fmt_num(ratios[0])} to {fmt_num(ratios[-1])}: greedy exact match (%) "
           + "; ".join(f"{fmt_num(r)}: {exact[r].text(3)}" for r in ratios) + ". Exposure bias (points) "
           + "; ".join(f"{fmt_num(r)}: {bias[r].text(3)}" for r in ratios) + "."]
    best = max(ratios, key=lambda r: exact[r].mean)
    if best != 1.0 and 1.0 in exact:
        out.append(f"The best ratio, {fmt_num(best)}, against 1, greedy exact match (%): "
                   + sentence(f"ratio {fmt_num(best)}", exact[best], "ratio 1", exact[1.0], False) + ".")
    return out


def q6_text(rows):
    if not len(rows) or rows["schedule"].nunique() < 2:
        return ["No runs that differ only in the teacher-forcing schedule."]
    schedules = list(dict.fromkeys(rows["schedule"]))
    full = next((k for k in schedules if k == "teacher forcing 1"), sorted(schedules)[0])
    decaying = [k for k in schedules if k != full and not k.startswith("teacher forcing")]
    return ratio_sentences(rows) + [t for other in decaying for t in schedule_sentences(full, other, rows)]


def draw_sweep(ax, rows):
    """Greedy exact match and exposure bias against the constant ratio (mean, interval, seeds); a
    decaying schedule as a separate point at the right."""
    g = rows[rows["ratio"].notna()]
    for metric, color, marker, label in (("greedy_exact", "#1f77b4", "o", "greedy exact match (%)"),
                                         ("exposure_bias", "#d62728", "s", "exposure bias (points)")):
        ratios = sorted(g["ratio"].unique())
        est = [estimate(g.loc[g["ratio"] == r, metric]) for r in ratios]
        mean, err = error_bars(est)
        ax.errorbar(ratios, mean, err, fmt=marker + "-", color=color, capsize=3, label=label)
        for r, e in zip(ratios, est):
            ax.plot([r] * e.n, e.values, ".", color=color, ms=3, alpha=0.6)
        for k, (name, d) in enumerate(rows[rows["ratio"].isna()].groupby("schedule", sort=False)):
            e = estimate(d[metric])
            x = 1.15 + 0.1 * k
            ax.errorbar([x], *error_bars([e]), fmt=marker, mfc="white", color=color, capsize=3)
            if metric == "greedy_exact":
                ax.annotate(name, (x, e.mean), textcoords="offset points", xytext=(4, 6), fontsize=8)
    ax.set_xlabel("constant teacher-forcing ratio (open markers: the decaying schedule)")
    ax.set_ylabel("percent / points (mean, 95 % interval, seeds)")
    ax.legend(fontsize="small")


def draw(fig, runs, rows):
    """The ratio sweep, and the training loss of the first seed of each schedule."""
    a1, a2 = fig.subplots(1, 2)
    if rows["ratio"].notna().any():
        draw_sweep(a1, rows)
    first = {}
    for s in sorted(runs, key=lambda s: s.config.get("seed") or 0):
        first.setdefault(schedule_label(s), s)
    for k, (lab, s) in enumerate(first.items()):
        loss = np.asarray(s.iter.get("loss", []), dtype=float)
        a2.plot(s.iter_x, stats.smooth(loss, 25) if len(loss) > 50 else loss, color=f"C{k}",
                ls=("-", "--", "-.", ":")[k % 4], lw=1.1, label=lab)
    a2.set_xlabel("update")
    a2.set_ylabel("training loss (nats/token, moving mean of 25; first seed)")
    a2.set_yscale("log")
    a2.legend(fontsize="small")
    fig.suptitle(f"Teacher forcing: the ratio as a sweep, and scheduled sampling ({setup_label(runs[0])})",
                 fontsize="medium")


def q6(families):
    by = series([s for s in families if s.task in SEQ2SEQ_TASKS], FREE)
    runs = [s for v in by.values() for s in v]
    rows = tf_rows(runs)
    return Answer(6, TITLE, q6_text(rows), rows, (lambda fig: draw(fig, runs, rows)) if len(rows) else None,
                  values=per_seed(rows, "schedule", COMPARED + ("final_valid_loss",)))
