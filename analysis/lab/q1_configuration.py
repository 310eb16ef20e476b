"""Question 1: configuration → validation perplexity, with each run's continuation of one fixed
prompt. Every language-model run is a row; a setting's seeds are one row of the table and one bar
of the figure."""
import numpy as np
import pandas as pd

from ..stats import fmt_num
from .common import Answer, fmt_spread, lm_rows, one_line, spread

TITLE = "Configuration → validation perplexity"


def q1_text(rows):
    """The best and the worst setting by validation perplexity (mean over seeds)."""
    if not len(rows):
        return ["No language-model runs."]
    by = rows.groupby("setting")["best_valid_ppl"].agg(["mean", "std", "count"]).sort_values("mean")
    best, worst = by.index[0], by.index[-1]

    def stated(name):
        r = by.loc[name]
        sd = f" ± {fmt_num(r['std'], 2)} over {int(r['count'])} seeds" if r["count"] > 1 else ""
        return f"{name} ({fmt_num(r['mean'], 4)}{sd})"
    out = [f"Of {len(by)} settings ({len(rows)} runs), the lowest validation perplexity is {stated(best)}, "
           f"the highest {stated(worst)}: {fmt_num(by['mean'].iloc[-1] / by['mean'].iloc[0], 3)}× apart."]
    prompt = next((p for p in rows["prompt"] if p), "")
    if prompt:
        out.append(f"Every run continues the same prompt \"{one_line(prompt, 40)}\" (temperature 0.8, last check); "
                   f"the best writes \"{one_line(rows[rows['setting'] == best]['sample'].iloc[0], 50)}\".")
    return out


def settings_table(rows):
    """One row per setting: seeds, best validation perplexity and bits/char (mean ± sd), each
    seed's perplexity, and the sample of its first seed."""
    out = []
    for name, g in rows.sort_values("seed").groupby("setting", sort=False):
        m, sd, n = spread(g["best_valid_ppl"])
        out.append({"setting": name, "seeds": n, "updates": int(g["updates"].max()),
                    "best valid ppl": fmt_spread(m, sd, n, 4), "best valid bpc": fmt_num(g["best_valid_bpc"].mean(), 4),
                    "per seed": " / ".join(fmt_num(v, 4) for v in g["best_valid_ppl"]),
                    "sample (first seed)": g["sample"].iloc[0], "_mean": m})
    return pd.DataFrame(out).sort_values("_mean").drop(columns="_mean")


def draw(fig, rows):
    """One bar per setting (mean over seeds, ± sd), its seeds as dots, best at the top."""
    ax = fig.subplots()
    by = rows.groupby("setting")["best_valid_ppl"].agg(["mean", "std", "min", "max"]).sort_values("mean")
    y = np.arange(len(by))
    ax.barh(y, by["mean"], xerr=by["std"].fillna(0), color="#8fb3d9", ecolor="black", capsize=2)
    for i, name in enumerate(by.index):
        pts = rows[rows["setting"] == name]["best_valid_ppl"]
        ax.plot(pts, [i] * len(pts), "k.", ms=4)
    ax.set_yticks(y, by.index, fontsize=6 if len(by) > 20 else 7)
    ax.invert_yaxis()
    lo = by["min"].min()
    ax.set_xlim(lo * 0.95, by["max"].max() * 1.02)
    ax.set_xlabel("best validation perplexity per character (bar: mean over seeds, dots: seeds)")
    ax.set_title(TITLE, fontsize="medium")


def q1(lm):
    rows = lm_rows(lm)
    table = settings_table(rows) if len(rows) else rows
    return Answer(1, TITLE, q1_text(rows), table, (lambda fig: draw(fig, rows)) if len(rows) else None)
