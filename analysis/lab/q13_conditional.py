"""Question 13: conditional generation. The names generators that differ only in where the class
enters: through the initial state (condition = "first") or beside every input ("every"). Judged
at the last check by a classifier trained on real names (controllability: the percent of the
generated names it assigns to the class asked for; its accuracy on real names is the ceiling),
with the share of distinct and of novel names and the validation loss, over seeds."""
import numpy as np
import pandas as pd

from ..intervals import estimate, sentence
from .common import Answer, column, draw_estimate, last_finite, over_seeds, per_seed, series

TITLE = "Conditional generation: the class at the first step against at every step"
METRICS = ("controllability", "distinct", "novel", "final_valid_loss")
NAMES = {"first": "class at the first step", "every": "class at every step"}


def rows_of(families):
    runs = [s for s in families if s.family == "conditional"]
    by = series(runs, ("condition",))
    return pd.DataFrame([{"setting": NAMES.get(c, c), "seed": s.config.get("seed"), "updates": s.iterations_done,
                          "controllability": last_finite(column(s, "controllability")),
                          "distinct": last_finite(column(s, "distinct")), "novel": last_finite(column(s, "novel")),
                          "final_valid_loss": last_finite(column(s, "valid_loss")),
                          "judge_accuracy": float(s.attrs.get("judge_accuracy_on_real", np.nan))}
                         for (c,), group in by.items() for s in group])


def q13_text(rows):
    if not len(rows) or rows["setting"].nunique() < 2:
        return ["No conditional generators that differ only in where the class enters."]
    est = {m: over_seeds(rows, "setting", m) for m in METRICS}
    a, b = NAMES["every"], NAMES["first"]
    judge = estimate(rows.loc[rows["setting"] == a, "judge_accuracy"])      # each seed's own validation names
    ceiling = (f" The judge classifies real validation names at {judge.text(3)}%: the most a controllability "
               f"here can show. Against it: "
               + sentence(a, est["controllability"][a], "the judge on real names", judge, False) + "."
               if judge.n else " No judge: controllability not measured.")
    out = [f"Controllability at the last check ({int(rows['updates'].max())} updates; % of generated names the judge "
           f"assigns to the class asked for): " + sentence(a, est["controllability"][a], b, est["controllability"][b],
                                                           False) + "." + ceiling,
           "Distinct names (%): " + sentence(a, est["distinct"][a], b, est["distinct"][b], False)
           + "; novel names, not in the training set (%): " + sentence(a, est["novel"][a], b, est["novel"][b], False)
           + "; validation loss (nats/char): "
           + sentence(a, est["final_valid_loss"][a], b, est["final_valid_loss"][b], True) + "."]
    return out


def draw(fig, rows):
    axes = fig.subplots(1, 3)
    settings = list(dict.fromkeys(rows["setting"]))
    for ax, metric, label in zip(axes, ("controllability", "distinct", "novel"),
                                 ("controllability (%)", "distinct names (%)", "novel names (%)")):
        for i, name in enumerate(settings):
            draw_estimate(ax, i, estimate(rows.loc[rows["setting"] == name, metric]), "#17becf", across=True)
        ax.set_xticks(range(len(settings)), [s.replace(" at ", "\nat ") for s in settings])
        ax.set_xlim(-0.6, len(settings) - 0.4)
        lo, hi = ax.get_ylim()
        ax.set_ylim(max(lo, 0), min(hi, 100))
        ax.set_ylabel(label)
    judge = rows["judge_accuracy"].dropna()
    if len(judge):
        axes[0].axhspan(judge.min(), judge.max(), color="grey", alpha=0.2, lw=0)
        axes[0].annotate("the judge on real names", (-0.5, judge.max()), textcoords="offset points", xytext=(2, 3),
                         fontsize=8, color="grey")
    fig.suptitle(TITLE + " (dots: seeds; bar: mean; band: 95 % interval)", fontsize="medium")


def q13(families):
    rows = rows_of(families)
    ok = len(rows) and rows["setting"].nunique() >= 2
    return Answer(13, TITLE, q13_text(rows), rows, (lambda fig: draw(fig, rows)) if ok else None,
                  values=per_seed(rows, "setting", METRICS) if ok else None)
