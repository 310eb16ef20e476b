"""Shared fixtures. `backend`: a test that takes it runs once on the Python loops and once on the
compiled ones; the compiled run is skipped only where no C++ toolchain is installed (with one, a
failed build fails the test: backend=compiled raises). `refused`: bad input to `dynamics train`.

The suite runs in parallel (`make test`: pytest-xdist, one worker process per core) as well as in
one process. The process that runs the session builds the compiled loops into their cache once, in
a process of its own started before any test (in parallel with the workers' start, or with the
collection of a one-process run, which waits for it before its first test): tests, workers and
their subprocesses then only load them. A build lock that a killed build left behind is removed
rather than waited on forever, as torch.utils.cpp_extension would."""
import collections
import gc
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dynamics.models import compiled
from dynamics.cli import main

STALE_LOCK_S = 300      # a build takes up to a minute: a lock file this old was left by a killed build
BUILD = ("import torch; from dynamics.models import compiled; compiled.use('compiled'); "
         "compiled.ops_for(torch.zeros(1))")
building = pytest.StashKey()


def _build_locks():
    """The lock files torch.utils.cpp_extension keeps in the build folders of the compiled loops
    (dynamics/models/compiled.py: one folder per version under $DYNAMICS_CACHE or ~/.cache/dynamics)."""
    root = Path(os.environ.get("DYNAMICS_CACHE") or Path.home() / ".cache" / "dynamics")
    return sorted(root.glob("dynamics_recurrence_*/lock"))


def _age(path):
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return None     # gone: released meanwhile


def _clear_stale_locks():
    """Wait for the build locks held now (another process building), at most until they are
    STALE_LOCK_S old; remove those still there then, which no live build holds."""
    for lock in _build_locks():
        said, start = False, time.monotonic()
        while (age := _age(lock)) is not None and age < STALE_LOCK_S:
            if not said and time.monotonic() - start > 5:
                print(f"conftest: waiting for another build to release {lock} (or for it to be "
                      f"{STALE_LOCK_S} s old)", file=sys.stderr, flush=True)
                said = True
            time.sleep(0.2)
        if age is not None:
            print(f"conftest: removing {lock}, a build lock {age:.0f} s old left by a killed build",
                  file=sys.stderr, flush=True)
            lock.unlink(missing_ok=True)


def _wait_for_build(config):
    proc = config.stash.get(building, None)
    if proc is not None:
        proc.wait()                 # a failed build fails the tests that need it, not the session
        del config.stash[building]


def pytest_configure(config):
    if hasattr(config, "workerinput"):          # a worker of pytest-xdist
        import torch
        torch.set_num_threads(1)                # a worker per core (training sets 1 anyway)
        return
    if config.option.help or compiled.missing_toolchain():
        return
    _clear_stale_locks()
    here = Path(compiled.__file__).parents[2]   # where the `dynamics` this session imports lives
    config.stash[building] = subprocess.Popen([sys.executable, "-c", BUILD], cwd=here,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def pytest_collection_finish(session):
    _wait_for_build(session.config)
    # What collection imported lives until the session ends: kept out of the garbage collector's
    # full passes, which would otherwise walk it again and again (16 s of a one-process run).
    gc.collect()
    gc.freeze()


def pytest_collection_modifyitems(config, items):
    """In the workers of `make test`, modules with fewest tests first: here those are the long
    ones (a cluster, a subprocess, a report), which then start early instead of keeping one worker
    busy after the other has finished (`--dist loadfile --no-loadscope-reorder` keeps this order;
    every worker collects the same). A module's tests keep their order."""
    if not hasattr(config, "workerinput"):
        return
    count = collections.Counter(item.nodeid.split("::")[0] for item in items)
    items.sort(key=lambda item: count[item.nodeid.split("::")[0]])   # stable


def pytest_unconfigure(config):
    _wait_for_build(config)


@pytest.fixture(params=["python", "compiled"])
def backend(request):
    if request.param == "compiled" and compiled.missing_toolchain():
        pytest.skip(f"the compiled loops cannot be built here: {compiled.missing_toolchain()}")
    compiled.use(request.param)
    yield request.param
    compiled.use("auto")


@pytest.fixture
def refused(tmp_path, capsys):
    """`refused(*args)` runs `dynamics train ARGS` as bad input: exit status 2, one line on stderr,
    nothing written; it returns that line."""
    def train(*args):
        with pytest.raises(SystemExit) as e:
            main(["train", *args, "--maxiters", "5", "--out-dir", str(tmp_path), "--quiet"])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2, err
        assert len(err.splitlines()) == 1, err
        assert list(tmp_path.iterdir()) == []
        return err
    return train


@pytest.fixture
def command(capsys):
    """command(*args) runs `dynamics ARGS` in this process: (exit status, stderr lines); its stdout
    is left in `command.out`."""
    def run(*args):
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code
        out = capsys.readouterr()
        run.out = out.out
        return code, out.err.strip().splitlines()
    return run
