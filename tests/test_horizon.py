"""The gradient horizon (dynamics/probes/horizon.py) against direct counts: a closed form on a
linear RNN whose g_t halves at every step back, and a plain loop over a run file's g_t rows."""
import math
import time

import h5py
import numpy as np
import pytest
import torch

from analysis.read import load
from analysis.verdicts import verdicts
from dynamics import config as cfg
from dynamics.probes.horizon import horizon, steps_back
from dynamics.train import Run, train


def count_back(row, ratio):
    """The horizon by a plain loop: the row's last finite step is the loss step."""
    last = max(t for t in range(len(row)) if math.isfinite(row[t]))
    g0 = row[last]
    for k in range(1, last + 1):
        if row[last - k] < ratio * g0:
            return k
    return last + 1


def test_horizon_of_a_geometric_decay_is_the_closed_form():
    g = 0.5 ** np.arange(40.0)[::-1]                          # g at the last step 1, halving back
    back = steps_back(np.concatenate([g, [np.nan] * 5]))      # NaN beyond the batch's steps
    assert back[0] == 1 and len(back) == 40
    assert horizon(back, 1e-3) == math.ceil(math.log(1e3, 2))   # 0.5^10 < 1e-3 <= 0.5^9
    assert horizon(back, 1e-6) == math.ceil(math.log(1e6, 2))
    assert horizon(back[:8], 1e-3) == 8                        # never that far: all the steps
    assert math.isnan(horizon(np.zeros(5), 1e-3))              # nothing at the loss step
    assert steps_back(g, "end")[0] == g[0]                     # aligned on the end: row 0 is the loss


def test_a_linear_rnn_that_halves_its_gradient_reaches_back_ten_steps(tmp_path):
    """W_hh = 0.5·I, linear units, the loss at the last step: ∂L/∂h_t = 0.5^(T−1−t) ∂L/∂h_(T−1)."""
    c = cfg.make(dict(task="add", cell="rnn", activation="linear", n_hidden=6, batch_size=4, min_length=40,
                      max_length=40, eval_batch_size=8, chunk_batch_size=8, check_freq=1, max_iters=1,
                      out_dir=str(tmp_path)))
    run = Run(c)
    with torch.no_grad():
        run.model.layers[0].W_h.copy_(0.5 * torch.eye(6))
    T = run.step().hidden.shape[0]
    _, row, parts = run.check(time.perf_counter())
    assert (row["horizon_1e3"], row["horizon_1e6"], row["horizon_steps"]) == (10, 20, T)


def test_recorded_horizon_equals_a_direct_count_of_the_recorded_g_t(tmp_path):
    c = cfg.make(dict(task="torder", n_hidden=8, batch_size=5, eval_batch_size=20, chunk_batch_size=20,
                      check_freq=5, min_length=30, max_length=40, max_iters=20, init="basic_tanh",
                      out_dir=str(tmp_path), name="h"))
    path = train(c, progress=False)
    with h5py.File(path, "r") as f:
        rows, h3, h6 = f["check/grad_time"][:], f["check/horizon_1e3"][:], f["check/horizon_1e6"][:]
        steps = f["check/horizon_steps"][:]
    assert len(rows) == 4
    for row, a, b, n in zip(rows, h3, h6, steps):
        assert (a, b) == (count_back(row, 1e-3), count_back(row, 1e-6))
        assert n == np.isfinite(row).sum()
    text = " ".join(v.text for v in verdicts(load(path)))
    assert int(h3[-1]) < steps[-1] and f"reaches back {int(h3[-1])} steps of {int(steps[-1])}" in text


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_end_aligned_parts_count_from_the_last_token(tmp_path, cell):
    """A classifier's g_t rows are indexed by steps before each sequence's last token."""
    c = cfg.make(dict(task="names", cell=cell, n_hidden=8, embedding=4, batch_size=8, eval_batch_size=16,
                      check_freq=2, max_iters=2, out_dir=str(tmp_path), name=cell))
    path = train(c, progress=False)
    with h5py.File(path, "r") as f:
        row, h3 = f["check/grad_time"][-1], f["check/horizon_1e3"][-1]
    back = row[np.isfinite(row)]
    expect = next((k for k in range(1, len(back)) if back[k] < 1e-3 * back[0]), len(back))
    assert h3 == expect


def test_the_horizon_is_drawn_and_every_probe_names_panels_that_exist(tmp_path):
    from analysis.figures import FIGURE_FUNCTIONS, dashboard_layout
    from analysis.panels import PANELS
    from analysis.synthetic import write_run
    from dynamics.probes import PROBES
    for probe in PROBES:
        assert set(probe.panels) <= set(PANELS), probe.__name__
    snap = load(write_run(tmp_path / "r.h5", decay=(0.2, 0.3)))
    assert "horizon" in [k for row in dashboard_layout(snap) for k in row]
    fig = FIGURE_FUNCTIONS["horizon"](snap)
    ax = fig.axes[0]
    k = np.flatnonzero(np.isfinite(snap.check["horizon_1e3"]))[-1]
    h, n = int(snap.check["horizon_1e3"][k]), int(snap.check["horizon_steps"][k])
    assert h < n and ax.get_title() == f"Gradient horizon: {h} of {n} steps (last check)"
    assert ax.get_ylabel() == "steps back from the loss step"
