"""Running a sweep's points on Dask: one task per run, on a LocalCluster of single-threaded worker
processes or on an existing scheduler.

The client side (`run_sweep`) plans each point (skip, resume, start afresh), holds the folder's
lock, submits the runs longest first, keeps summary.csv up to date as they come back, says when a
worker is lost (Dask runs its runs again elsewhere, and `run_task` continues their files from the
checkpoint), and on Ctrl-C or SIGTERM stops the runs at their next check. The worker side
(`run_task`, `StopOnClose`, `stop_sweep`) trains one run and never raises.
"""
import json
import logging
import math
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from tasks.errors import InputError

from .. import config as cfg
from ..checkpoint import checkpoint_path
from ..runfile import read_only
from .spec import expand, load_spec
from .summary import SummaryFile, read_numbers, summarize

IGNORED_IN_COMPARISON = ("name", "out_dir", "device", "max_iters")
STOP_WAIT = 120   # seconds to wait for the running runs to reach a check after Ctrl-C


# -- what to do with each point ---------------------------------------------------------------------
def plan(point, force=False):
    """'skip', 'resume', 'fresh' (no file yet) or 'force' (start again over an existing file).

    finished/solved → skip (a finished run whose max_iters grew is continued); running or
    interrupted (or killed) with a checkpoint → resume; failed, or no checkpoint → force.
    A run file made with a different config is an error: the sweep never mixes settings silently."""
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


class Lock:
    """One sweep at a time per folder: an exclusive lock on the run folder (flock on the folder
    itself: nothing is written, and the lock goes with the process that held it)."""

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


# -- the task that runs inside a worker ---------------------------------------------------------------
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
    """One run inside a worker: train (fresh, forced or resumed), never raise, return a small dict:
    the run's status, error and summary row, and where the task's time went (`trained`: the
    seconds this task added to the run file's wall_time; `task_time`: the whole task)."""
    t0 = time.perf_counter()
    if stopping(sweep_id):
        return {"name": config.name, "status": "cancelled", "error": "", "row": {}}
    import torch
    torch.set_num_threads(1)
    from ..train import train
    if config.threads == "auto":   # a sweep runs a run per core: one thread each
        config = replace(config, threads=1)

    def after_check(run, row):
        if stopping(sweep_id):
            raise KeyboardInterrupt   # train() records it as `interrupted`

    path = config.run_path
    before = path.stat().st_mtime_ns if path.exists() else None
    mode = requeued_mode(config, mode)
    wall_before = recorded_wall_time(path) if mode == "resume" else 0.0
    t1 = time.perf_counter()
    error = ""
    try:
        train(config, command=command, force=mode == "force", resume=mode == "resume", progress=False,
              after_check=after_check)
    except Exception as e:
        error = first_line(e)
    t2 = time.perf_counter()
    row = task_row(path, before, error)
    return {"name": config.name, "status": row["status"], "error": row.get("error", ""), "row": row,
            "task_time": time.perf_counter() - t0,
            "trained": trained_seconds(row, wall_before, t2 - t1), "pid": os.getpid()}


def requeued_mode(config, mode):
    """A task that Dask runs again after its worker was lost finds the file of the attempt that
    died with it: it continues that file (from its checkpoint) rather than stopping at "exists"."""
    if mode == "fresh" and config.run_path.exists():
        return "resume" if checkpoint_path(config).exists() else "force"
    return mode


def task_row(path, mtime_before, error):
    """The summary row of the file this task wrote; a failure gets status `failed` and its error,
    and the numbers of an older file only if this task wrote it."""
    row = {}
    written = path.exists() and path.stat().st_mtime_ns != mtime_before
    if path.exists() and (written or not error):
        try:
            row = summarize(path)
        except (OSError, KeyError, ValueError) as e:
            error = error or f"run file unreadable: {type(e).__name__}: {e}"
    if error and not (written and row.get("status") == "failed"):
        row = {}   # the error came before this run's file was written: old numbers do not apply
    if error or not row:
        row.update(status="failed", solved=False, error=row.get("error") or error or "no run file written")
    return row


def recorded_wall_time(path):
    """The seconds of training a run file holds so far (its last check's wall_time; 0 if none)."""
    try:
        with read_only(path) as f:
            wall = f["check/wall_time"]
            return float(wall[-1]) if wall.shape[0] else 0.0
    except (OSError, KeyError, ValueError):
        return 0.0


def trained_seconds(row, wall_before, in_trainer):
    """What this task added to its run's wall_time. A resumed file's wall_time counts every earlier
    attempt too, which is why it is taken from where this task began. Bounded by 0 and the time this
    task spent in the trainer: the file may hold a check past its checkpoint (a worker killed in
    between), which the resumed run drops, and a checkpoint's clock runs on past its check's row."""
    after = row.get("wall_time")
    if after is None or not math.isfinite(after) or not math.isfinite(wall_before):
        return 0.0
    return min(max(after - wall_before, 0.0), in_trainer)


def first_line(error):
    return f"{type(error).__name__}: {error}".splitlines()[0]


# -- lost workers -----------------------------------------------------------------------------------
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


# -- the sweep ----------------------------------------------------------------------------------------
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


def run_sweep(spec_path, workers=None, scheduler=None, out_dir=None, force=False, progress=True, client=None):
    """Run every point of a spec that is not done yet; return what happened. `client` (a
    dask.distributed.Client) is used as given; otherwise a LocalCluster (or a client of
    `scheduler`) is made and closed. Ctrl-C or SIGTERM stops the runs at their next check, records
    them as interrupted, and raises KeyboardInterrupt."""
    t_start = time.perf_counter()
    spec = load_spec(spec_path)
    points = expand(spec, out_dir)
    if scheduler and client is None:
        check_address(scheduler)                 # before anything is written
    folder = points[0].config.run_path.parent
    folder.mkdir(parents=True, exist_ok=True)
    result = Result(spec.name, folder, folder / "summary.csv", points, {})
    try:
        with Lock(folder):
            result.modes = {p.name: plan(p, force) for p in points}
            summary = SummaryFile(result.summary, spec)
            todo = [p for p in points if result.modes[p.name] != "skip"]
            if not todo:
                summary.record_all(points, result.modes)
                return result
            # connected before anything is written: a scheduler that cannot be reached stops here
            with connected(client, workers, scheduler) as (client, local, start_time):
                result.start_time = start_time
                execute(client, local, todo, result, summary, f"dynamics sweep {spec_path}", progress)
    finally:
        result.wall = time.perf_counter() - t_start
    return result


@contextmanager
def connected(client, workers, scheduler):
    """(client, whether it is a local cluster of our own, seconds it took to start): the client
    given, used as it is, or one made here and closed on the way out."""
    if client is not None:
        yield client, False, 0.0
        return
    t0 = time.perf_counter()
    client, cluster = make_client(workers or os.cpu_count() or 1, scheduler)
    try:
        yield client, cluster is not None, time.perf_counter() - t0
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def check_address(scheduler):
    """A --scheduler that Dask cannot read as an address is bad input, one line."""
    from distributed.comm.addressing import parse_address, parse_host_port
    try:
        parse_host_port(parse_address(scheduler)[1], 8786)
    except ValueError as e:
        raise InputError(f"--scheduler {scheduler!r} is not allowed: not an address ({str(e).split(';')[0]}); "
                         f"give one such as tcp://127.0.0.1:8786") from None


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


def execute(client, local, todo, result, summary, command, progress):
    """Submit the runs of `todo` and collect them as they end; on Ctrl-C or SIGTERM stop them."""
    from tqdm import tqdm
    sweep_id = f"{result.name}-{os.getpid()}-{time.time_ns()}"
    bar = tqdm(total=len(todo), desc=result.name, unit="run", disable=not progress, dynamic_ncols=True)
    if client.dashboard_link:
        bar.write(f"Dask dashboard: {client.dashboard_link}")
    sweep = Progress(result, summary, bar)
    previous = on_sigterm_raise_interrupt()
    try:
        summary.record_all(result.points, result.modes)
        client.register_plugin(StopOnClose(ignore_sigint=local))
        sweep.nthreads = sum(client.nthreads().values()) or 1
        result.workers = len(client.nthreads())
        sweep.submit(client, todo, command, sweep_id)
        sweep.show()
        lost = LostWorkers(client, sweep.pending)
        for future in completed_while_watching(list(sweep.pending), lost, bar):
            sweep.collect(future)
    except KeyboardInterrupt:
        stop_runs(client, sweep, sweep_id)
        raise
    finally:
        restore_sigterm(previous)
        bar.close()


class Progress:
    """A sweep while its runs are out: which future is which point, the summary rows as the runs
    come back, and the counts on the progress bar."""

    def __init__(self, result, summary, bar):
        self.result, self.summary, self.bar = result, summary, bar
        self.pending = {}                # future -> point, submitted and not back yet
        self.nthreads = 1                # the cluster's, for the count of runs running

    def submit(self, client, todo, command, sweep_id):
        for p in sorted(todo, key=cost, reverse=True):   # longest first: no long run left alone at the end
            future = client.submit(run_task, p.config, self.result.modes[p.name], command, sweep_id, pure=False)
            self.pending[future] = p

    def collect(self, future):
        """One task back: its row into summary.csv, a line if it failed, one more on the bar."""
        p = self.pending.pop(future)
        out = task_result(future, p)
        if out["status"] == "cancelled":
            return
        self.result.results[p.name] = out
        self.summary.record(p, out["row"])
        self.summary.write()
        if out["status"] == "failed":
            self.bar.write(f"failed: {p.name}: {out['error']}")
        self.show(refresh=False)
        self.bar.update(1)

    def record_unreported(self):
        """The runs that did not report back (after a stop), as their files are now."""
        for p in self.pending.values():
            self.summary.record(p, read_numbers(p))
        self.summary.write()

    def show(self, refresh=True):
        r = self.result
        done = r.count("solved") + r.count("finished")
        self.bar.set_postfix_str(f"done {done} (solved {r.count('solved')}) | running "
                                 f"{min(len(self.pending), self.nthreads)} | failed {r.count('failed')}",
                                 refresh=refresh)


def task_result(future, point):
    """The task's dict; the task itself never raises, so an exception here is a worker that died."""
    try:
        return future.result()
    except Exception as e:
        error = first_line(e)
        return {"name": point.name, "status": "failed", "error": error,
                "row": {"status": "failed", "solved": False, "error": error}}


def stop_runs(client, sweep, sweep_id):
    """After Ctrl-C or SIGTERM: the running runs end at their next check; those that do not report
    back within STOP_WAIT seconds (or after a second Ctrl-C) are recorded as their files are."""
    from dask.distributed import as_completed
    sweep.bar.write("stopping: the running runs end at their next check; the same command resumes them")
    try:
        client.run(stop_sweep, sweep_id)
        for future in as_completed(list(sweep.pending), timeout=STOP_WAIT):
            sweep.collect(future)
    except (KeyboardInterrupt, Exception):
        pass
    sweep.record_unreported()


def cost(point):
    """A rough guess at a run's time, for the order of submission: updates × mean length."""
    c = point.config
    return c.max_iters * (c.min_length + c.max_length) * (1.5 if c.alpha > 0 else 1.0)


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


# -- the closing lines --------------------------------------------------------------------------------
def report(result):
    """The closing lines of a sweep: what ran, what failed, and where the time went."""
    n = len(result.points)
    skipped = sum(1 for m in result.modes.values() if m == "skip")
    if not result.results:
        return [f"{result.out_dir}: {n} runs, all already done; nothing to run", f"summary: {result.summary}"]
    lines = [f"{result.out_dir}: {n} runs; {skipped} already done, {len(result.results)} run now: "
             f"{result.count('solved')} solved, {result.count('finished')} finished, "
             f"{result.count('interrupted')} interrupted, {result.count('failed')} failed",
             f"wall {result.wall:.1f} s on {result.workers} workers (cluster start {result.start_time:.1f} s)"]
    t = timing(result)
    if t:
        lines.append(f"workers busy {t['tasks']:.1f} s, of which training {t['training']:.1f} s; overhead "
                     f"{t['overhead']:.2f} s per run, plus {t['warmup']:.1f} s of imports in each worker's first run")
    lines.append(f"summary: {result.summary}")
    return lines


def timing(result):
    """Where the workers' time went, over the tasks run now, each timed by its worker's clock:
    `tasks` is their seconds summed over the workers (so it may exceed the wall time); `training`
    what they added to their runs' wall_time (not a resumed run's earlier attempts); `overhead`
    the rest of a task (model and file set-up, closing the file, the final-state NPZ, the summary
    read), the median over the tasks after each worker's first; `warmup` what a worker's first task
    paid beyond that, its lazy imports (0 when every worker ran a single task: nothing to compare)."""
    import statistics
    done = [r for r in result.results.values() if "task_time" in r]
    if not done:
        return None
    overhead = {r["name"]: r["task_time"] - r["trained"] for r in done}
    first = {}
    for r in done:                       # results are in order of completion, one task at a time per worker
        first.setdefault(r["pid"], r["name"])
    later = [overhead[r["name"]] for r in done if r["name"] not in first.values()]
    median = statistics.median(later or list(overhead.values()))
    warmup = statistics.mean(overhead[n] for n in first.values()) - median if later else 0.0
    return {"training": sum(r["trained"] for r in done), "tasks": sum(r["task_time"] for r in done),
            "overhead": median, "warmup": max(warmup, 0.0)}
