"""The lab study: the run files of `make lab` turned into one chapter of answers.

A study folder (runs/lab-quick/) holds five sweeps: `lm/` (the language-model grid and the
window MLPs), `classify/`, `seq2seq/` and `conditional/` (the families' comparisons) and
`presets/` (A1–A5, B1–B2, C0–C1), every compared setting at three seeds. Each question is one module with one function that
takes the loaded runs and returns an `Answer`: sentences generated from the numbers, the table they
come from, and a figure. Nothing here is written by hand about a result: where the numbers turn,
the words turn.

The questions, in the chapter's order (`QUESTIONS`), one module each:

1. q1_configuration.py    configuration → validation perplexity, each run's continuation of a prompt
2. q2_capacity.py         hidden size against validation perplexity and the train–validation gap
3. q3_depth.py            depth, dropout and clipping one at a time, and where gradients explode
4. q4_cells.py            RNN, GRU, LSTM, LN-LSTM, Transformer on LM, classification and seq2seq
5. q5_context.py          how far useful context extends (window MLP; loss by position in a window)
6. q6_teacher_forcing.py  the teacher-forcing ratio as a sweep, and scheduled sampling
7. q7_dynamics.py         the presets against their baselines, and why, from the diagnostics
8. q8_classification.py   pooling, bidirectional reading, truncation, class imbalance
9. q9_seq2seq.py          attention on copy, reversal and dates; beam search against greedy
10. q10_tying.py          weight tying: parameters and perplexity
11. q11_learning_rate.py  GRU and LSTM against the RNN, each at its best learning rate
12. q12_sampling.py       temperature, top-k and top-p against diversity and coherence
13. q13_conditional.py    conditional generation: the class at the first step or at every step

common.py holds what they share: the `Answer`, how a question finds its runs (`series`, `cells`),
numbers over seeds (`over_seeds`, `per_seed`), the labels that name a run, a run's parameter
count and one row per language-model run.
This module finds and loads a study and puts the answers in order.
"""
import math
from pathlib import Path

from .common import Answer, column, last_finite, one_line, series
from .q1_configuration import q1
from .q2_capacity import q2
from .q3_depth import depth_rows, q3
from .q4_cells import q4
from .q5_context import position_loss, q5, useful_context
from .q6_teacher_forcing import q6
from .q7_dynamics import preset_name, q7
from .q8_classification import q8
from .q9_seq2seq import q9
from .q10_tying import q10
from .q11_learning_rate import q11
from .q12_sampling import q12
from .q13_conditional import q13

__all__ = ["Answer", "PARTS", "QUESTIONS", "answers", "cpu_seconds", "depth_rows", "is_study",
           "load_study", "one_line", "position_loss", "preset_name", "q1", "q2", "q3", "q4", "q5", "q6", "q7",
           "q8", "q9", "q10", "q11", "q12", "q13",
           "series", "useful_context"]

PARTS = ("lm", "classify", "seq2seq", "presets", "conditional")   # the study's folders, one sweep each

#: the chapter: each question with what it reads, in order. "lm", "families" and "presets" are
#: load_study's runs; "curves" the loss by position and "sampling" the samples' table when given
#: (else q5 and q12 read the checkpoints).
QUESTIONS = ((q1, ("lm",)),
             (q2, ("lm",)),
             (q3, ("lm",)),
             (q4, ("lm", "families")),
             (q5, ("lm", "curves")),
             (q6, ("families",)),
             (q7, ("presets",)),
             (q8, ("families",)),
             (q9, ("families",)),
             (q10, ("lm",)),
             (q11, ("lm",)),
             (q12, ("lm", "sampling")),
             (q13, ("families",)))


def is_study(folder):
    """Whether `folder` holds a lab study: run files in at least one of its PARTS subfolders."""
    folder = Path(folder)
    return folder.is_dir() and any(any((folder / p).glob("**/*.h5")) for p in PARTS)


def load_study(folder):
    """{"lm", "families", "presets": [Snapshot]}: the finished (or solved) runs under the study's
    PARTS folders, by family (text; classification and seq2seq; the synthetic tasks); the others
    under "unfinished", and under "missing" the "part/name (status)" of every point a sweep's
    summary.csv lists without a finished run file."""
    from ..read import load
    folder = Path(folder)
    study = {"lm": [], "families": [], "presets": [], "unfinished": [], "missing": []}
    for p in PARTS:
        done = set()
        for f in sorted((folder / p).glob("**/*.h5")):
            s = load(f)
            if s.status not in ("finished", "solved"):     # a run still to come (or to resume) answers nothing yet
                study["unfinished"].append(s)
                continue
            done.add(f.stem)
            study["lm" if s.family == "text" else "presets" if s.family == "synthetic" else "families"].append(s)
        study["missing"] += [f"{p}/{name} ({status})" for name, status in planned(folder / p) if name not in done]
    return study


def planned(part):
    """[(name, status)] of the points the sweep's summary.csv lists in `part`; [] without one."""
    import pandas as pd
    summary = part / "summary.csv"
    if not summary.is_file():
        return []
    rows = pd.read_csv(summary, usecols=["name", "status"], dtype=str, keep_default_na=False)
    return list(zip(rows["name"], rows["status"]))


def answers(study, curves=None, sampling=None):
    """The answers of a loaded study ({part: [Snapshot]}), in the chapter's order."""
    given = {"lm": [], "families": [], "presets": [], **study, "curves": curves, "sampling": sampling}
    return [question(*(given[part] for part in reads)) for question, reads in QUESTIONS]


def cpu_seconds(study):
    """The runs' own recorded time (training, validation and checks), summed, and their number."""
    walls = [last_finite(column(s, "wall_time")) for part in ("lm", "families", "presets") for s in study.get(part, [])]
    walls = [w for w in walls if math.isfinite(w)]
    return float(sum(walls)), len(walls)
