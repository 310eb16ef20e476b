"""Learning-rate schedules against their closed forms, recorded per update, resumed exactly."""
import math

import h5py
import numpy as np
import pytest

from dynamics import config as cfg
from dynamics.cli import main
from dynamics.schedule import Schedule
from dynamics.train import train

TINY = dict(task="torder", n_hidden=8, batch_size=5, eval_batch_size=40, chunk_batch_size=20, check_freq=5,
            min_length=10, max_length=14, max_iters=30, init="smart_tanh", lr=0.1)


def test_rates_equal_the_closed_forms():
    c = cfg.make({**TINY, "lr_schedule": "step", "lr_step": 7, "lr_gamma": 0.5, "warmup": 4})
    s = Schedule(c)
    assert [s.rate(t) for t in (1, 2, 4, 6, 7, 14, 20)] == pytest.approx(
        [0.025, 0.05, 0.1, 0.1, 0.05, 0.025, 0.025])
    c = cfg.make({**TINY, "lr_schedule": "cosine"})
    s = Schedule(c)
    for t in (1, 10, 15, 29, 30):
        assert s.rate(t) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * t / 30)))
    assert Schedule(cfg.make(TINY)).rate(17) == 0.1


def test_plateau_decays_after_patience_checks_without_a_new_best():
    s = Schedule(cfg.make({**TINY, "lr_schedule": "plateau", "lr_patience": 2, "lr_gamma": 0.5}))
    rates = []
    for loss in (1.0, 0.9, 0.95, 0.92, 0.91, 0.85, 0.86, 0.87):
        s.after_check(loss)
        rates.append(s.rate(100))
    assert rates == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025])


def read(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in ("iter/lr", "iter/loss", "check/valid_loss")}


@pytest.mark.parametrize("schedule", ["cosine", "plateau"])
def test_the_applied_rate_is_recorded_and_a_resumed_run_is_identical(tmp_path, schedule):
    keys = {"lr_schedule": schedule, "warmup": 6, "lr_patience": 1, "lr_gamma": 0.5}
    full = read(train(cfg.make({**TINY, **keys, "out_dir": str(tmp_path / "a"), "name": "r"}), progress=False))
    if schedule == "cosine":
        s = Schedule(cfg.make({**TINY, **keys}))
        assert full["iter/lr"] == pytest.approx([s.rate(t) for t in range(1, 31)])
    else:
        assert full["iter/lr"][0] == pytest.approx(0.1 / 6) and len(set(full["iter/lr"][6:])) > 1

    def stop(run, row):
        if run.checks == 3:
            raise KeyboardInterrupt
    c = cfg.make({**TINY, **keys, "out_dir": str(tmp_path / "b"), "name": "r"})
    train(c, progress=False, after_check=stop)
    resumed = read(train(c, resume=True, progress=False))
    for k in full:
        assert np.array_equal(full[k], resumed[k]), k


@pytest.mark.parametrize("key, value", [("lr_schedule", "linear"), ("lr_gamma", "0"), ("lr_gamma", "1.5"),
                                        ("warmup", "-1"), ("lr_step", "0"), ("lr_patience", "0")])
def test_bad_schedule_values_are_refused_before_a_file_is_written(tmp_path, capsys, key, value):
    with pytest.raises(SystemExit) as e:
        main(["train", "--task", "torder", "--out-dir", str(tmp_path), "--set", f"{key}={value}"])
    assert e.value.code == 2
    assert f"{key}=" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_a_run_file_from_before_the_schedule_keys_resumes(tmp_path):
    """Keys that a run file's recorded config lacks ran at their defaults."""
    import json
    c = cfg.make({**TINY, "out_dir": str(tmp_path), "name": "old", "max_iters": 10})
    path = train(c, progress=False)
    with h5py.File(path, "a") as f:
        recorded = json.loads(f.attrs["config"])
        for key in ("lr_schedule", "warmup", "lr_step", "lr_gamma", "lr_patience"):
            del recorded[key]
        f.attrs["config"] = json.dumps(recorded)
    train(c.replace(max_iters=20), resume=True, progress=False)
    assert len(read(path)["iter/lr"]) == 20


def test_a_sweep_reruns_a_run_file_from_before_the_schedule_keys(tmp_path):
    """A sweep folder written before a key existed is not a different config: the run is skipped."""
    import json

    from dynamics import sweep as sw
    c = cfg.make({**TINY, "out_dir": str(tmp_path), "name": "old", "max_iters": 10})
    path = train(c, progress=False)
    with h5py.File(path, "a") as f:
        recorded = json.loads(f.attrs["config"])
        del recorded["lr_schedule"], recorded["warmup"]
        f.attrs["config"] = json.dumps(recorded)
    assert sw.plan(sw.Point("old", {}, c)) == "skip"
    with pytest.raises(cfg.InputError, match="lr=0.1"):
        sw.plan(sw.Point("old", {}, c.replace(lr=0.2)))   # a real difference is still an error
