"""Question 9: sequence to sequence, the GRU encoder–decoder on copy, reversal and dates: attention
against none on each task, and beam search against greedy decoding of the same models (every check
decodes its strings both ways, so the difference is paired run by run)."""
import pandas as pd

from ..intervals import against, estimate, sentence
from .common import SEQ2SEQ_TASKS, Answer, column, draw_estimate, last_finite, over_seeds, per_seed, series

TITLE = "Seq2seq: attention on copy, reversal and dates; beam search against greedy"
TASKS = {"copy": "Copy", "reverse": "Reversal", "date": "Dates"}
METRICS = ("greedy_exact", "beam_exact", "beam_gain")


def attention_name(s):
    a = s.config.get("attention", "none")
    return "no attention" if a == "none" else f"{a.replace('_', ' ')} attention"


def rows_of(families):
    """One row per run of the attention comparisons: task, attention, seed, exact matches."""
    rows = []
    for task in SEQ2SEQ_TASKS:
        runs = [s for s in families if s.task == task and s.config.get("cell") == "gru"]
        for (_,), group in series(runs, ("attention",)).items():
            for s in group:
                greedy, beam = last_finite(column(s, "greedy_exact")), last_finite(column(s, "beam_exact"))
                rows.append({"task": task, "setting": f"{TASKS[task]}, {attention_name(s)}",
                             "attention": attention_name(s), "seed": s.config.get("seed"),
                             "beam_size": s.config.get("beam_size"), "updates": s.iterations_done,
                             "greedy_exact": greedy, "beam_exact": beam, "beam_gain": beam - greedy})
    return pd.DataFrame(rows)


def attention_sentence(g):
    """One task: attention against none on greedy exact match."""
    task = g["task"].iloc[0]
    names = list(dict.fromkeys(g["attention"]))
    if "no attention" not in names or len(names) < 2:
        return None
    other = next(n for n in names if n != "no attention")
    est = over_seeds(g, "attention", "greedy_exact")
    return (f"{TASKS[task]} ({int(g['updates'].max())} updates), greedy exact match (%): "
            + sentence(other, est[other], "no attention", est["no attention"], False) + ".")


def beam_sentence(rows):
    """Beam search minus greedy exact match of the same model at the last check, per setting."""
    parts = []
    for name, g in rows.groupby("setting", sort=False):
        e = estimate(g["beam_gain"])
        word = {"above": "beam better", "below": "greedy better", "at": "within noise of 0"}[against(e, 0.0)]
        parts.append(f"{name} {e.text(2)} ({word})")
    size = sorted(set(int(b) for b in rows["beam_size"].dropna()))
    return (f"Beam search (beam {'/'.join(map(str, size))}) minus greedy exact match of the same model, points: "
            + "; ".join(parts) + ".")


def q9_text(rows):
    if not len(rows):
        return ["No seq2seq runs that differ only in attention."]
    out = [attention_sentence(g) for _, g in rows.groupby("task", sort=False)]
    return [t for t in out if t] + [beam_sentence(rows)]


def draw(fig, rows):
    """Greedy exact match per task and attention (dots: seeds; bar: mean; band: interval), and beam
    minus greedy per run."""
    a1, a2 = fig.subplots(1, 2)
    settings = list(dict.fromkeys(rows["setting"]))
    for ax, metric, label in ((a1, "greedy_exact", "greedy exact match (%)"),
                              (a2, "beam_gain", "beam − greedy exact match (points, same model)")):
        for i, name in enumerate(settings):
            draw_estimate(ax, i, estimate(rows.loc[rows["setting"] == name, metric]), "#8c564b")
        ax.set_yticks(range(len(settings)), settings if ax is a1 else [""] * len(settings), fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(label)
        ax.grid(axis="x", lw=0.3)
    lo, hi = a1.get_xlim()
    a1.set_xlim(max(lo, 0), min(hi, 100))
    a2.axvline(0, color="grey", lw=0.8)
    fig.suptitle(TITLE, fontsize="medium")


def q9(families):
    rows = rows_of(families)
    return Answer(9, TITLE, q9_text(rows), rows, (lambda fig: draw(fig, rows)) if len(rows) else None,
                  values=per_seed(rows, "setting", METRICS) if len(rows) else None)
