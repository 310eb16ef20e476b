"""Sweeps: many independent runs of one preset over a grid of config values, run on Dask.

A sweep spec (TOML) names a base preset, overrides applied to every run, and a grid whose product
gives the runs:

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
one sweep over several presets); an axis whose name is not a config key takes tables only. Each grid point is one ordinary run, its run file named from the
grid values (`init=basic_tanh,method=sgd,length=10,seed=1.h5`), so every command that reads run
files works on it. Every point is validated before anything runs.

Execution: one Dask task per run, on a LocalCluster of N single-threaded worker processes or on
an existing scheduler (`--scheduler ADDRESS`, which needs the run folder on a shared file system).
Reruns are cheap and safe: finished and solved runs are skipped (not submitted), interrupted ones
resume from their checkpoint, failed ones start afresh (as with `train --force`), and a run file
made with other settings stops the sweep up front (`--force` reruns everything). Ctrl-C or SIGTERM
ends the running runs at their next check as `interrupted`; a run whose process was killed outright
resumes from its checkpoint too. One sweep at a time may write a folder.

`summary.csv` beside the run files has one row per run, rewritten as each run finishes: the name,
the grid labels (and the keys that table entries set), then status, solved, solve_iter (the
iteration of the check that solved), iterations, final/best valid error (percent), final valid
loss, max_grad_norm (of the finite ones), clipped_share, nonfinite, wall_time (the run's own
seconds) and error, all read from the run files.
"""
import csv
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

import click

from . import config as cfg
from tasks.errors import InputError
from .runfile import read_only

SPEC_KEYS = ("name", "base", "description", "set", "grid")
LENGTH = "length"          # shortcut axis and [set] key: min_length = max_length = value
IGNORED_IN_COMPARISON = ("name", "out_dir", "device", "max_iters")
NUMBERS = ("status", "solved", "solve_iter", "iterations", "final_valid_error", "best_valid_error",
           "final_valid_loss", "max_grad_norm", "clipped_share", "nonfinite", "wall_time", "error")


# -- the spec ---------------------------------------------------------------------------------
@dataclass
class Axis:
    name: str
    labels: list                     # one label per entry
    values: list                     # one {config key: value} per entry
    bases: list                      # one preset path (or None: the spec's base) per entry


@dataclass
class Spec:
    path: Path
    name: str
    base: Path | None
    sets: dict
    axes: list


@dataclass
class Point:
    name: str                        # the run name: axis=label,...
    labels: dict                     # axis -> label
    config: cfg.Config


def expand_key(key, value, where):
    """One spec key → {canonical config key: value}; `length` sets both lengths."""
    if key == LENGTH:
        return {"min_length": value, "max_length": value}
    try:
        key = cfg.canonical(key)
    except InputError as e:
        raise InputError(f"{where}: {e}") from None
    if key in ("name", "out_dir"):
        raise InputError(f"{where}: {key} is not allowed in a sweep: the sweep names its runs and their folder")
    return {key: value}


def expand_table(table, where):
    """A table of single values (a [set] table, one labelled grid entry) → canonical config keys."""
    keys = {}
    for k, v in table.items():
        if isinstance(v, (dict, list)):
            raise InputError(f"{where}: {k}={v!r} is not allowed: a single value")
        keys.update(expand_key(k, v, where))
    return keys


def label_of(value):
    """A value as it appears in a run name."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text) or "_"


def parse_axis(name, entries, where, folder=Path(".")):
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{where}.{name}={entries!r} is not allowed: a non-empty list of values")
    is_key = name == LENGTH or cfg.ALIASES.get(name, name) in cfg.FIELDS
    labels, values, bases = [], [], []
    for i, entry in enumerate(entries):
        at = f"{where}.{name}[{i}]"
        base = None
        if isinstance(entry, dict):
            entry = dict(entry)
            label = entry.pop("label", None)
            if "base" in entry:
                base = resolve_base(entry.pop("base"), folder, at)
                label = base.stem if label is None else label
            if not entry and base is None:
                raise InputError(f"{at}={entry!r} is not allowed: a table of config keys and values")
            keys = expand_table(entry, at)
            label = label_of(label if label is not None else "-".join(label_of(v) for v in entry.values()))
        elif isinstance(entry, list):
            raise InputError(f"{at}={entry!r} is not allowed: a value or a table of keys")
        elif not is_key:
            raise InputError(f"{at}={entry!r} is not allowed: {name!r} is not a config key, so its entries "
                             f"must be tables of keys, e.g. {{label = \"a\", clip = \"rescale\"}}")
        else:
            keys, label = expand_key(name, entry, at), label_of(entry)
        labels.append(label)
        values.append(keys)
        bases.append(base)
    duplicated = sorted({l for l in labels if labels.count(l) > 1})
    if duplicated:
        raise InputError(f"{where}.{name}: label {duplicated[0]!r} is not allowed twice: give the entries distinct labels")
    return Axis(name, labels, values, bases)


def resolve_base(base, folder, where):
    """A preset path given in a spec, relative to the spec file's folder; it must exist."""
    if not isinstance(base, str):
        raise InputError(f"{where}: base={base!r} is not allowed: the path of a preset TOML")
    path = folder / base
    if not path.is_file():
        raise InputError(f"{where}: base={base!r} is not allowed: no such file {str(path)!r} "
                         f"(base is relative to the spec file's folder)")
    return path


def load_spec(path):
    """Read and check a sweep spec; `base` is resolved relative to the spec file's folder."""
    path = Path(path)
    raw = cfg.read_toml(path, "spec")
    unknown = [k for k in raw if k not in SPEC_KEYS]
    if unknown:
        raise InputError(f"{path}: key {unknown[0]!r} is not allowed: one of {', '.join(SPEC_KEYS)}")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", name):
        raise InputError(f"{path}: name={name!r} is not allowed: letters, digits and ._+- (a folder name)")
    base = raw.get("base")
    if base is not None:
        base = resolve_base(base, path.parent, str(path))
    sets = raw.get("set", {})
    grid = raw.get("grid", {})
    if not isinstance(sets, dict) or not isinstance(grid, dict):
        raise InputError(f"{path}: [set] and [grid] must be tables")
    if not grid:
        raise InputError(f"{path}: [grid] is empty: give at least one axis, e.g. seed = [1, 2, 3]")
    overrides = expand_table(sets, f"{path}: set")
    axes = [parse_axis(k, v, f"{path}: grid", path.parent) for k, v in grid.items()]
    return Spec(path, name, base, overrides, axes)


def expand(spec, out_dir=None):
    """The runs of a spec, in grid order (the last axis varies fastest), each config validated.
    One invalid point fails the whole sweep before anything runs."""
    out_dir = Path(out_dir or Path("runs") / spec.name).resolve()
    base = cfg.read_preset(spec.base) if spec.base else {}
    if not any(b is not None for a in spec.axes for b in a.bases):   # else each point is checked with its own
        try:
            cfg.make({**base, **spec.sets, "name": "check"})
        except InputError as e:
            raise InputError(f"{spec.path}: base and [set]: {e}") from None
    presets = {}                     # an entry's own base, read once

    def preset(path):
        if path not in presets:
            presets[path] = cfg.read_preset(path)
        return presets[path]

    points, seen = [], {}
    for combo in product(*(range(len(a.labels)) for a in spec.axes)):
        labels = {a.name: a.labels[i] for a, i in zip(spec.axes, combo)}
        name = ",".join(f"{k}={v}" for k, v in labels.items())
        own = [a.bases[i] for a, i in zip(spec.axes, combo) if a.bases and a.bases[i] is not None]
        if len(own) > 1:
            raise InputError(f"{spec.path}: grid point {name}: two entries name a base; at most one may")
        values = {**(preset(own[0]) if own else base), **spec.sets}
        for a, i in zip(spec.axes, combo):
            values.update(a.values[i])
        values.update(name=name, out_dir=str(out_dir))
        try:
            config = cfg.make(values)
        except InputError as e:
            raise InputError(f"{spec.path}: grid point {name}: {e}") from None
        if name in seen:
            raise InputError(f"{spec.path}: two grid points share the run name {name!r}")
        seen[name] = True
        points.append(Point(name, labels, config))
    return points


# -- what to do with each point -----------------------------------------------------------------
def plan(point, force=False):
    """'skip', 'resume', 'fresh' (no file yet) or 'force' (start again over an existing file).

    finished/solved → skip (a finished run whose max_iters grew is continued); running or
    interrupted (or killed) with a checkpoint → resume; failed, or no checkpoint → force.
    A run file made with a different config is an error: the sweep never mixes settings silently."""
    from .train import checkpoint_path
    c = point.config
    path = c.run_path
    if not path.exists():
        return "fresh"
    if force:
        return "force"
    try:
        with read_only(path) as f:
            status = str(f.attrs["status"])
            recorded = cfg.recorded(f.attrs["config"])
            done = int(f["check/iter"][-1]) if f["check/iter"].shape[0] else 0
    except (OSError, KeyError, ValueError):
        return "force"   # not a readable run file
    if status == "failed":
        return "force"
    now = json.loads(c.to_json())
    changed = [k for k in now if k not in IGNORED_IN_COMPARISON and recorded.get(k) != now[k]]
    if changed:
        k = changed[0]
        raise InputError(f"run file {str(path)!r} was made with {k}={recorded.get(k)!r}, the sweep now gives "
                         f"{k}={now[k]!r}: rerun with --force to replace it, or use another --out-dir")
    ckpt = checkpoint_path(c)
    if status == "solved":
        return "skip"
    if status == "finished":
        return "resume" if done < c.max_iters and ckpt.exists() else "skip"
    if ckpt.exists():
        return "resume"
    return "force"


# -- the numbers of one run, read from its file --------------------------------------------------
def summarize(path):
    """The summary row of a run file: status and the numbers of its checks and updates."""
    import numpy as np
    from .train import SOLVED_ERROR
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


# -- the task that runs inside a worker ----------------------------------------------------------
CLOSING = threading.Event()   # this worker is shutting down
STOPPING = set()              # ids of the sweeps told to stop, in this worker process

try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:           # pragma: no cover
    WorkerPlugin = object


class StopOnClose(WorkerPlugin):
    """A worker that closes ends its runs at their next check with status `interrupted`, the file
    closed and the checkpoint on disk, so that a rerun resumes them. In the worker processes of a
    local cluster Ctrl-C is ignored: the client, which gets it too, stops the runs in order."""

    name = "dynamics-sweep-stop"

    def __init__(self, ignore_sigint=False):
        self.ignore_sigint = ignore_sigint

    def setup(self, worker):
        CLOSING.clear()
        if self.ignore_sigint and threading.current_thread() is threading.main_thread():
            import signal
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    def teardown(self, worker):
        CLOSING.set()


def stop_sweep(sweep_id):
    """Run on every worker (client.run) to stop one sweep's runs at their next check."""
    STOPPING.add(sweep_id)


def stopping(sweep_id):
    return CLOSING.is_set() or sweep_id in STOPPING


def run_task(config, mode, command="", sweep_id=""):
    """One run inside a worker: train (fresh, forced or resumed), never raise, return a small dict."""
    t0 = time.perf_counter()
    if stopping(sweep_id):
        return {"name": config.name, "status": "cancelled", "error": "", "row": {}}
    import torch
    torch.set_num_threads(1)
    from .train import train

    def after_check(run, row):
        if stopping(sweep_id):
            raise KeyboardInterrupt   # train() records it as `interrupted`

    path = config.run_path
    before = path.stat().st_mtime_ns if path.exists() else None
    mode = requeued_mode(config, mode)
    t1 = time.perf_counter()
    error = ""
    try:
        train(config, command=command, force=mode == "force", resume=mode == "resume", progress=False,
              after_check=after_check)
    except Exception as e:
        error = f"{type(e).__name__}: {e}".splitlines()[0]
    t2 = time.perf_counter()
    row = {}
    written = path.exists() and path.stat().st_mtime_ns != before
    if path.exists() and (written or not error):
        try:
            row = summarize(path)
        except (OSError, KeyError, ValueError) as e:
            error = error or f"run file unreadable: {type(e).__name__}: {e}"
    if error and not (written and row.get("status") == "failed"):
        row = {}   # the error came before this run's file was written: old numbers do not apply
    if error or not row:
        row.update(status="failed", solved=False, error=row.get("error") or error or "no run file written")
    return {"name": config.name, "status": row["status"], "error": row.get("error", ""), "row": row,
            "setup_time": t1 - t0, "train_time": t2 - t1, "task_time": time.perf_counter() - t0,
            "pid": os.getpid()}


def requeued_mode(config, mode):
    """A task that Dask runs again after its worker was lost finds the file of the attempt that
    died with it: it continues that file (from its checkpoint) rather than stopping at "exists"."""
    from .train import checkpoint_path
    if mode == "fresh" and config.run_path.exists():
        return "resume" if checkpoint_path(config).exists() else "force"
    return mode


class LostWorkers:
    """Watches which runs each worker is processing, to say when a worker is lost and Dask runs
    its runs again elsewhere."""

    def __init__(self, client, futures):
        self.client, self.names = client, {f.key: p.name for f, p in futures.items()}
        self.seen = {}

    def check(self):
        """Lines about the workers gone since the last call, with the runs they had."""
        try:
            now = {w: set(keys) for w, keys in self.client.processing().items()}
        except Exception:   # the scheduler is busy or going away: look again next time
            return []
        lines = []
        for w in sorted(self.seen.keys() - now.keys()):
            runs = sorted(self.names[k] for k in self.seen[w] if k in self.names)
            if runs:   # the one it was training, and any the scheduler had queued on it
                lines.append(f"worker {w} lost: {'run' if len(runs) == 1 else 'runs'} {', '.join(runs)} requeued")
        self.seen = now
        return lines


# -- summary.csv ---------------------------------------------------------------------------------
def summary_columns(spec):
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


# -- one sweep at a time per folder --------------------------------------------------------------
class Lock:
    """An exclusive lock on the run folder (flock on the folder itself: nothing is written, and
    the lock goes with the process that held it)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.fd = None

    def __enter__(self):
        import fcntl
        self.fd = os.open(self.folder, os.O_RDONLY)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise InputError(f"another sweep is running in {str(self.folder)!r}: wait for it or stop it first") from None
        return self

    def __exit__(self, *exc):
        os.close(self.fd)   # releases the lock


# -- the sweep -----------------------------------------------------------------------------------
@dataclass
class Result:
    name: str
    out_dir: Path
    summary: Path
    points: list
    modes: dict                      # run name -> skip / resume / fresh / force
    results: dict = field(default_factory=dict)   # run name -> the task's dict (runs executed now)
    wall: float = 0.0
    start_time: float = 0.0          # seconds to get a cluster ready (0 with a given client)
    workers: int = 0

    def count(self, status):
        return sum(1 for r in self.results.values() if r["status"] == status)


def make_client(workers, scheduler):
    """A LocalCluster of `workers` single-threaded processes, or a client of a running scheduler."""
    from dask.distributed import Client, LocalCluster
    if scheduler:
        try:
            return Client(scheduler, timeout="20s"), None
        except (OSError, TimeoutError) as e:
            raise InputError(f"--scheduler {scheduler!r} is not allowed: cannot connect ({e})") from None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=":0", silence_logs=logging.ERROR)   # any free port
    return Client(cluster), cluster


def run_sweep(spec_path, workers=None, scheduler=None, out_dir=None, force=False, progress=True, client=None):
    """Run every point of a spec that is not done yet; return what happened. `client` (a
    dask.distributed.Client) is used as given; otherwise a LocalCluster (or a client of
    `scheduler`) is made and closed. Ctrl-C or SIGTERM stops the runs at their next check, records
    them as interrupted, and raises KeyboardInterrupt."""
    from tqdm import tqdm
    t_start = time.perf_counter()
    spec = load_spec(spec_path)
    points = expand(spec, out_dir)
    folder = points[0].config.run_path.parent
    folder.mkdir(parents=True, exist_ok=True)
    result = Result(spec.name, folder, folder / "summary.csv", points, {})
    command = f"dynamics sweep {spec_path}"
    with Lock(folder):
        result.modes = {p.name: plan(p, force) for p in points}
        columns = summary_columns(spec)
        rows = {}

        def record(p, numbers):
            rows[p.name] = summary_row(p, columns, numbers)

        def record_all():
            for p in points:
                record(p, read_numbers(p) if result.modes[p.name] != "force" else {"status": "queued"})
            write_summary(result.summary, columns, rows.values())

        todo = [p for p in points if result.modes[p.name] != "skip"]
        if not todo:
            record_all()
            result.wall = time.perf_counter() - t_start
            return result
        cluster = None
        if client is None:   # before anything is written: a scheduler that cannot be reached stops here
            t0 = time.perf_counter()
            client, cluster = make_client(workers or os.cpu_count() or 1, scheduler)
            result.start_time = time.perf_counter() - t0
        own_client = cluster is not None or scheduler is not None
        sweep_id = f"{spec.name}-{os.getpid()}-{time.time_ns()}"
        bar = tqdm(total=len(todo), desc=spec.name, unit="run", disable=not progress, dynamic_ncols=True)
        if client.dashboard_link:
            bar.write(f"Dask dashboard: {client.dashboard_link}")
        futures = {}

        def collect(future):
            p = futures.pop(future)
            try:
                out = future.result()
            except Exception as e:   # the worker died: the task itself never raises
                error = f"{type(e).__name__}: {e}".splitlines()[0]
                out = {"name": p.name, "status": "failed", "error": error,
                       "row": {"status": "failed", "solved": False, "error": error}}
            if out["status"] == "cancelled":
                return
            result.results[p.name] = out
            record(p, out["row"])
            write_summary(result.summary, columns, rows.values())
            if out["status"] == "failed":
                bar.write(f"failed: {p.name}: {out['error']}")
            show_progress(bar, result, len(futures), nthreads, refresh=False)
            bar.update(1)

        previous = on_sigterm_raise_interrupt()
        try:
            from dask.distributed import as_completed
            record_all()
            client.register_plugin(StopOnClose(ignore_sigint=cluster is not None))
            nthreads = sum(client.nthreads().values()) or 1
            result.workers = len(client.nthreads())
            for p in sorted(todo, key=cost, reverse=True):   # longest first: no long run left alone at the end
                futures[client.submit(run_task, p.config, result.modes[p.name], command, sweep_id, pure=False)] = p
            show_progress(bar, result, len(futures), nthreads)
            lost = LostWorkers(client, futures)
            for future in completed_while_watching(list(futures), lost, bar):
                collect(future)
        except KeyboardInterrupt:
            bar.write("stopping: the running runs end at their next check; the same command resumes them")
            try:
                client.run(stop_sweep, sweep_id)
                for future in as_completed(list(futures), timeout=STOP_WAIT):
                    collect(future)
            except (KeyboardInterrupt, Exception):
                pass
            for p in futures.values():          # whatever did not report back: read its file
                record(p, read_numbers(p))
            write_summary(result.summary, columns, rows.values())
            raise
        finally:
            restore_sigterm(previous)
            bar.close()
            if own_client:
                client.close()
            if cluster is not None:
                cluster.close()
            result.wall = time.perf_counter() - t_start
    return result


def completed_while_watching(futures, lost, bar, every=1.0):
    """The futures as they complete; meanwhile, every `every` seconds, a line for each lost worker."""
    from dask.distributed import wait
    remaining = set(futures)
    while remaining:
        try:
            done, remaining = wait(remaining, timeout=every, return_when="FIRST_COMPLETED")
        except TimeoutError:
            done = set()
        for line in lost.check():
            bar.write(line)
        yield from done


def cost(point):
    """A rough guess at a run's time, for the order of submission: updates × mean length."""
    c = point.config
    return c.max_iters * (c.min_length + c.max_length) * (1.5 if c.alpha > 0 else 1.0)


STOP_WAIT = 120   # seconds to wait for the running runs to reach a check after Ctrl-C


def read_numbers(point):
    """The summary numbers of a point's run file as it is now."""
    if not point.config.run_path.exists():
        return {"status": "queued"}
    try:
        return summarize(point.config.run_path)
    except (OSError, KeyError, ValueError):
        return {"status": "unreadable"}


def on_sigterm_raise_interrupt():
    import signal
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt
    return signal.signal(signal.SIGTERM, handler)


def restore_sigterm(previous):
    import signal
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def show_progress(bar, result, pending, nthreads, refresh=True):
    done = result.count("solved") + result.count("finished")
    bar.set_postfix_str(f"done {done} (solved {result.count('solved')}) | running {min(pending, nthreads)} | "
                        f"failed {result.count('failed')}", refresh=refresh)


def report(result):
    """The closing lines of a sweep: what ran, what failed, and where the time went."""
    n = len(result.points)
    skipped = sum(1 for m in result.modes.values() if m == "skip")
    if not result.results:
        return [f"{result.out_dir}: {n} runs, all already done; nothing to run", f"summary: {result.summary}"]
    lines = [f"{result.out_dir}: {n} runs; {skipped} already done, {len(result.results)} run now: "
             f"{result.count('solved')} solved, {result.count('finished')} finished, "
             f"{result.count('interrupted')} interrupted, {result.count('failed')} failed"]
    if result.results:
        t = timing(result)
        lines.append(f"wall {result.wall:.1f} s on {result.workers} workers (cluster start {result.start_time:.1f} s)")
        if t:
            lines.append(f"workers busy {t['tasks']:.1f} s, of which training {t['training']:.1f} s; overhead "
                         f"{t['overhead']:.2f} s per run, plus {t['warmup']:.1f} s of imports in each worker's first run")
    lines.append(f"summary: {result.summary}")
    return lines


def timing(result):
    """Where the workers' time went, over the runs executed now: `training` is the runs' own time
    (their files' wall_time); `overhead` is the rest of a task (model and file set-up, closing the
    file, the final-state NPZ, imports); a worker's first task also pays for lazy imports
    (`warmup`, the first task's overhead beyond the median one)."""
    import statistics
    done = [r for r in result.results.values() if "train_time" in r and r["row"].get("wall_time") is not None]
    if not done:
        return None
    overhead = {r["name"]: r["task_time"] - r["row"]["wall_time"] for r in done}
    first = {}
    for r in done:                       # results are in order of completion, one task at a time per worker
        first.setdefault(r["pid"], r["name"])
    later = [overhead[r["name"]] for r in done if r["name"] not in first.values()] or list(overhead.values())
    median = statistics.median(later)
    return {"training": sum(r["row"]["wall_time"] for r in done), "tasks": sum(r["task_time"] for r in done),
            "overhead": median, "warmup": statistics.mean(overhead[n] for n in first.values()) - median,
            "runs": len(done)}


# -- commands ------------------------------------------------------------------------------------
@click.command("sweep", context_settings={"max_content_width": 100})
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="worker processes of the local cluster (default: the number of CPUs)")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="use a running Dask scheduler (e.g. tcp://127.0.0.1:8786) instead of a local cluster")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="folder of the run files (default: runs/<sweep name>)")
@click.option("--force", is_flag=True, help="rerun every run, replacing existing run files")
@click.option("--quiet", is_flag=True, help="no progress bar")
def sweep(spec, workers, scheduler, out_dir, force, quiet):
    """Run every point of the grid in SPEC.toml as its own run, in parallel on Dask.

    A rerun skips finished and solved runs, resumes interrupted ones and retries failed ones."""
    if workers and scheduler:
        raise InputError("--workers and --scheduler are not allowed together: the scheduler has its own workers")
    result = run_sweep(spec, workers=workers, scheduler=scheduler, out_dir=out_dir, force=force, progress=not quiet)
    for line in report(result):
        click.echo(line)
