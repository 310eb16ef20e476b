"""Sweeps: many independent runs of one preset over a grid of config values, run on Dask.

spec.py, the spec: a sweep spec (TOML) names a base preset, overrides applied to every run, and a
grid whose product gives the runs:

    name = "fig7-quick"                # the run files go to runs/<name>/ (or --out-dir)
    base = "torder-base.toml"          # a preset TOML, relative to the spec file's folder
    [set]                              # applied to every run
    max_iters = 2000
    [grid]                             # one list per axis; the runs are the product of the axes
    init = ["basic_tanh", {label = "sigmoid", init = "sigmoid", activation = "sigmoid"}]
    method = [{label = "sgd", clip = "none", alpha = 0}, {label = "sgd+clip+omega", clip = "rescale", alpha = 2}]
    length = [10, 20]                  # the shortcut `length` sets min_length = max_length
    seed = [1, 2, 3]

An axis named after a config key takes plain values; an entry may also be a table of several keys
with an optional `label` (by default the values joined by '-') and an optional `base`, a preset
of its own that replaces the spec's for its runs (`preset = [{label = "A1", base = "../A1.toml"}]`:
one sweep over several presets); an axis whose name is not a config key takes tables only. Each
grid point is one ordinary run, its run file named from the grid values
(`init=basic_tanh,method=sgd,length=10,seed=1.h5`), so every command that reads run files works
on it. Every point is validated before anything runs.

execute.py, the execution: one Dask task per run, on a LocalCluster of N single-threaded worker
processes or on an existing scheduler (`--scheduler ADDRESS`, which needs the run folder on a
shared file system). Reruns are cheap and safe: finished and solved runs are skipped (not
submitted), interrupted ones resume from their checkpoint, failed ones start afresh (as with
`train --force`), and a run file made with other settings stops the sweep up front (`--force`
reruns everything). Ctrl-C or SIGTERM ends the running runs at their next check as `interrupted`;
a run whose process was killed outright resumes from its checkpoint too, and a run whose worker
was lost is requeued by Dask and continues from its checkpoint. One sweep at a time may write a
folder.

summary.py, the summary: `summary.csv` beside the run files has one row per run, rewritten as
each run finishes: the name, the grid labels (and the keys that table entries set), then status,
solved, solve_iter (the iteration of the check that solved), iterations, final/best valid error
(percent), final valid loss, max_grad_norm (of the finite ones), clipped_share, nonfinite,
wall_time (the run's own seconds) and error, all read from the run files.

The command is dynamics/commands/sweep.py; the success-rate figure of a sweep folder is
analysis/success.py.
"""
from .spec import LENGTH, Axis, Point, Spec, expand, label_of, load_spec, parse_axis, resolve_base
from .execute import Lock, Result, StopOnClose, plan, report, run_sweep, run_task, stop_sweep, timing
from .summary import (NUMBERS, SummaryFile, read_numbers, read_summary, summarize, summary_columns,
                      summary_row, write_summary)

__all__ = ["LENGTH", "Axis", "Point", "Spec", "expand", "label_of", "load_spec", "parse_axis", "resolve_base",
           "Lock", "Result", "StopOnClose", "plan", "report", "run_sweep", "run_task", "stop_sweep", "timing",
           "NUMBERS", "SummaryFile", "read_numbers", "read_summary", "summarize", "summary_columns",
           "summary_row", "write_summary"]
