"""Question 1: configuration → validation perplexity, with each run's continuation of one fixed
prompt. Every language-model run is a row; a setting's seeds are one row of the table and one line
of the figure."""
import numpy as np
import pandas as pd

from ..intervals import estimate, sentence
from ..stats import fmt_num
from .common import Answer, draw_estimate, lm_rows, one_line, over_seeds, per_seed

TITLE = "Configuration → validation perplexity"
METRICS = ("best_valid_ppl", "best_valid_bpc")


def ranked(rows):
    """{setting: Estimate of its best validation perplexity}, lowest mean first."""
    by = over_seeds(rows, "setting", "best_valid_ppl")
    return dict(sorted(by.items(), key=lambda kv: kv[1].mean))


def q1_text(rows):
    """The best and the worst setting, the best against the next, and the prompt they continue."""
    if not len(rows):
        return ["No language-model runs."]
    by = ranked(rows)
    names = list(by)
    best, worst = names[0], names[-1]
    updates = sorted(set(int(u) for u in rows["updates"]))
    budget = f"{updates[0]} updates each" if len(updates) == 1 else f"{updates[0]}–{updates[-1]} updates"
    out = [f"Of {len(by)} settings ({len(rows)} runs, {budget}), the lowest validation perplexity is {best} "
           f"{by[best].text(4)}, the highest {worst} {by[worst].text(4)}: "
           f"{fmt_num(by[worst].mean / by[best].mean, 3)}× apart."]
    if len(names) > 1:
        out.append("The best against the next: "
                   + sentence(best, by[best], names[1], by[names[1]], lower_is_better=True, digits=4) + ".")
    prompt = next((p for p in rows["prompt"] if p), "")
    if prompt:
        out.append(f"Every run continues the same prompt \"{one_line(prompt, 40)}\" (temperature 0.8, last check); "
                   f"the best writes \"{one_line(rows[rows['setting'] == best]['sample'].iloc[0], 50)}\".")
    return out


def settings_table(rows):
    """One row per setting: seeds, updates, best validation perplexity and bits/char over seeds,
    each seed's perplexity, and the sample of its first seed."""
    out = []
    for name, g in rows.sort_values("seed").groupby("setting", sort=False):
        ppl, bpc = estimate(g["best_valid_ppl"]), estimate(g["best_valid_bpc"])
        out.append({"setting": name, "seeds": ppl.n, "updates": int(g["updates"].max()),
                    "best valid ppl": ppl.text(4), "best valid bpc": bpc.text(4),
                    "per seed": " / ".join(fmt_num(v, 4) for v in g["best_valid_ppl"]),
                    "sample (first seed)": g["sample"].iloc[0], "_mean": ppl.mean})
    return pd.DataFrame(out).sort_values("_mean").drop(columns="_mean")


def draw(fig, rows):
    """A dot plot: per setting its seeds (dots) and its mean with the interval (bar), best at the top."""
    ax = fig.subplots()
    by = ranked(rows)
    for i, e in enumerate(by.values()):
        draw_estimate(ax, i, e, "#1f77b4")
    ax.set_yticks(np.arange(len(by)), list(by), fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("best validation perplexity per character (dots: seeds; tick: mean; band: 95 % interval)")
    ax.grid(axis="x", lw=0.3)
    ax.set_title(TITLE, fontsize="medium")


def q1(lm):
    rows = lm_rows(lm)
    table = settings_table(rows) if len(rows) else rows
    return Answer(1, TITLE, q1_text(rows), table, (lambda fig: draw(fig, rows)) if len(rows) else None,
                  values=per_seed(rows, "setting", METRICS))
