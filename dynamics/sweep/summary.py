"""summary.csv: one row per run of a sweep, read from the run files.

The columns: the run name, the grid labels (and the keys that table entries set), then NUMBERS.
The file is rewritten whole as each run finishes, atomically, so a reader never sees half of it.
"""
import csv

from .. import config as cfg
from ..runfile import read_only
from .spec import LENGTH

NUMBERS = ("status", "solved", "solve_iter", "iterations", "final_valid_error", "best_valid_error",
           "final_valid_loss", "max_grad_norm", "clipped_share", "nonfinite", "wall_time", "error")


# -- the numbers of one run, read from its file ---------------------------------------------------
def summarize(path):
    """The summary row of a run file: status and the numbers of its checks and updates."""
    import numpy as np
    from ..train import SOLVED_ERROR
    with read_only(path) as f:
        status = str(f.attrs["status"])
        error = str(f.attrs.get("error", ""))
        check, it = f["check"], f["iter"]
        iters, verr, vloss = check["iter"][:], check["valid_error"][:], check["valid_loss"][:]
        wall = check["wall_time"][:] if "wall_time" in check else np.zeros(0)
        grad, clipped, nonfinite = it["grad_norm"][:], it["clipped"][:], it["nonfinite"][:]
    solve_iter = None
    if status == "solved":
        hit = np.flatnonzero((verr < SOLVED_ERROR) & np.isfinite(vloss))
        solve_iter = int(iters[hit[0]]) if hit.size else int(iters[-1])
    finite = grad[np.isfinite(grad)]

    def last(a):
        return float(a[-1]) if a.size else float("nan")

    return {"status": status, "solved": status == "solved", "solve_iter": solve_iter,
            "iterations": int(iters[-1]) if iters.size else 0,
            "final_valid_error": last(verr), "best_valid_error": float(np.nanmin(verr)) if verr.size else float("nan"),
            "final_valid_loss": last(vloss),
            "max_grad_norm": float(finite.max()) if finite.size else float("nan"),
            "clipped_share": float(clipped.mean()) if clipped.size else float("nan"),
            "nonfinite": int(np.nansum(nonfinite)), "wall_time": last(wall), "error": error}


def read_numbers(point):
    """The summary numbers of a point's run file as it is now."""
    if not point.config.run_path.exists():
        return {"status": "queued"}
    try:
        return summarize(point.config.run_path)
    except (OSError, KeyError, ValueError):
        return {"status": "unreadable"}


# -- the CSV --------------------------------------------------------------------------------------
def summary_columns(spec):
    """name, the axes, the config keys that an axis of tables sets (or `length` expands to), NUMBERS."""
    axes = [a.name for a in spec.axes]
    keys = []
    for a in spec.axes:
        if a.name == LENGTH or any(len(v) > 1 or a.name not in v for v in a.values):
            for v in a.values:
                keys += [k for k in v if k not in axes and k not in keys]
    return ["name"] + axes + keys + list(NUMBERS)


def summary_row(point, columns, numbers):
    row = {"name": point.name, **point.labels}
    for k in columns:
        if k not in row and k in cfg.FIELDS:
            row[k] = getattr(point.config, k)
    row.update(numbers)
    return row


def write_summary(path, columns, rows):
    """Rewrite the CSV atomically: a reader never sees half a file."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    tmp.replace(path)


def read_summary(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class SummaryFile:
    """The summary.csv of a sweep being run: a row per point, in grid order once `record_all` has
    run, and the file rewritten after each change."""

    def __init__(self, path, spec):
        self.path, self.columns = path, summary_columns(spec)
        self.rows = {}                   # run name -> row

    def record(self, point, numbers):
        self.rows[point.name] = summary_row(point, self.columns, numbers)

    def record_all(self, points, modes):
        """Every point as its file is now; one about to start afresh over a file is queued."""
        for p in points:
            self.record(p, read_numbers(p) if modes[p.name] != "force" else {"status": "queued"})
        self.write()

    def write(self):
        write_summary(self.path, self.columns, self.rows.values())
