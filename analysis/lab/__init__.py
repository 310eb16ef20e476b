"""The lab study: the run files of `make lab` turned into one chapter of answers.

A study folder (runs/lab-quick/) holds four sweeps: `lm/` (the language-model grid and the
window MLPs), `classify/` and `seq2seq/` (the families' comparisons and teacher forcing at three
seeds) and `presets/` (A1–A5, B1–B2, C0–C1). Each question below is one function that takes the loaded runs
and returns an `Answer`: sentences generated from the numbers, the table they come from, and a
figure. Nothing here is written by hand about a result: where the numbers turn, the words turn.

What several questions share (the Answer, how a question finds its runs, numbers over seeds,
the labels that name a run, one row per language-model run) is in common.py.
"""
import math
from pathlib import Path

from .common import Answer, clear, column, last_finite, one_line, series, spread
from .q1_configuration import q1
from .q2_capacity import q2
from .q3_depth import depth_rows, q3
from .q4_cells import q4
from .q5_context import position_loss, q5, useful_context
from .q6_teacher_forcing import q6
from .q7_dynamics import preset_name, q7

PARTS = ("lm", "classify", "seq2seq", "presets")   # the study's folders, one sweep each


# ---------------------------------------------------------------------------- reading

def is_study(folder):
    """Whether `folder` holds a lab study: run files in at least one of its PARTS subfolders."""
    folder = Path(folder)
    return folder.is_dir() and any(any((folder / p).glob("**/*.h5")) for p in PARTS)


def load_study(folder):
    """{"lm", "families", "presets": [Snapshot]}: the finished (or solved) runs under the study's
    PARTS folders, by family (text; classification and seq2seq; the synthetic tasks); the others
    under "unfinished"."""
    from ..read import load
    folder = Path(folder)
    study = {"lm": [], "families": [], "presets": [], "unfinished": []}
    for p in PARTS:
        for f in sorted((folder / p).glob("**/*.h5")):
            s = load(f)
            if s.status not in ("finished", "solved"):     # a run still to come (or to resume) answers nothing yet
                study["unfinished"].append(s)
                continue
            study["lm" if s.family == "text" else "presets" if s.family == "synthetic" else "families"].append(s)
    return study


# ---------------------------------------------------------------------------- the chapter

def answers(study, curves=None):
    """The seven answers of a loaded study ({part: [Snapshot]})."""
    lm, fam, pre = study.get("lm", []), study.get("families", []), study.get("presets", [])
    return [q1(lm), q2(lm), q3(lm), q4(lm, fam), q5(lm, curves), q6(fam), q7(pre)]


def cpu_seconds(study):
    """The runs' own recorded time (training, validation and checks), summed, and their number."""
    walls = [last_finite(column(s, "wall_time")) for part, runs in study.items() if part != "unfinished" for s in runs]
    walls = [w for w in walls if math.isfinite(w)]
    return float(sum(walls)), len(walls)
