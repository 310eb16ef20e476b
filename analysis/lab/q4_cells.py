"""Question 4: cell choice. RNN, GRU, LSTM, LN-LSTM and the Transformer on character LM,
classification and seq2seq: per task the runs that differ only in the cell (`cells`), one metric
per task as mean ± sd over seeds, and whether the winner's lead is more than the spreads."""
import numpy as np
import pandas as pd

from ..stats import fmt_num
from .common import (CELL_NAMES, CLASSIFY_TASKS, SEQ2SEQ_TASKS, Answer, cells, clear, column, fmt_spread,
                     last_finite, min_finite, setup_label, spread)

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
    """task × model: mean ± sd over seeds of each task's metric. `groups` {task: {cell: [runs]}}."""
    rows = []
    for task, by in groups.items():
        for cell, runs in by.items():
            m, sd, n = spread([metric(s, task) for s in runs])
            rows.append({"task": task, "model": CELL_NAMES.get(cell, cell), "metric": METRICS[task][1],
                         "mean": m, "sd": sd, "seeds": n, "values": [metric(s, task) for s in runs]})
    return pd.DataFrame(rows)


def task_sentence(task, g):
    """The winner of one task against the runner-up, whether the spreads resolve it, then the rest."""
    a, b = g.iloc[0], g.iloc[1]
    verdict = ("more than both spreads: a clear win" if clear((a["mean"], a["sd"]), (b["mean"], b["sd"]))
               else "within the spreads: not resolved at this many seeds")
    rest = ", ".join(f"{r.model} {fmt_spread(r.mean, r.sd, r.seeds)}" for r in g.iloc[2:].itertuples())
    return (f"{task[0].upper() + task[1:]} ({METRICS[task][1]}): {a['model']} wins with "
            f"{fmt_spread(a['mean'], a['sd'], a['seeds'])} against {b['model']} "
            f"{fmt_spread(b['mean'], b['sd'], b['seeds'])}, a gap of {fmt_num(abs(a['mean'] - b['mean']), 3)}, "
            f"{verdict}" + (f"; then {rest}." if rest else "."))


def q4_text(rows):
    if not len(rows):
        return [NONE]
    out = []
    for task, g in rows.groupby("task", sort=False):
        g = g[g["seeds"] > 0].sort_values("mean", ascending=not METRICS[task][2])
        if len(g) >= 2:
            out.append(task_sentence(task, g))
    return out or [NONE]


def draw_task(ax, task, g, setup):
    """One task's bars (mean ± sd per model) and seeds (dots)."""
    x = np.arange(len(g))
    ax.bar(x, g["mean"], yerr=g["sd"], color="#b5cf8f", ecolor="black", capsize=3)
    for i, vals in enumerate(g["values"]):
        ax.plot([i] * len(vals), vals, "k.", ms=4)
    ax.set_xticks(x, g["model"], rotation=20)
    ax.set_ylabel(METRICS[task][1])
    lo = np.nanmin([v for vals in g["values"] for v in vals] or [0])
    hi = np.nanmax([v for vals in g["values"] for v in vals] or [1])
    pad = 0.1 * (hi - lo) + 1e-9
    ax.set_ylim(lo - pad if not METRICS[task][2] else max(0, lo - 5 * pad), hi + pad)
    ax.set_title(f"{task}\n{setup}", fontsize="small")


def draw(fig, rows, groups):
    setups = {task: setup_label(next(iter(by.values()))[0]) for task, by in groups.items()}
    axes = np.atleast_1d(fig.subplots(1, len(groups)))
    for ax, (task, g) in zip(axes, rows.groupby("task", sort=False)):
        draw_task(ax, task, g, setups[task])
    fig.suptitle("Cell choice: mean ± sd over seeds (bars), each seed (dots)", fontsize="medium")


def q4(lm, families):
    groups = cell_groups(lm, families)
    rows = cell_rows(groups)
    table = rows.drop(columns=["values"]) if len(rows) else rows
    return Answer(4, TITLE, q4_text(rows), table, (lambda fig: draw(fig, rows, groups)) if len(rows) else None)
