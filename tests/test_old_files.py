"""A run file written before the format had one declaration and before the gradient horizon
(tests/data/format-1/) opens, draws, and resumes, the horizon NaN at its earlier checks."""
import shutil
from pathlib import Path

import h5py
import numpy as np

from analysis.figures import plot_run
from analysis.info import info_text
from analysis.read import load
from dynamics import config as cfg
from dynamics.train import train

OLD = Path(__file__).parent / "data" / "format-1"
KEYS = dict(task="torder", n_hidden=8, batch_size=5, eval_batch_size=20, chunk_batch_size=20, min_length=10,
            max_length=14, check_freq=5, init="smart_tanh", name="old")


def test_an_old_run_file_opens_and_draws(tmp_path):
    snap = load(OLD / "old.h5")
    assert snap.status == "finished" and snap.n_check == 2 and "horizon_1e3" not in snap.check
    assert "reaches back" not in info_text(snap)
    written = {Path(p).name for p in plot_run(snap, tmp_path)}
    assert {"old_dashboard.png", "old_grad_time.png", "old_spectrum.png"} <= written
    assert "old_horizon.png" not in written          # no data, no figure


def test_an_old_run_file_resumes_with_the_new_columns(tmp_path, monkeypatch):
    (tmp_path / "runs").mkdir()
    for name in ("old.h5", "old_checkpoint.pt"):
        shutil.copy(OLD / name, tmp_path / "runs" / name)
    with h5py.File(OLD / "old.h5", "r") as f:
        before = {k: f[f"check/{k}"][:] for k in ("iter", "valid_loss", "rho")}
    monkeypatch.chdir(tmp_path)
    path = train(cfg.make({**KEYS, "max_iters": 20}), resume=True, progress=False)
    with h5py.File(path, "r") as f:
        assert list(f["check/iter"][:]) == [5, 10, 15, 20]
        for k, v in before.items():
            assert np.array_equal(f[f"check/{k}"][:2], v)
        h3 = f["check/horizon_1e3"][:]
        assert np.isnan(h3[:2]).all() and np.isfinite(h3[2:]).all()
    assert "reaches back" in info_text(load(path))
