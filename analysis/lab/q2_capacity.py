"""Question 2: capacity against generalisation. The runs that differ only in hidden size (and the
embedding that goes with it): validation perplexity and the train–validation gap by size, and the
runs whose validation loss turned up (overfitting)."""

from ..stats import fmt_num
from ..intervals import sentence
from .common import OVERFIT_RISE, Answer, column, error_bars, lm_label, lm_rows, over_seeds, per_seed, series

TITLE = "Capacity against generalisation"
FREE = ("n_hidden", "embedding")       # what the question varies
COLUMNS = ["setting", "seed", "n_hidden", "best_valid_ppl", "final_train_loss", "final_valid_loss", "gap",
           "best_at", "turned_up"]
SIZE_COLORS = ("#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")


def by_size(rows, col):
    """{hidden size: Estimate of `col` over its seeds}, smallest first."""
    return dict(sorted(over_seeds(rows, "n_hidden", col).items()))


def trend_sentences(rows):
    """Validation perplexity at every size, then each size against the next smaller one."""
    ppl = by_size(rows, "best_valid_ppl")
    sizes = list(ppl)
    out = ["Best validation perplexity by hidden size: "
           + " → ".join(f"{ppl[h].text(4)} at H={h}" for h in sizes) + "."]
    for a, b in zip(sizes, sizes[1:]):
        out.append(f"H={b} against H={a}: " + sentence(f"H={b}", ppl[b], f"H={a}", ppl[a], True, 4) + ".")
    return out


def gap_sentence(rows):
    """The validation − training gap at the end, smallest size against largest."""
    gap = by_size(rows, "gap")
    a, b = min(gap), max(gap)
    return ("The validation − training loss gap at the end (nats/char): "
            + sentence(f"H={b}", gap[b], f"H={a}", gap[a], lower_is_better=False) + ".")


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
    return trend_sentences(rows) + [gap_sentence(rows), overfit_sentence(rows)]


def errorbars(ax, est, color):
    """Means with their 95 % intervals against hidden size, and the seeds as dots."""
    H = list(est)
    mean, err = error_bars(est.values())
    ax.errorbar(H, mean, err, fmt="o-", color=color, capsize=3)
    for h in H:
        ax.plot([h] * est[h].n, est[h].values, ".", color="black", ms=4)


def draw_by_size(a1, a2, rows):
    """Validation perplexity (a1) and the final gap (a2) against hidden size over seeds."""
    H = list(by_size(rows, "best_valid_ppl"))
    errorbars(a1, by_size(rows, "best_valid_ppl"), "black")
    a1.set_ylabel("best validation perplexity")
    errorbars(a2, by_size(rows, "gap"), "#d62728")
    a2.axhline(0, color="grey", lw=0.8)
    a2.set_ylabel("final validation − training loss (nats/char)")
    for ax in (a1, a2):
        ax.set_xscale("log", base=2)
        ax.set_xticks(H, [str(h) for h in H])
        ax.minorticks_off()
        ax.set_xlabel("hidden size H (dots: seeds; bars: 95 % interval)")
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
    return Answer(2, TITLE, q2_text(rows), table, (lambda fig: draw(fig, rows, by)) if len(rows) else None,
                  values=per_seed(rows.assign(setting=[f"H={h}" for h in rows.get("n_hidden", [])]), "setting",
                                  ("best_valid_ppl", "final_train_loss", "final_valid_loss", "gap")))
