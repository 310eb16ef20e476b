"""Question 2: capacity against generalisation. The runs that differ only in hidden size (and the
embedding that goes with it): validation perplexity and the train–validation gap by size, and the
runs whose validation loss turned up (overfitting)."""
import numpy as np

from ..stats import fmt_num
from .common import OVERFIT_RISE, Answer, column, lm_label, lm_rows, series, spread

TITLE = "Capacity against generalisation"
FREE = ("n_hidden", "embedding")       # what the question varies
COLUMNS = ["setting", "seed", "n_hidden", "best_valid_ppl", "final_train_loss", "final_valid_loss", "gap",
           "best_at", "turned_up"]
SIZE_COLORS = ("#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")


def by_value(rows, key, cols):
    """{value of key: {col: (mean, sd, n)}} over the seeds of each value."""
    return {v: {c: spread(g[c]) for c in cols} for v, g in rows.groupby(key)}


def trend_sentence(agg):
    """Where validation perplexity is lowest over the sizes, with every size's perplexity."""
    sizes = sorted(agg)
    ppl = [agg[h]["best_valid_ppl"][0] for h in sizes]
    best = sizes[int(np.argmin(ppl))]
    steps = " → ".join(f"{fmt_num(p, 4)} (H={h})" for h, p in zip(sizes, ppl))
    if best == sizes[-1]:
        trend = f"falls with every size up to the largest: {steps}"
    elif best == sizes[0]:
        trend = f"is lowest at the smallest size: {steps}"
    else:
        trend = f"is lowest at H={best}, and higher on either side: {steps}"
    return f"Validation perplexity {trend}."


def gap_sentence(agg):
    """The validation − training gap at the smallest size against the largest."""
    sizes = sorted(agg)
    g0, g1 = agg[sizes[0]]["gap"][0], agg[sizes[-1]]["gap"][0]
    return (f"The validation − training loss gap at the end {'grows' if g1 > g0 else 'shrinks'} from "
            f"{g0:+.3f} nats/char at H={sizes[0]} to {g1:+.3f} at H={sizes[-1]}.")


def overfit_sentence(rows):
    """The runs whose validation loss turned up, or that none did."""
    up = rows[rows["turned_up"]]
    if len(up):
        parts = [f"H={r.n_hidden} (seed {r.seed}: best {fmt_num(r.best_valid_loss, 4)} at update {r.best_at}, "
                 f"final {fmt_num(r.final_valid_loss, 4)})" for r in up.itertuples()]
        return (f"Overfitting: validation turned up (final ≥ {OVERFIT_RISE:.0%} above its best) at "
                + "; ".join(parts) + ".")
    return (f"No size overfits within {int(rows['updates'].max())} updates: every final validation loss is "
            f"within {OVERFIT_RISE:.0%} of its best.")


def q2_text(rows):
    """Hidden size against validation perplexity, the train–validation gap and overfitting."""
    if not len(rows):
        return ["No runs that differ only in hidden size."]
    agg = by_value(rows, "n_hidden", ("best_valid_ppl", "gap"))
    return [trend_sentence(agg), gap_sentence(agg), overfit_sentence(rows)]


def draw_by_size(a1, a2, rows):
    """Validation perplexity (a1) and the final gap (a2) against hidden size, mean ± sd over seeds."""
    agg = by_value(rows, "n_hidden", ("best_valid_ppl", "gap"))
    H = sorted(agg)
    a1.errorbar(H, [agg[h]["best_valid_ppl"][0] for h in H], [agg[h]["best_valid_ppl"][1] for h in H],
                fmt="o-", color="black", capsize=3)
    a1.set_ylabel("best validation perplexity")
    a2.errorbar(H, [agg[h]["gap"][0] for h in H], [agg[h]["gap"][1] for h in H], fmt="o-", color="#d62728",
                capsize=3)
    a2.axhline(0, color="grey", lw=0.8)
    a2.set_ylabel("final validation − training loss (nats/char)")
    for ax in (a1, a2):
        ax.set_xscale("log", base=2)
        ax.set_xticks(H, [str(h) for h in H])
        ax.minorticks_off()
        ax.set_xlabel("hidden size H")
    return H


def draw_curves(ax, by, H):
    """Every run's validation (solid) and training (dotted) loss, one colour per size."""
    colors = dict(zip(H, SIZE_COLORS))
    for s in (s for v in by.values() for s in v):
        h = s.config.get("n_hidden")
        ax.plot(s.check_x, column(s, "valid_loss"), color=colors.get(h, "grey"), lw=1.2,
                label=f"H={h}" if s is by[tuple(s.config.get(k) for k in FREE)][0] else None)
        ax.plot(s.check_x, column(s, "train_loss"), color=colors.get(h, "grey"), lw=0.8, ls=":")
    ax.set_xlabel("update")
    ax.set_ylabel("loss (nats/char): validation solid, training dotted")
    ax.legend(fontsize="small")


def draw(fig, rows, by):
    a1, a2, a3 = fig.subplots(1, 3)
    H = draw_by_size(a1, a2, rows)
    draw_curves(a3, by, H)
    first = next(iter(by.values()))[0]
    fig.suptitle(f"{TITLE}: {lm_label(first).split(' · ', 1)[1]}", fontsize="medium")


def q2(lm):
    by = series([s for s in lm if s.config.get("cell") != "mlp"], FREE)
    rows = lm_rows([s for v in by.values() for s in v])
    table = rows[COLUMNS].sort_values(["n_hidden", "seed"]) if len(rows) else rows
    return Answer(2, TITLE, q2_text(rows), table, (lambda fig: draw(fig, rows, by)) if len(rows) else None)
