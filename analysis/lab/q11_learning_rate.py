"""Question 11: when do the GRU and the LSTM beat the vanilla RNN? Each cell at its own best
learning rate of a small grid, so that who wins is not one rate's artefact: per cell the rate
whose mean best validation bits/char over seeds is lowest, then the cells compared at their best
rates, each with its parameter count."""
import numpy as np
import pandas as pd

from ..intervals import estimate, sentence
from ..stats import fmt_num
from .common import CELL_NAMES, Answer, error_bars, lm_rows, over_seeds, parameters, per_seed, series

TITLE = "GRU and LSTM against the RNN, each at its best learning rate"


def grid_rows(lm):
    """One row per run of the cells × learning-rate grid (runs equal but for cell and rate)."""
    by = series([s for s in lm if s.config.get("cell") not in ("mlp", "transformer")], ("cell", "lr"))
    order = list(CELL_NAMES)                     # the cells in the chapter's order: RNN, GRU, LSTM, ...
    runs = sorted((s for v in by.values() for s in v),
                  key=lambda s: order.index(s.config.get("cell")) if s.config.get("cell") in order else len(order))
    rows = lm_rows(runs)
    if len(rows):
        rows["model"] = [CELL_NAMES.get(c, c) for c in rows["cell"]]
        rows["parameters"] = [parameters(s) for s in runs]
        rows["setting"] = [f"{m} lr {fmt_num(lr)}" for m, lr in zip(rows["model"], rows["lr"])]
    return rows


def best_rates(rows):
    """{model: (best rate, Estimate there)} over the rates with at least two seeds."""
    out = {}
    for model, g in rows.groupby("model", sort=False):
        est = over_seeds(g, "lr", "best_valid_bpc")
        est = {lr: e for lr, e in est.items() if e.n > 1} or est
        lr = min(est, key=lambda k: est[k].mean)
        out[model] = (lr, est[lr])
    return out


def q11_text(rows):
    if not len(rows) or rows["model"].nunique() < 2 or rows["lr"].nunique() < 2:
        return ["No language-model runs of several cells at several learning rates."]
    best = best_rates(rows)
    params = rows.groupby("model")["parameters"].median()
    rates = sorted(rows["lr"].unique())
    tried = rows.groupby("model")["lr"].nunique()
    out = [f"Rates tried: {', '.join(fmt_num(r) for r in rates)}; each cell's best (lowest mean best validation "
           f"bits/char): " + "; ".join(f"{m} at {fmt_num(lr)}{' (the only rate tried)' if tried[m] == 1 else ''}, "
                                       f"{e.text(4)}" for m, (lr, e) in best.items()) + "."]
    if "RNN" in best:
        for m in (m for m in best if m != "RNN"):
            name = f"{m} ({fmt_num(params[m] / 1000, 3)}k parameters)" if np.isfinite(params[m]) else m
            rnn = f"RNN ({fmt_num(params['RNN'] / 1000, 3)}k)" if np.isfinite(params["RNN"]) else "RNN"
            out.append(f"{m} against the RNN, each at its best rate: "
                       + sentence(name, best[m][1], rnn, best["RNN"][1], True, 4) + ".")
    return out


def draw(fig, rows):
    """Best validation bits/char against the learning rate, one line per cell (mean, interval, seeds)."""
    ax = fig.subplots()
    for k, (model, g) in enumerate(rows.groupby("model", sort=False)):
        rates = sorted(g["lr"].unique())
        est = [estimate(g.loc[g["lr"] == r, "best_valid_bpc"]) for r in rates]
        mean, err = error_bars(est)
        x = np.array(rates) * (1 + 0.04 * (k - 1))            # a little apart, so that the bars do not hide
        ax.errorbar(x, mean, err, fmt="osd^"[k % 4], color=f"C{k}", capsize=3,
                    ls=("-", "--", "-.", ":")[k % 4], label=model)
        for xi, e in zip(x, est):
            ax.plot([xi] * e.n, e.values, ".", color=f"C{k}", ms=3, alpha=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (AdamW)")
    ax.set_ylabel("best validation bits/char (mean, 95 % interval, seeds)")
    ax.legend(fontsize="small")
    ax.set_title(TITLE, fontsize="medium")


def q11(lm):
    rows = grid_rows(lm)
    ok = len(rows) and rows["model"].nunique() >= 2 and rows["lr"].nunique() >= 2
    table = rows[["setting", "seed", "parameters", "best_valid_bpc", "best_valid_ppl"]] if ok else pd.DataFrame()
    return Answer(11, TITLE, q11_text(rows), table, (lambda fig: draw(fig, rows)) if ok else None,
                  values=per_seed(rows, "setting", ("best_valid_bpc", "parameters")) if ok else None)
