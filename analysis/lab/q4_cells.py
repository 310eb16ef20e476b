"""Question 4: cell choice. RNN, GRU, LSTM, LN-LSTM and the Transformer on character LM,
classification and seq2seq: per task the runs that differ only in the cell (`cells`), one metric
per task over seeds with its interval, each model's parameter count beside it, and the best
against the next in the words the intervals allow."""
import math

import numpy as np
import pandas as pd

from ..intervals import estimate, sentence
from ..stats import fmt_num
from .common import (CELL_NAMES, CLASSIFY_TASKS, SEQ2SEQ_TASKS, Answer, cells, column, draw_estimate, last_finite, min_finite,
                     over_seeds, parameters, setup_label)

TITLE = "Cell choice: RNN, GRU, LSTM, LN-LSTM, Transformer"
NONE = "No runs that differ only in the cell."
#: per task family: (the metric's column, its name, whether higher is better, best or final)
METRICS = {"character LM": ("valid_bpc", "best validation bits/char", False, "best"),
           "classification": ("accuracy", "final validation accuracy (%)", True, "final"),
           "seq2seq": ("greedy_exact", "final greedy exact match (%)", True, "final")}


def metric(s, task):
    col, _, higher, which = METRICS[task]
    a = column(s, col)
    return min_finite(a) if which == "best" and not higher else last_finite(a)


def cell_groups(lm, families):
    """{task: {cell: [runs]}} of the tasks with runs that differ only in the cell."""
    found = {"character LM": cells([s for s in lm if s.config.get("cell") != "mlp"]),
             "classification": cells([s for s in families if s.task in CLASSIFY_TASKS]),
             "seq2seq": cells([s for s in families if s.task in SEQ2SEQ_TASKS])}
    return {task: by for task, by in found.items() if by}


def cell_rows(groups):
    """One row per run: task, model, seed, its parameters and its task's metric."""
    return pd.DataFrame([{"task": task, "model": CELL_NAMES.get(cell, cell), "seed": s.config.get("seed"),
                          "parameters": parameters(s), "metric": METRICS[task][1], "value": metric(s, task)}
                         for task, by in groups.items() for cell, runs in by.items() for s in runs])


def model_table(rows):
    """task × model: the metric over seeds (mean, interval, n) and the parameter count."""
    out = []
    for (task, model), g in rows.groupby(["task", "model"], sort=False):
        e = estimate(g["value"])
        out.append({"task": task, "model": model, "parameters": g["parameters"].median(), "metric": METRICS[task][1],
                    "mean": e.mean, "low": e.low, "high": e.high, "seeds": e.n,
                    "per seed": " / ".join(fmt_num(v, 4) for v in e.values)})
    return pd.DataFrame(out)


def named(model, g):
    """"GRU (41.3k parameters)": a model with its size, where the checkpoint tells it."""
    p = g["parameters"].median()
    return f"{model} ({fmt_num(p / 1000, 3)}k parameters)" if np.isfinite(p) else model


def task_sentence(task, g):
    """The best model of one task against the next, then the others, each over its seeds."""
    higher = METRICS[task][2]
    est = over_seeds(g, "model", "value")
    order = sorted(est, key=lambda m: est[m].mean, reverse=higher)
    first, second = order[:2]
    names = {m: named(m, g[g["model"] == m]) for m in order}
    rest = "; ".join(f"{names[m]} {est[m].text(3)}" for m in order[2:])
    return (f"{task[0].upper() + task[1:]} ({METRICS[task][1]}), the best against the next: "
            + sentence(names[first], est[first], names[second], est[second], lower_is_better=not higher)
            + (f". Then {rest}." if rest else "."))


def ceiling(task, s):
    """What the task's numbers are measured against, from one of its runs: a uniform guess and the
    bigram floor of the text; chance and the Bayes-optimal accuracy of the names; nothing for seq2seq."""
    if task == "character LM":
        vocab = s.static.get("vocab")
        bigram = float(s.attrs.get("train_bigram_entropy", math.nan)) / math.log(2)
        parts = [f"a uniform guess over the {len(vocab)} characters costs {fmt_num(math.log2(len(vocab)), 3)} bits/char"
                 ] if vocab is not None else []
        if math.isfinite(bigram):
            parts.append(f"the training text's bigram entropy (the best from one previous character) is "
                         f"{fmt_num(bigram, 3)}")
        return "; ".join(parts)
    if task == "classification":
        K = int(s.config.get("n_classes") or 5)
        text = f"chance is {fmt_num(100 / K, 3)}% ({K} balanced classes)"
        if s.task == "names" and s.config.get("eval_batch_size"):
            from ..names_bayes import bayes
            text += f", the Bayes-optimal accuracy on this validation set {fmt_num(bayes(s)['prior'][0], 3)}%"
        return text
    return ""


def q4_text(rows, groups=None):
    if not len(rows):
        return [NONE]
    out = []
    for task, g in rows.groupby("task", sort=False):
        if g["model"].nunique() < 2:
            continue
        text = task_sentence(task, g)
        first = next(iter(groups[task].values()))[0] if groups else None
        limit = ceiling(task, first) if first is not None else ""
        out.append(text + (f" For scale: {limit}." if limit else ""))
    return out or [NONE]


def draw_task(ax, task, g, setup):
    """One task as a dot plot: per model its seeds (dots) and its mean with the 95 % interval."""
    higher = METRICS[task][2]
    est = over_seeds(g, "model", "value")
    order = sorted(est, key=lambda m: est[m].mean, reverse=higher)
    for i, m in enumerate(order):
        draw_estimate(ax, i, est[m], "#4c9a2a", across=True)
    ax.set_xticks(range(len(order)), order, rotation=20)
    ax.set_xlim(-0.6, len(order) - 0.4)
    ax.set_ylabel(METRICS[task][1])
    if "%" in METRICS[task][1]:
        lo, hi = ax.get_ylim()
        ax.set_ylim(max(lo, 0), min(hi, 100))
    ax.grid(axis="y", lw=0.3)
    ax.set_title(f"{task}\n{setup}", fontsize="small")


def draw(fig, rows, groups):
    setups = {task: setup_label(next(iter(by.values()))[0]) for task, by in groups.items()}
    axes = np.atleast_1d(fig.subplots(1, len(groups)))
    for ax, (task, g) in zip(axes, rows.groupby("task", sort=False)):
        draw_task(ax, task, g, setups[task])
    fig.suptitle("Cell choice: each seed (dots), the mean (bar) and its 95 % interval (band), best first",
                 fontsize="medium")


def q4(lm, families):
    groups = cell_groups(lm, families)
    rows = cell_rows(groups)
    values = (rows.assign(setting=rows["task"] + ": " + rows["model"], metric=rows["metric"])
              [["setting", "seed", "metric", "value"]] if len(rows) else None)
    return Answer(4, TITLE, q4_text(rows, groups), model_table(rows) if len(rows) else rows,
                  (lambda fig: draw(fig, rows, groups)) if len(rows) else None, values=values)
