"""Question 10: weight tying. The language-model runs that differ only in whether the output layer
shares the embedding's matrix: the parameters each trains (counted in its checkpoint, the shared
matrix once) and the best validation perplexity over seeds."""
import numpy as np
import pandas as pd

from ..intervals import estimate, sentence
from ..stats import fmt_num
from .common import Answer, draw_estimate, lm_label, lm_rows, over_seeds, parameters, per_seed, series

TITLE = "Weight tying: parameters and perplexity"


def tying_rows(lm):
    by = series([s for s in lm if s.config.get("cell") not in ("mlp", "transformer")], ("tie_weights",))
    runs = [s for v in by.values() for s in v]
    rows = lm_rows(runs)
    if len(rows):
        rows["tied"] = [bool(s.config.get("tie_weights")) for s in runs]
        rows["parameters"] = [parameters(s) for s in runs]
        rows["setting"] = ["tied" if t else "untied" for t in rows["tied"]]
    return rows, runs


def q10_text(rows, runs):
    if not len(rows) or rows["tied"].nunique() < 2:
        return ["No language-model runs that differ only in weight tying."]
    est = over_seeds(rows, "setting", "best_valid_ppl")
    p = {k: rows.loc[rows["setting"] == k, "parameters"].median() for k in ("tied", "untied")}
    where = lm_label(runs[0]).split(" · ", 1)[1]
    size = (f"Tying shares the {p['untied'] - p['tied']:,.0f} weights of the output matrix with the embedding: "
            f"{p['tied']:,.0f} parameters against {p['untied']:,.0f} "
            f"({fmt_num(100 * (p['untied'] - p['tied']) / p['untied'], 3)}% fewer)." if np.isfinite(p["tied"]) else
            "The runs keep no checkpoint to count their parameters.")
    return [size, f"Best validation perplexity ({where}): " + sentence("tied", est["tied"], "untied", est["untied"],
                                                                         True, 4) + "."]


def draw(fig, rows):
    ax = fig.subplots()
    for i, k in enumerate(("untied", "tied")):
        draw_estimate(ax, i, estimate(rows.loc[rows["setting"] == k, "best_valid_ppl"]), "#9467bd", across=True)
    p = {k: rows.loc[rows["setting"] == k, "parameters"].median() for k in ("untied", "tied")}
    ax.set_xticks([0, 1], [f"{k}\n{p[k]:,.0f} parameters" if np.isfinite(p[k]) else k for k in ("untied", "tied")])
    ax.set_xlim(-0.6, 1.6)
    ax.set_ylabel("best validation perplexity (dots: seeds; bar: mean; band: 95 % interval)")
    ax.set_title(TITLE, fontsize="medium")


def q10(lm):
    rows, runs = tying_rows(lm)
    ok = len(rows) and rows["tied"].nunique() == 2
    table = rows[["setting", "seed", "parameters", "best_valid_ppl", "best_valid_bpc"]] if ok else pd.DataFrame()
    return Answer(10, TITLE, q10_text(rows, runs), table, (lambda fig: draw(fig, rows)) if ok else None,
                  values=per_seed(rows, "setting", ("best_valid_ppl", "parameters")) if ok else None)
