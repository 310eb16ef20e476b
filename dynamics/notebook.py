"""A run file in a notebook: its tables as pandas DataFrames, its verdicts and its figures, read
by the same functions as `dynamics info` and `dynamics plot` (analysis/), without torch.

    import dynamics
    run = dynamics.open("runs/A3.h5")       # also a final-state NPZ, or a run still being written
    run.checks[["valid_error", "rho"]]       # one row per check, indexed by its update
    run.verdicts                             # what `dynamics info` states, one Verdict a line
    run.plot("grad_time")                    # a matplotlib Figure; run.figures names them all

`refresh()` reads the file again: a run still being written has grown. Every table is a copy,
taken when the file was read.
"""
import difflib
import functools
import io

import numpy as np
import pandas as pd

from analysis import figures as F
from analysis.info import info_text
from analysis.panels import FIGURES, seq2seq
from analysis.read import load
from analysis.verdicts import verdicts
from tasks.errors import InputError


def open(path):
    """The run file or final-state NPZ at `path` as a `RecordedRun`; `InputError` if unreadable."""
    return RecordedRun(path)


class RecordedRun:
    """One recorded run. `iters` (one row per update) and `checks` (one row per check) are
    DataFrames; `grad_time` and `histograms` hold the gradient data of each probed part, by the
    part's name in the file, the input side first and the main part (the unprefixed one) last.
    `snap` is the analysis.read.Snapshot they come from, for any other function of analysis/."""

    def __init__(self, path):
        self._path = path
        self.refresh()

    def refresh(self):
        """Read the file again (a run that is still being written has grown); returns the run."""
        snap = self.snap = load(self._path)
        self.iters = _table(snap.iter, snap.iter_x, _index_name(snap.iter_xlabel))
        self.checks = _table(snap.check, snap.check_x, _index_name(snap.check_xlabel))
        self.grad_time = {snap.part_names.get(l, str(l)): layer.grad_time.copy()
                          for l, layer in snap.layers.items() if layer.grad_time is not None}
        self.histograms = {snap.part_names.get(l, str(l)):
                           {q: (counts.copy(), layer.edges[q].copy()) for q, counts in layer.hists.items()}
                           for l, layer in snap.layers.items() if layer.hists}
        self._figures = None          # which figures have data: found when first asked
        return self

    # --- what the file says of itself
    name = property(lambda self: self.snap.name)
    path = property(lambda self: self.snap.path)
    status = property(lambda self: self.snap.status)
    family = property(lambda self: self.snap.family)
    cell = property(lambda self: self.snap.cell)
    task = property(lambda self: self.snap.task)
    config = property(lambda self: dict(self.snap.config))
    attrs = property(lambda self: dict(self.snap.attrs))

    @property
    def verdicts(self):
        """The verdicts of `dynamics info`, most important first (analysis.verdicts.Verdict)."""
        return verdicts(self.snap)

    def info(self):
        """The text that `dynamics info` prints."""
        return info_text(self.snap)

    # --- figures
    @property
    def figures(self):
        """The names `plot` draws for this run: "dashboard", then every figure with data."""
        if self._figures is None:
            self._figures = ["dashboard"] + [name for name, fn in _figure_functions(self.snap).items()
                                             if _has_data(self.snap, name, fn)]
        return list(self._figures)

    def plot(self, name="dashboard"):
        """The figure `name` of this run as a matplotlib Figure (the one `dynamics plot` saves as
        <run>_<name>.png); `InputError` naming the figures there are, if it has none of that name."""
        if name == "dashboard":
            return _inline(F.figure_dashboard(self.snap))
        fn = _figure_functions(self.snap).get(name)
        fig = fn(self.snap) if fn is not None else None
        if fig is None:
            names = self.figures
            if fn is None:
                close = difflib.get_close_matches(str(name), names, n=1)
                why = f"no figure {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
            else:
                why = f"no data for the figure {name!r}"
            raise InputError(f"{self.path}: {why}; this run has: {', '.join(names)}")
        return _inline(fig)

    def __repr__(self):
        s = self.snap
        return (f"RecordedRun({s.name!r}: {s.status}, {s.iterations_done} updates, "
                f"{s.n_check} check{'s' if s.n_check != 1 else ''})")


# ------------------------------------------------------------------------------- helpers

def _table(columns, x, index_name):
    """A DataFrame of equal-length 1-D columns on the index `x` (whole numbers as int)."""
    x = np.asarray(x)
    if len(x) and np.isfinite(x).all() and (x == np.round(x)).all():
        x = x.astype(np.int64)
    return pd.DataFrame(dict(columns), index=pd.Index(x, name=index_name))   # pandas copies


def _index_name(xlabel):
    # a run file counts rows by update; a final-state NPZ may only number its checks
    return "check" if xlabel == "check number" else "update"


def _figure_functions(snap):
    """{name: function of the snapshot} of every figure `dynamics plot` may write for `snap`:
    those of analysis/figures.py and, for a seq2seq run, the seq2seq ones (analysis.figures.plot_run
    writes both; the seq2seq "attention" replaces the other)."""
    fns = dict(F.FIGURE_FUNCTIONS)
    if seq2seq.is_seq2seq(snap):
        fns.update(seq2seq.FIGURE_FUNCTIONS)
    return fns


def _has_data(snap, name, fn):
    # a figure of panels has data when one of its panels has, known without drawing it; a figure
    # that a topic draws itself says so only by being drawn
    if isinstance(fn, functools.partial) and fn.func is F.figure:
        return bool(F.available_panels(snap, FIGURES[name][1]))
    return fn(snap) is not None


def _inline(fig):
    """`fig`, shown inline when a notebook displays it. analysis/ draws without pyplot, so
    Jupyter's matplotlib support may not know the figure; its PNG then comes from here."""
    fig._repr_png_ = functools.partial(_png, fig)
    return fig


def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
