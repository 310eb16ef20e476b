"""dynamics.open: a run file as DataFrames, verdicts and figures, checked against h5py's own
reading of the same file and against what `dynamics info` and `dynamics plot` write."""
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

import dynamics
from analysis.synthetic import write_run
from analysis.verdicts import Verdict
from dynamics.cli import main
from tasks.errors import InputError

SMALL = ["--n-hidden", "8", "--batch-size", "8", "--eval-batch-size", "100", "--min-length", "20",
         "--max-length", "30", "--quiet"]


def train(out, name, *args):
    main(["train", *args, "--out-dir", str(out), "--name", name])
    return out / f"{name}.h5"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two real runs: a GRU on a synthetic task (one part) and a 2-layer LSTM language model
    (two parts, the lower one under /check/layers)."""
    out = tmp_path_factory.mktemp("runs")
    gru = train(out, "gru", "--task", "mem", "--cell", "gru", "--max-iters", "40", "--check-freq", "10", *SMALL)
    lstm = train(out, "lstm", "--task", "text", "--cell", "lstm", "--n-layers", "2", "--n-hidden", "8",
                 "--min-length", "16", "--max-length", "16", "--batch-size", "4", "--eval-batch-size", "256",
                 "--sample-chars", "5", "--max-iters", "6", "--check-freq", "3", "--quiet")
    return {"gru": gru, "lstm": lstm}


@pytest.fixture(params=["gru", "lstm"])
def path(request, runs):
    return runs[request.param]


def has_data(fig):
    return isinstance(fig, Figure) and any(ax.has_data() for ax in fig.axes)


def test_tables_are_the_datasets_of_the_file(path):
    run = dynamics.open(path)
    with h5py.File(path, "r") as f:
        it = {k: d[:] for k, d in f["iter"].items()}
        ck = {k: d[:] for k, d in f["check"].items() if isinstance(d, h5py.Dataset) and d.ndim == 1}
        attrs = dict(f.attrs)
    n, k = len(it["loss"]), len(ck["iter"])
    assert run.iters.index.name == "update" and list(run.iters.index) == list(range(1, n + 1))
    assert set(run.iters.columns) == set(it)
    for col, values in it.items():
        assert np.array_equal(run.iters[col].to_numpy(), values, equal_nan=True), col
    assert run.checks.index.name == "update" and list(run.checks.index) == ck["iter"].astype(int).tolist()
    assert set(run.checks.columns) == set(ck)
    for col, values in ck.items():
        assert np.array_equal(run.checks[col].to_numpy(), values, equal_nan=True), col
    assert run.name == attrs["name"] and run.status == attrs["status"] == "finished"
    assert (run.family, run.cell, run.task) == (attrs["family"], attrs["cell"], attrs["task"])
    assert run.config == json.loads(attrs["config"]) and run.attrs["schema"] == "dynamics-run/1"
    assert repr(run) == f"RecordedRun({attrs['name']!r}: finished, {n} updates, {k} checks)"


def test_gradients_of_every_part(path):
    run = dynamics.open(path)
    with h5py.File(path, "r") as f:
        parts = json.loads(f.attrs["parts"])
        groups = {p: f["check"] if p == parts[-1] else f[f"check/layers/{p}"] for p in parts}
        grad_time = {p: g["grad_time"][:] for p, g in groups.items()}
        hists = {p: {q: (g["hist"][q][:], g["hist"][f"{q}_edges"][:])
                     for q in g["hist"] if not q.endswith("_edges")} for p, g in groups.items()}
    assert list(run.grad_time) == parts               # the input side first, the main part last
    for p in parts:
        assert np.array_equal(run.grad_time[p], grad_time[p], equal_nan=True), p
        assert run.grad_time[p].shape[0] == len(run.checks)
        assert set(run.histograms[p]) == set(hists[p]) and "log10_grad" in hists[p]
        for q, (counts, edges) in hists[p].items():
            assert np.array_equal(run.histograms[p][q][0], counts), (p, q)
            assert np.array_equal(run.histograms[p][q][1], edges), (p, q)


def test_verdicts_and_info_are_those_of_dynamics_info(path, capsys):
    run = dynamics.open(path)
    main(["info", str(path)])
    out = capsys.readouterr().out
    assert run.info() == out.rstrip("\n")
    printed = out.split("\nverdicts\n")[1].splitlines()
    assert [v.text for v in run.verdicts] == [line.removeprefix("  - ") for line in printed]
    assert run.verdicts and all(isinstance(v, Verdict) for v in run.verdicts)


def test_every_figure_draws_data_and_is_one_dynamics_plot_writes(runs, tmp_path, capsys):
    run = dynamics.open(runs["gru"])
    main(["plot", str(runs["gru"]), "-o", str(tmp_path), "--dpi", "20"])
    written = [os.path.basename(p) for p in capsys.readouterr().out.split()]
    assert written == [f"gru_{name}.png" for name in run.figures]
    assert {"dashboard", "training", "grad_time", "grad_hist"} <= set(run.figures)
    for name in run.figures:
        fig = run.plot(name)
        assert has_data(fig), name
        plt.close(fig)
    fig = run.plot()                              # the dashboard; a notebook shows its PNG
    assert fig.get_suptitle() and fig._repr_png_().startswith(b"\x89PNG\r\n\x1a\n")
    plt.close(fig)


def test_the_stacked_run_draws_its_figures(runs):
    run = dynamics.open(runs["lstm"])
    assert {"dashboard", "gates", "saturation"} <= set(run.figures)
    for name in run.figures:
        fig = run.plot(name)
        assert has_data(fig), name
        plt.close(fig)


def test_a_figure_it_does_not_have_is_one_line_naming_those_it_has(runs):
    run = dynamics.open(runs["gru"])
    with pytest.raises(InputError) as e:
        run.plot("gradtime")
    msg = str(e.value)
    assert "\n" not in msg and "'gradtime'" in msg and "did you mean 'grad_time'" in msg
    assert msg.endswith("this run has: " + ", ".join(run.figures))
    with pytest.raises(InputError) as e:                # a figure of another kind of run
        run.plot("attention_maps")
    assert "no data for the figure 'attention_maps'" in str(e.value) and "grad_time" in str(e.value)


def test_a_path_that_is_no_run_is_one_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        dynamics.open(tmp_path / "missing.h5")
    (tmp_path / "notes.h5").write_text("not hdf5")
    with pytest.raises(InputError, match="not an HDF5 file"):
        dynamics.open(tmp_path / "notes.h5")


def test_the_final_state_npz(runs):
    run = dynamics.open(str(runs["gru"]).replace(".h5", "_final_state.npz"))
    with np.load(str(runs["gru"]).replace(".h5", "_final_state.npz")) as z:
        g_t, norms = z["g_t"], z["gradient_norm"]
    assert np.array_equal(run.iters["grad_norm"].to_numpy(), norms)
    assert np.array_equal(run.grad_time["0"][-1], g_t)
    fig = run.plot()
    assert has_data(fig)
    plt.close(fig)


def test_refresh_sees_a_resumed_run_grow(tmp_path):
    args = ["--task", "mem", "--cell", "gru", "--check-freq", "5", *SMALL]
    path = train(tmp_path, "r", "--max-iters", "10", *args)
    run = dynamics.open(path)
    assert (len(run.iters), len(run.checks)) == (10, 2)
    first = run.iters.copy()
    train(tmp_path, "r", "--max-iters", "20", "--resume", *args)
    assert run.refresh() is run
    with h5py.File(path, "r") as f:
        loss, checks = f["iter/loss"][:], f["check/iter"][:]
    assert (len(run.iters), len(run.checks)) == (20, 4)
    assert np.array_equal(run.iters["loss"].to_numpy(), loss)
    assert list(run.checks.index) == checks.astype(int).tolist() == [5, 10, 15, 20]
    assert run.iters.iloc[:10].equals(first)
    assert run.grad_time["0"].shape[0] == 4


# a notebook in another process: reads a file still being written, without torch
READER = """
import os, sys, time
import dynamics
run = dynamics.open(sys.argv[1])
print(run.status, len(run.iters), flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.05)
run.refresh()
print(len(run.iters), len(run.checks), flush=True)
run.plot(); run.plot(run.figures[-1]); run.info(); run.verdicts
print("torch" in sys.modules, flush=True)
"""


def test_a_run_being_written_without_torch(tmp_path):
    path, go = tmp_path / "live.h5", tmp_path / "go"
    f = write_run(path, status="running", swmr=True, n_iter=200, check_freq=20, n_hidden=8,
                  min_length=20, max_length=40, batch=4)
    try:
        reader = subprocess.Popen([sys.executable, "-c", READER, str(path), str(go)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = reader.stdout.readline().split()
        for d in f["iter"].values():                  # the writer appends five updates
            d.resize(d.shape[0] + 5, axis=0)
            d[-5:] = 1.0
        f.flush()
        go.touch()
        out, err = reader.communicate(timeout=60)
    finally:
        f.close()
    assert reader.returncode == 0, err
    assert first == ["running", "200"]
    assert out.split() == ["205", "10", "False"]
