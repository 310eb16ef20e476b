"""Question 8: the choices of a sequence classifier, one at a time around the GRU of question 4:
how the top layer's steps become one vector (pooling), reading each sequence backwards too
(bidirectional), keeping only each sequence's last tokens (truncation), and a skewed class prior
with the loss unweighted or balanced. Each choice against its reference over seeds, on the final
validation accuracy and macro-F1, and for the prior the recall of the rarest class."""
import numpy as np
import pandas as pd

from ..intervals import estimate, sentence
from ..stats import fmt_num
from .common import CLASSIFY_TASKS, Answer, column, draw_estimate, last_finite, over_seeds, per_seed, series

TITLE = "Classification: pooling, bidirectional reading, truncation, class imbalance"
#: each choice: its config key, the reference value, how a value is named
CHOICES = (("pooling", "last", lambda v: f"{v} pooling"),
           ("bidirectional", False, lambda v: "bidirectional" if v else "one direction"),
           ("truncate", 0, lambda v: f"the last {v} characters" if v else "every character"))
IMBALANCE = ("class_balance", "class_weighting")
METRICS = ("accuracy", "macro_f1", "rarest_recall")
NAMES = {"accuracy": "final validation accuracy (%)", "macro_f1": "final macro-F1 (%)",
         "rarest_recall": "recall of the rarest class (%)"}


def prior_name(balance, weighting):
    prior = "uniform prior" if not balance else "prior " + "/".join(fmt_num(p) for p in balance)
    return prior + (", balanced loss" if weighting == "balanced" else "")


def row(s, choice, name):
    recall = s.arrays.get("recall")
    balance = s.config.get("class_balance") or ()
    rare = int(np.argmin(balance)) if len(balance) else None
    return {"choice": choice, "setting": name, "seed": s.config.get("seed"),
            "accuracy": last_finite(column(s, "accuracy")), "macro_f1": last_finite(column(s, "macro_f1")),
            "rarest_recall": float(recall[-1][rare]) if rare is not None and recall is not None and len(recall)
            else np.nan}


def choice_rows(families):
    """One row per run and choice it takes part in (the reference runs take part in several)."""
    cls = [s for s in families if s.task in CLASSIFY_TASKS and s.config.get("cell") != "transformer"]
    rows = []
    for key, _, name in CHOICES:
        for (value,), runs in series(cls, (key,)).items():
            rows += [row(s, key, name(value)) for s in runs]
    for (balance, weighting), runs in series(cls, IMBALANCE).items():
        rows += [row(s, "imbalance", prior_name(balance, weighting)) for s in runs]
    return pd.DataFrame(rows)


def choice_sentence(rows, key, reference):
    """Every other value of one choice against its reference, on accuracy and macro-F1."""
    g = rows[rows["choice"] == key]
    names = list(dict.fromkeys(g["setting"]))
    if reference not in names or len(names) < 2:
        return None
    est = {m: over_seeds(g, "setting", m) for m in ("accuracy", "macro_f1")}
    parts = [f"{other}: accuracy, " + sentence(other, est["accuracy"][other], reference, est["accuracy"][reference],
                                               False)
             + "; macro-F1, " + sentence(other, est["macro_f1"][other], reference, est["macro_f1"][reference], False)
             for other in names if other != reference]
    return f"{key[0].upper() + key[1:]} against {reference} — " + ". ".join(parts) + "."


def imbalance_sentences(rows):
    """What a skewed prior does (uniform against skewed) and what a balanced loss does to it."""
    g = rows[rows["choice"] == "imbalance"]
    names = list(dict.fromkeys(g["setting"]))
    uniform = next((n for n in names if n.startswith("uniform")), None)
    skewed = next((n for n in names if not n.startswith("uniform") and "balanced" not in n), None)
    weighted = next((n for n in names if "balanced" in n), None)
    est = {m: over_seeds(g, "setting", m) for m in METRICS}
    out = []
    if uniform and skewed:
        out.append(f"Class imbalance, {skewed} against the {uniform}: macro-F1, "
                   + sentence(skewed, est["macro_f1"][skewed], uniform, est["macro_f1"][uniform], False) + ".")
    if skewed and weighted:
        out.append("The balanced loss on the skewed prior: recall of the rarest class, "
                   + sentence("balanced", est["rarest_recall"][weighted], "unweighted",
                              est["rarest_recall"][skewed], False)
                   + "; accuracy, " + sentence("balanced", est["accuracy"][weighted], "unweighted",
                                               est["accuracy"][skewed], False)
                   + "; macro-F1, " + sentence("balanced", est["macro_f1"][weighted], "unweighted",
                                               est["macro_f1"][skewed], False) + ".")
    return out


def q8_text(rows):
    if not len(rows):
        return ["No classification runs that differ in one of these choices."]
    out = [choice_sentence(rows, key, name(reference)) for key, reference, name in CHOICES]
    return [t for t in out if t] + imbalance_sentences(rows)


def draw(fig, rows, confusions):
    """Accuracy and macro-F1 per setting (dots: seeds, bar: mean with interval); the confusion
    matrices of the skewed prior, unweighted and balanced (first seed)."""
    settings = list(dict.fromkeys(rows["setting"]))
    left, right = fig.subfigures(1, 2, width_ratios=[2.2, 1]) if confusions else (fig, None)
    axes = left.subplots(1, 2)
    for ax, metric in zip(axes, ("accuracy", "macro_f1")):
        for i, name in enumerate(settings):
            draw_estimate(ax, i, estimate(rows.loc[rows["setting"] == name, metric]), "#1f77b4")
        ax.set_yticks(range(len(settings)), settings if ax is axes[0] else [""] * len(settings), fontsize=8)
        ax.invert_yaxis()
        lo, hi = ax.get_xlim()
        ax.set_xlim(max(lo, 0), min(hi, 100))
        ax.set_xlabel(NAMES[metric])
        ax.grid(axis="x", lw=0.3)
    for ax, (name, C, classes) in zip(np.atleast_1d(right.subplots(len(confusions), 1)) if confusions else [],
                                      confusions):
        share = C / np.maximum(C.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(C)):
            for j in range(len(C)):
                ax.text(j, i, f"{int(C[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.6 else "black")
        ax.set_xticks(range(len(C)), classes, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(C)), classes, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name.replace(", ", "\n"), fontsize="small")
    fig.suptitle(TITLE + " (dots: seeds; bar: mean; band: 95 % interval)", fontsize="medium")


def confusions_of(families):
    """(setting, last confusion matrix, class names) of the skewed-prior runs' first seed."""
    cls = [s for s in families if s.task in CLASSIFY_TASKS and s.config.get("cell") != "transformer"]
    out = []
    for (balance, weighting), runs in series(cls, IMBALANCE).items():
        if not balance:
            continue
        s = min(runs, key=lambda s: s.config.get("seed") or 0)
        C = s.arrays.get("confusion")
        if C is not None and len(C):
            names = s.static.get("classes")
            classes = [str(c) for c in names] if names is not None else [str(k) for k in range(len(C[-1]))]
            name = prior_name(balance, weighting) + ("" if weighting == "balanced" else ", unweighted loss")
            out.append((f"{name} (seed {s.config.get('seed')})", np.asarray(C[-1], dtype=float), classes))
    return out


def q8(families):
    rows = choice_rows(families)
    confusions = confusions_of(families)
    values = per_seed(rows.assign(setting=rows["choice"] + ": " + rows["setting"]), "setting", METRICS) \
        if len(rows) else None
    return Answer(8, TITLE, q8_text(rows), rows, (lambda fig: draw(fig, rows, confusions)) if len(rows) else None,
                  values=values)
