"""A sweep on a real Dask cluster (a `dask scheduler` and two `dask worker` processes on
127.0.0.1), one worker killed with SIGKILL while its run trains: every run still ends, with the
numbers of a serial run of its point."""
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from dynamics import sweep as sw
from dynamics.train import train

BIN = Path(sys.executable).parent
SPEC = """name = "lost"
[set]
task = "torder"
n_hidden = 32
batch_size = 10
min_length = 20
max_length = 30
lr = 0.01
max_iters = 300
check_freq = 30
eval_batch_size = 50
chunk_batch_size = 50
[grid]
seed = [1, 2, 3]
"""
TIMEOUT = 300   # seconds for any one wait on a loaded machine; each wait polls


def poll(condition, what, procs=()):
    deadline = time.monotonic() + TIMEOUT
    while True:
        value = condition()
        if value:
            return value
        for p in procs:
            assert p.poll() is None, f"{what}: a process ended early with {p.returncode}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def training(path):
    """Whether a run file is being written and holds at least one check."""
    try:
        with h5py.File(path, "r", libver="latest", swmr=True) as f:
            return f.attrs["status"] == "running" and f["check/iter"].shape[0] >= 1
    except (OSError, KeyError):
        return False


def datasets(f):
    """Every dataset of an open run file: /iter, /check (g_t, histograms), /start, /final."""
    out = {}
    f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def scheduler_address(path):
    """The address in the scheduler's file, once the file is whole (None before)."""
    try:
        return json.loads(path.read_text())["address"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture
def cluster(tmp_path):
    """A scheduler and two single-threaded workers without nannies (a killed worker stays dead)."""
    address_file = tmp_path / "scheduler.json"
    common = ["--no-dashboard", "--host", "127.0.0.1"]
    procs = [subprocess.Popen([BIN / "dask", "scheduler", "--port", "0", "--scheduler-file", address_file, *common],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        poll(lambda: scheduler_address(address_file), "the scheduler", procs)
        address = scheduler_address(address_file)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        workers = [subprocess.Popen([BIN / "dask", "worker", address, "--nthreads", "1", "--no-nanny",
                                     "--name", f"w{i}", *common], cwd=tmp_path, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(2)]
        procs += workers
        yield address, workers
    finally:
        # the workers first, then the scheduler they report to: stopped all at once, one of them
        # sometimes took the whole 30 s below to end on a loaded machine
        for group in (procs[1:], procs[:1]):
            for p in group:
                if p.poll() is None:
                    p.terminate()
            for p in group:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def test_a_worker_lost_mid_sweep(tmp_path, cluster):
    address, workers = cluster
    spec = tmp_path / "lost.toml"
    spec.write_text(SPEC)
    out = tmp_path / "runs"
    from dask.distributed import Client
    with Client(address, timeout="60s") as client:
        poll(lambda: len(client.scheduler_info()["workers"]) == 2, "two workers")
    sweep = subprocess.Popen([BIN / "dynamics", "sweep", spec, "--scheduler", address, "--out-dir", out],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    points = sw.expand(sw.load_spec(spec), out)
    # both workers are training: kill one of them outright
    busy = poll(lambda: [p.name for p in points if training(p.config.run_path)][:2] if
                sum(training(p.config.run_path) for p in points) == 2 else None, "two runs training", [sweep])
    workers[0].send_signal(signal.SIGKILL)
    workers[0].wait(timeout=30)
    output, _ = sweep.communicate(timeout=TIMEOUT)
    assert sweep.returncode == 0, output
    # one line for the lost worker, naming the run it was training (and any queued on it)
    lost = re.findall(r"^worker tcp://127\.0\.0\.1:\d+ lost: runs? (.+) requeued$", output, flags=re.M)
    assert len(lost) == 1, output
    requeued = lost[0].split(", ")
    assert set(requeued) & set(busy) and set(requeued) <= {p.name for p in points}
    assert f"{len(points)} run now: 0 solved, {len(points)} finished, 0 interrupted, 0 failed" in output

    rows = {r["name"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    assert set(rows) == {p.name for p in points}
    for p in points:
        reference = train(p.config.replace(out_dir=str(tmp_path / "serial")), progress=False)
        with h5py.File(p.config.run_path, "r") as f, h5py.File(reference, "r") as g:
            assert f.attrs["status"] == "finished"
            assert f["iter/loss"].shape == (300,) and f["check/iter"][:].tolist() == list(range(30, 301, 30))
            ours, serial = datasets(f), datasets(g)
            assert ours.keys() == serial.keys()
            for name in ours:
                if name not in ("iter/step_time", "check/wall_time", "check/cpu_time"):
                    assert np.array_equal(ours[name], serial[name], equal_nan=True), (p.name, name)
        summary = sw.summarize(p.config.run_path)
        row = rows[p.name]
        assert row["status"] == "finished" and int(row["iterations"]) == 300
        assert float(row["final_valid_loss"]) == pytest.approx(summary["final_valid_loss"], rel=1e-12)
        assert float(row["max_grad_norm"]) == pytest.approx(summary["max_grad_norm"], rel=1e-12)
