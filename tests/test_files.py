"""Run files under contention and from elsewhere: two writers of one name, damaged files,
checkpoints that carry pickled objects."""
import subprocess
import sys
import time

import h5py
import pytest
import torch

from dynamics.cli import main

TINY = dict(task="torder", n_hidden=8, batch_size=5, eval_batch_size=40, chunk_batch_size=20, check_freq=5,
            min_length=10, max_length=14, init="smart_tanh")


def flags(out, name, max_iters):
    return ["train", "--quiet", "--name", name, "--out-dir", str(out), "--max-iters", str(max_iters),
            *[f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]]


def started_together(tmp_path, args, n=2, step_sleep=0.0):
    """n processes that load everything, wait at one barrier, then run `dynamics` with `args`."""
    go = tmp_path / "go"
    code = ("import sys, time, pathlib\nimport dynamics.train as t\nfrom dynamics.cli import main\n"
            f"step = t.Run.step\nt.Run.step = lambda self: (time.sleep({step_sleep}), step(self))[1]\n"
            "pathlib.Path(sys.argv[1]).touch()\n"
            f"while not pathlib.Path({str(go)!r}).exists():\n    time.sleep(0.002)\n"
            f"main({args!r})\n")
    procs = []
    for i in range(n):
        procs.append(subprocess.Popen([sys.executable, "-c", code, str(tmp_path / f"ready{i}")],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    poll_until(lambda: all((tmp_path / f"ready{i}").exists() for i in range(n)), procs)
    go.touch()
    return procs


def poll_until(condition, procs=(), timeout=120):
    deadline = time.monotonic() + timeout
    while not condition():
        for p in procs:
            assert p.poll() is None, f"a process ended early: {p.communicate()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def checks_in(path):
    try:
        with h5py.File(path, "r", libver="latest", swmr=True) as f:
            return f["check/iter"].shape[0]
    except (OSError, KeyError):
        return 0


def test_two_runs_of_one_name_one_wins(tmp_path):
    out = tmp_path / "runs"
    procs = started_together(tmp_path, flags(out, "race", 60), step_sleep=0.01)
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 2], results
    winner = next(r for r in results if r[0] == 0)
    loser = next(r for r in results if r[0] == 2)
    assert loser[2].strip().splitlines() == [
        f"error: run file {str(out / 'race.h5')!r} is being written by another process: wait for it to end, "
        "or give this run another name"]
    assert "race.h5: finished" in winner[1]
    with h5py.File(out / "race.h5", "r") as f:
        assert f.attrs["status"] == "finished" and f["check/iter"][:].tolist() == list(range(5, 61, 5))
    assert sorted(p.name for p in out.iterdir()) == ["race.h5", "race_checkpoint.pt", "race_final_state.npz"]


def test_resume_of_a_file_being_written_is_refused(tmp_path, capsys):
    out = tmp_path / "runs"
    (writer,) = started_together(tmp_path, flags(out, "busy", 60), n=1, step_sleep=0.02)
    poll_until(lambda: checks_in(out / "busy.h5") >= 2, [writer])
    for extra in (["--resume"], ["--force"], []):
        with pytest.raises(SystemExit) as e:
            main(flags(out, "busy", 60) + extra)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is being written by another process" in err[0]
    assert writer.wait(timeout=300) == 0, writer.communicate()
    with h5py.File(out / "busy.h5", "r") as f:
        assert f.attrs["status"] == "finished" and f["check/iter"].shape[0] == 12


# -- damaged files and untrusted checkpoints ----------------------------------------------------

class Planted:
    """An object whose unpickling creates a file: what a hostile checkpoint could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def one_line_exit_2(capsys, args):
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1, err
    return err[0]


@pytest.fixture
def finished(tmp_path):
    """A finished run of 20 updates (checks every 5); --resume with 30 would continue it."""
    out = tmp_path / "runs"
    main(flags(out, "r", 20))
    return out / "r.h5", out / "r_checkpoint.pt"


def test_truncated_checkpoint_refused_and_nothing_touched(finished, capsys):
    run, ckpt = finished
    ckpt.write_bytes(ckpt.read_bytes()[:ckpt.stat().st_size // 2])
    before = run.read_bytes(), ckpt.read_bytes()
    err = one_line_exit_2(capsys, flags(run.parent, "r", 30) + ["--resume"])
    assert repr(str(ckpt)) in err and "is damaged" in err and "--force" in err
    assert (run.read_bytes(), ckpt.read_bytes()) == before


def test_truncated_run_file_refused_and_nothing_touched(finished, capsys):
    run, ckpt = finished
    run.write_bytes(run.read_bytes()[:run.stat().st_size // 2])
    before = run.read_bytes(), ckpt.read_bytes()
    err = one_line_exit_2(capsys, flags(run.parent, "r", 30) + ["--resume"])
    assert repr(str(run)) in err and "is damaged" in err and "--force" in err
    assert (run.read_bytes(), ckpt.read_bytes()) == before


def test_checkpoint_carrying_a_pickled_object_refused(finished, capsys, tmp_path):
    run, ckpt = finished
    marker = tmp_path / "planted"
    state = torch.load(ckpt, weights_only=True)
    torch.save({**state, "note": Planted(marker)}, ckpt)
    err = one_line_exit_2(capsys, flags(run.parent, "r", 30) + ["--resume"])
    assert repr(str(ckpt)) in err and "refused" in err and "pickled objects" in err
    assert not marker.exists()
    torch.load(ckpt, weights_only=False)          # what the old loading did: the object ran
    assert marker.exists()


def test_sample_refuses_a_planted_best_checkpoint(tmp_path, capsys):
    out = tmp_path / "runs"
    main(["train", "--quiet", "--task", "text", "--name", "t", "--out-dir", str(out), "--n-hidden", "16",
          "--min-length", "16", "--max-length", "16", "--batch-size", "4", "--max-iters", "4", "--check-freq", "2",
          "--eval-batch-size", "256", "--sample-chars", "5"])
    best = out / "t_best.pt"
    marker = tmp_path / "planted"
    torch.save({**torch.load(best, weights_only=True), "note": Planted(marker)}, best)
    err = one_line_exit_2(capsys, ["sample", str(out / "t.h5"), "-n", "5"])
    assert repr(str(best)) in err and "refused" in err and "t_checkpoint.pt" in err
    assert not marker.exists()
    best.unlink()                                  # the advice: without it, the last checkpoint is used
    main(["sample", str(out / "t.h5"), "-n", "5", "--prompt", "a"])
    assert len(capsys.readouterr().out) >= 6
