"""Question 6: teacher forcing against scheduled sampling. The seq2seq runs that differ only in the
teacher-forcing schedule: exposure bias (teacher-forced minus greedy token accuracy), how noisy
training is at the end and how high the gradient norm peaks, and greedy exact match."""
import math

import numpy as np
import pandas as pd

from .. import stats
from ..stats import fmt_num
from ..intervals import better, sentence
from .common import SEQ2SEQ_TASKS, Answer, column, last_finite, over_seeds, per_seed, series, setup_label

TITLE = "Teacher forcing: stability against exposure bias"
FREE = ("teacher_forcing", "tf_schedule", "tf_k")     # what the question varies
COMPARED = ("exposure_bias", "greedy_exact", "loss_noise", "max_grad_norm")
SCHEDULE_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


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
        rows.append({"schedule": schedule_label(s), "seed": s.config.get("seed"),
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


def q6_text(rows):
    if not len(rows) or rows["schedule"].nunique() < 2:
        return ["No runs that differ only in the teacher-forcing schedule."]
    schedules = list(dict.fromkeys(rows["schedule"]))
    full = next((k for k in schedules if k == "teacher forcing 1"), sorted(schedules)[0])
    return [t for other in schedules if other != full for t in schedule_sentences(full, other, rows)]


def draw(fig, runs):
    """Per run, exposure bias over the checks and the smoothed training loss, one colour per schedule."""
    a1, a2 = fig.subplots(1, 2)
    colors = {}
    for s in runs:
        lab = schedule_label(s)
        color = colors.setdefault(lab, SCHEDULE_COLORS[len(colors) % 4])
        gap = column(s, "tf_token_acc") - column(s, "greedy_token_acc")
        first = lab not in a1.get_legend_handles_labels()[1]
        a1.plot(s.check_x, gap, color=color, lw=1.2, label=lab if first else None)
        loss = np.asarray(s.iter.get("loss", []), dtype=float)
        a2.plot(s.iter_x, stats.smooth(loss, 25) if len(loss) > 50 else loss, color=color, lw=0.9,
                label=lab if first else None)
    a1.set_xlabel("update")
    a1.set_ylabel("exposure bias: teacher-forced − greedy token accuracy (points)")
    a1.legend(fontsize="small")
    a2.set_xlabel("update")
    a2.set_ylabel("training loss (nats/token, moving mean of 25)")
    a2.set_yscale("log")
    a2.legend(fontsize="small")
    fig.suptitle(f"Teacher forcing against scheduled sampling ({setup_label(runs[0])}, one line per seed)",
                 fontsize="medium")


def q6(families):
    by = series([s for s in families if s.task in SEQ2SEQ_TASKS], FREE)
    runs = [s for v in by.values() for s in v]
    rows = tf_rows(runs)
    return Answer(6, TITLE, q6_text(rows), rows, (lambda fig: draw(fig, runs)) if len(rows) else None,
                  values=per_seed(rows, "schedule", COMPARED + ("final_valid_loss",)))
