"""The analysis package on synthetic run files written to the schema (analysis.synthetic)."""
import math
import os
import re
import struct
import subprocess
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from dynamics.cli import cli as dynamics_cli, main

from analysis import canvas, figures, stats, verdicts as V
from analysis.compare import figure_compare
from analysis.panels import gradients, theory
from analysis.read import load
from analysis.report import report_plan
from analysis.synthetic import write_npz, write_run

DPI = 30                                   # small images keep the tests fast
SMALL = dict(n_iter=200, check_freq=20, n_hidden=8, min_length=20, max_length=40, batch=4)


def png_size(path):
    with open(path, "rb") as fh:
        head = fh.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def assert_size(path, fig, dpi=DPI):
    """The PNG is figsize × dpi pixels (the renderer truncates, hence the one-pixel slack)."""
    w, h = fig.get_size_inches() * dpi
    pw, ph = png_size(path)
    assert abs(pw - w) <= 1 and abs(ph - h) <= 1, (path, (pw, ph), (w, h))
    assert os.path.getsize(path) > 2000, path


def cli(*args):
    return CliRunner().invoke(dynamics_cli, list(map(str, args)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs")
    return {
        "rnn": write_run(d / "rnn.h5", cell="rnn", alpha=2.0, **SMALL),
        "gru": write_run(d / "gru.h5", cell="gru", seed=1, **SMALL),
        "lstm": write_run(d / "lstm.h5", cell="lstm", n_layers=2, seed=2, **SMALL),
        "text": write_run(d / "lm.h5", cell="rnn", task="text", seed=3, **SMALL),
        "plain": write_run(d / "plain.h5", cell="rnn", clip="none", seed=4, **SMALL),
        "npz": write_npz(d / "old_final_state.npz", cell="gru"),
    }


# ------------------------------------------------------------------------------- reading

def test_load_reads_the_schema(runs):
    s = load(runs["gru"])
    assert s.name == "gru" and s.status == "finished" and s.cell == "gru" and s.task == "torder"
    assert s.config["n_hidden"] == 8 and s.config["clip"] == "rescale"
    assert s.n_iter == 200 and s.n_check == 10
    assert list(s.check_x) == list(range(20, 201, 20))
    assert s.grad_time.shape == (10, 40)
    assert s.gates == ["z", "r"]
    assert s.hists["log10_grad"].shape == (10, 120) and len(s.edges["log10_grad"]) == 121
    assert s.recurrent_matrix == "W_hh" and s.final_weights["W_hh"].shape == (8, 8)
    assert set(s.final_sample) == {"g", "h", "z", "r"}
    assert load(runs["lstm"]).gates == ["i", "f", "o"]
    assert load(runs["lstm"]).recurrent_matrix == "W_hc"
    assert load(runs["rnn"]).gates == []


def test_snapshot_cuts_every_array_to_the_shortest(tmp_path):
    path = write_run(tmp_path / "long.h5", **SMALL)
    with h5py.File(path, "a") as f:                 # one dataset a row ahead of the others
        for key in ("check/rho", "iter/loss"):
            ds = f[key]
            ds.resize(ds.shape[0] + 1, axis=0)
            ds[-1] = 99.0
        g = f["check/hist/saturation"]
        g.resize(g.shape[0] + 2, axis=0)
        f["check/valid_loss"].resize(9, axis=0)     # and one a row behind
    s = load(path)
    assert s.n_check == 9 and s.n_iter == 200
    for name, col in s.check.items():
        assert len(col) == 9, name
    for name, col in s.iter.items():
        assert len(col) == 200, name
    assert s.grad_time.shape[0] == 9
    assert all(h.shape[0] == 9 for h in s.hists.values())
    assert 99.0 not in s.check["rho"] and 99.0 not in s.iter["loss"]


# `dynamics info PATH` in a fresh process; reading a run file loads neither torch nor a figure.
READER = """
import sys
from dynamics.cli import main
try:
    main(["info", sys.argv[1]])
finally:
    print("torch loaded" if "torch" in sys.modules else "torch not loaded")
    print("figures loaded" if "matplotlib.figure" in sys.modules else "figures not loaded")
"""


def test_a_file_being_written_reads_in_another_process(tmp_path):
    path = tmp_path / "live.h5"
    f = write_run(path, status="running", swmr=True, **SMALL)
    try:
        loss = f["iter/loss"]                       # the writer appends after the reader starts
        loss.resize(loss.shape[0] + 5, axis=0)
        loss[-5:] = 1.0
        f.flush()
        out = subprocess.run([sys.executable, "-c", READER, str(path)],
                             capture_output=True, text=True, timeout=60)
    finally:
        f.close()
    assert out.returncode == 0, out.stderr
    assert "running (snapshot at iteration 200)" in out.stdout   # cut to the shortest /iter
    assert "torch not loaded" in out.stdout and "figures not loaded" in out.stdout


def test_stacked_layers_in_either_numbering(tmp_path):
    a = load(write_run(tmp_path / "a.h5", n_layers=2, decay=(0.1, 0.2), **SMALL))
    b = load(write_run(tmp_path / "b.h5", n_layers=2, decay=(0.1, 0.2), top_layer_unprefixed=True,
                       **SMALL))
    for s in (a, b):
        assert sorted(s.layers) == [0, 1]
        slopes = [stats.decay_fit(s.layers[l].grad_time[-1])[0] for l in (0, 1)]
        assert slopes[0] == pytest.approx(0.2, abs=0.01)        # layer 0: the input side
        assert slopes[1] == pytest.approx(0.1, abs=0.01)


def test_npz_gives_the_figures_it_can(runs):
    s = load(runs["npz"])
    assert s.source == "npz" and s.name == "old" and s.cell == "gru"
    assert s.n_check == 20 and s.check["rho"][-1] == pytest.approx(1.1)
    made = {name for name, fn in figures.FIGURE_FUNCTIONS.items() if fn(s) is not None}
    assert made == {"training", "grad_norm", "grad_time", "saturation", "gates", "spectrum"}
    assert figures.figure_dashboard(s) is not None


# ------------------------------------------------------------------------------- figures

@pytest.mark.parametrize("cell", ["rnn", "lstm"])       # GRU: test_plot_writes_dashboard_and_figures
def test_every_figure_renders(runs, cell, tmp_path):
    s = load(runs[cell])
    expected_none = {"rnn": {"gates"}, "gru": {"omega"}, "lstm": {"omega"}}[cell] | {"classification"}
    expected_none |= set(theory.FIGURES)    # diagnostics_level = full only (tests/test_theory.py)
    expected_none |= {"attention", "attention_maps"}    # a Transformer's only
    for name, fn in figures.FIGURE_FUNCTIONS.items():
        fig = fn(s)
        if name in expected_none:
            assert fig is None, name
            continue
        assert fig is not None, name
        assert_size(canvas.save(fig, tmp_path / f"{name}.png", dpi=DPI), fig)
    if cell == "lstm":
        assert "grad_time_layers" in figures.available_panels(s, ["grad_time_layers"])


def test_panels_without_data_are_left_out(tmp_path):
    s = load(write_run(tmp_path / "r.h5", clip="none", alpha=0.0, **SMALL))
    keys = [k for row in figures.dashboard_layout(s) for k in row]
    assert "omega" not in keys and "steps_in_past" not in keys and "gates" not in keys
    assert "grad_time_layers" not in keys
    assert {"valid_error", "grad_norm", "grad_hist", "grad_time", "rho", "eigenvalues"} <= set(keys)


def test_plot_writes_dashboard_and_figures(runs, tmp_path):
    out = tmp_path / "figs"
    result = cli("plot", runs["gru"], "-o", out, "--dpi", DPI)
    assert result.exit_code == 0, result.output
    names = ("training", "grad_norm", "grad_hist", "grad_time", "horizon", "saturation", "gates", "spectrum")
    assert set(os.listdir(out)) == {f"gru_{n}.png" for n in names + ("dashboard",)}
    s = load(runs["gru"])
    assert figures.figure(s, "omega") is None                     # no Ω recorded: no figure
    for name in names + ("dashboard",):                        # every PNG at figsize × dpi
        fig = figures.figure_dashboard(s) if name == "dashboard" else figures.FIGURE_FUNCTIONS[name](s)
        assert_size(out / f"gru_{name}.png", fig)


def test_compare_overlays_runs(runs, tmp_path):
    out = tmp_path / "cmp.png"
    result = cli("compare", runs["rnn"], runs["gru"], runs["lstm"], "-o", out, "--dpi", DPI)
    assert result.exit_code == 0, result.output
    assert png_size(out)[0] > 300
    fig = figure_compare([load(runs["rnn"]), load(runs["gru"])])
    assert len(fig.axes) == 6                     # error, 2 × gradient norm, ρ, histogram, g_t


# ------------------------------------------------------------------------------ verdicts

def _set(path, key, data):
    with h5py.File(path, "a") as f:
        f[key][...] = data


def test_vanishing_share_is_the_histogram_mass_below_minus_8(tmp_path):
    path = write_run(tmp_path / "v.h5", **SMALL)
    edges = np.linspace(-20, 10, 121)
    counts = np.zeros((10, 120), dtype=np.int64)
    centres = (edges[:-1] + edges[1:]) / 2
    counts[-1, np.flatnonzero(centres < -10)[:31]] = 2         # 62 counts in bins below -8
    counts[-1, np.flatnonzero((centres > -8) & (centres < 0))[:19]] = 2   # 38 between -8 and 0
    counts[:-1, 100] = 5
    _set(path, "check/hist/log10_grad", counts)
    s = load(path)
    v = V.vanishing(s)
    assert v.value == pytest.approx(0.62) and "62%" in v.text
    below = counts[-1][edges[1:] <= -8].sum() / counts[-1].sum()
    assert stats.share_below(counts[-1], edges, -8) == pytest.approx(below)
    band = counts[-1][(edges[:-1] >= -12) & (edges[1:] <= -8)].sum() / 100
    assert stats.share_between(counts[-1], edges, -12, -8) == pytest.approx(band)
    assert V.growing(s) is None                                # nothing above 0


def test_share_of_a_partly_covered_bin_is_proportional():
    edges = np.array([0.0, 0.02, 0.04, 0.06, 1.0])
    counts = np.array([10, 10, 10, 70])
    assert stats.share_below(counts, edges, 0.05) == pytest.approx(0.25)


def test_saturation_and_gate_verdicts(tmp_path):
    path = write_run(tmp_path / "s.h5", cell="gru", **SMALL)
    sat = np.zeros((10, 50), dtype=np.int64)
    sat[:, 0] = 35                                 # d in [0, 0.02): saturated
    sat[:, 1] = 0
    sat[:, 10] = 65
    _set(path, "check/hist/saturation", sat)
    gate = np.zeros((10, 50), dtype=np.int64)
    gate[:, 2] = 41                                # d in [0.02, 0.03)
    gate[:, 5] = 59                                # d in [0.05, 0.06): not below 0.05
    _set(path, "check/hist/gate_z", gate)
    s = load(path)
    assert V.saturated(s).value == pytest.approx(0.35) and "35%" in V.saturated(s).text
    assert V.gate(s, "z").value == pytest.approx(0.41) and "gate z" in V.gate(s, "z").text


def test_gradient_norm_numbers_from_known_iterations(tmp_path):
    path = write_run(tmp_path / "g.h5", **SMALL)
    g = np.full(200, 2.3)
    g[:50] = np.linspace(0.1, 1.0, 50)
    g[7] = 3.1e4
    g[9] = np.inf
    clipped = np.zeros(200)
    clipped[:82] = 1
    nonfinite = np.zeros(200)
    nonfinite[[9, 11, 13]] = 1
    _set(path, "iter/grad_norm", g)
    _set(path, "iter/clipped", clipped)
    _set(path, "iter/nonfinite", nonfinite)
    s = load(path)
    st = stats.grad_norm_stats(s)
    finite = g[np.isfinite(g)]
    assert st["max"] == 3.1e4 and st["median"] == pytest.approx(np.median(finite))
    assert st["share_clipped"] == pytest.approx(0.41) and st["n_nonfinite"] == 3
    assert V.clipped(s).text.startswith("clipped 41% of steps")
    e = V.exploding(s)
    assert e.value == 3.1e4 and "3.1e+04" in e.text and "median 2.3" in e.text
    assert V.nonfinite(s).text == "non-finite gradients in 3 steps"


def test_rho_from_start_and_final_weights(tmp_path):
    s = load(write_run(tmp_path / "r.h5", rho=(0.95, 1.21), **SMALL))
    start, end = stats.rho_start_end(s)
    assert start == pytest.approx(0.95, abs=1e-5) and end == pytest.approx(1.21, abs=1e-5)
    v = V.rho(s)
    assert v.value == pytest.approx(1.21, abs=1e-5) and v.text.startswith("ρ(W_hh) 0.95 → 1.21")


def test_decay_rate_is_the_slope_of_log10_g_t(tmp_path):
    path = write_run(tmp_path / "d.h5", **SMALL)
    gt = np.full((10, 40), np.nan)
    gt[:, :30] = 10.0 ** (-0.125 * (29 - np.arange(30)))
    _set(path, "check/grad_time", gt)
    v = V.decay_rate(load(path))
    assert v.value == pytest.approx(0.125) and "×0.75 per step" in v.text


def test_decay_rate_calls_a_nearly_constant_g_t_flat(tmp_path):
    path = write_run(tmp_path / "flat.h5", **SMALL)
    gt = np.full((10, 40), np.nan)
    gt[:, :30] = 10.0 ** (0.001 * (29 - np.arange(30)))      # grows ×1.0023 per step back
    _set(path, "check/grad_time", gt)
    v = V.decay_rate(load(path))
    assert v.value == pytest.approx(-0.001) and v.text.startswith("g_t flat through time: ×1.0023 per step back")
    assert gradients._fit_label(gt[0, :30], "fit")[0].startswith("fit: flat, ×1.0023 per step")


def test_stall_at_chance(tmp_path):
    path = write_run(tmp_path / "st.h5", **SMALL)
    _set(path, "check/valid_loss", np.full(10, math.log(4) + 0.001))
    assert V.stalled(load(path)).text.startswith("stalled at chance")


def test_a_failed_run_with_nothing_recorded(tmp_path):
    path = write_run(tmp_path / "f.h5", status="failed", **SMALL,
                     error="Traceback (most recent call last):\n  File x.py\nValueError: boom")
    with h5py.File(path, "a") as f:                 # failed before the first update
        for group in ("iter", "check"):
            for ds in f[group].values():
                if isinstance(ds, h5py.Dataset) and ds.maxshape[0] is None:
                    ds.resize(0, axis=0)
        del f["final"]
    s = load(path)
    assert s.n_iter == 0 and s.n_check == 0
    assert [v.text for v in V.verdicts(s)][0] == "failed: ValueError: boom"
    assert figures.dashboard_layout(s) == [["eigenvalues"]]       # only the start weights
    assert [n for n, fn in figures.FIGURE_FUNCTIONS.items() if fn(s) is not None] == ["spectrum"]
    assert_size(canvas.save(figures.figure_dashboard(s), tmp_path / "d.png"), figures.figure_dashboard(s),
                dpi=canvas.DPI)
    result = cli("info", path)
    assert result.exit_code == 0 and "failed: ValueError: boom" in result.output


# ---------------------------------------------------------------------- info and report

def test_info_prints_config_figures_and_verdicts(runs):
    result = cli("info", runs["gru"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "status    finished" in out and "n_hidden" in out and "= 8" in out
    assert "iterations done" in out and "ρ(W_hh)" in out and "verdicts" in out
    assert "clipped" in out


def test_report_pages_and_tables(runs, tmp_path):
    out = tmp_path / "rep" / "report.pdf"
    paths = [runs["plain"], runs["gru"], runs["text"]]
    result = cli("report", *paths, "-o", out)
    assert result.exit_code == 0, result.output
    # 1 summary page, 3 dashboards cut into pages, 1 comparison (two torder runs), 1 language-model table
    pdf = out.read_bytes()
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
    from analysis.figures import n_dashboard_pages
    dashboards = sum(n_dashboard_pages(load(p)) for p in paths)
    assert dashboards > 3                                       # a dashboard is more than one printed page
    assert pages == 3 + dashboards == len(report_plan([load(p) for p in paths]))
    import pandas as pd
    table = pd.read_csv(out.with_suffix(".csv"))
    assert len(table) == 3 and list(table["name"]) == ["plain", "gru", "lm"]
    assert table.loc[1, "share_clipped"] == pytest.approx(stats.grad_norm_stats(load(runs["gru"]))["share_clipped"])
    md = out.with_suffix(".md").read_text()
    assert "| plain |" in md and "Language-model runs" in md and "ROMEO:" in md


# ----------------------------------------------------------------------------- bad input

def _bad_files(tmp_path, good):
    missing = tmp_path / "missing.h5"
    half = tmp_path / "half.h5"
    data = open(good, "rb").read()
    half.write_bytes(data[: len(data) // 2])
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    text = tmp_path / "notes.h5"
    text.write_text("not a run file\n")
    return {"no such file": missing, "truncated": half, "not a dynamics run file": foreign,
            "not an HDF5 file": text}


def test_bad_files_exit_2_with_one_line(runs, tmp_path):
    for expect, path in _bad_files(tmp_path, runs["gru"]).items():
        for command in ("info", "plot"):
            result = cli(command, path, *(["-o", tmp_path / "out"] if command == "plot" else []))
            assert result.exit_code == 2, (command, path, result.output)
            lines = result.output.strip().splitlines()
            assert len(lines) == 1 and expect in lines[0] and str(path) in lines[0]
    assert not (tmp_path / "out").exists()            # nothing written for bad input


def test_compare_and_report_write_nothing_on_bad_input(runs, tmp_path):
    bad = tmp_path / "missing.h5"
    r = cli("compare", runs["gru"], bad, "-o", tmp_path / "c" / "cmp.png")
    assert r.exit_code == 2 and not (tmp_path / "c").exists()
    r = cli("report", runs["gru"], bad, "-o", tmp_path / "r" / "report.pdf")
    assert r.exit_code == 2 and not (tmp_path / "r").exists()
    r = cli("compare", runs["gru"], "-o", tmp_path / "cmp.txt")
    assert r.exit_code == 2 and "must end in" in r.output
    r = cli("report", runs["gru"], "-o", tmp_path / "report.png")
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1


def test_bad_input_exit_status(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["info", str(tmp_path / "none.h5")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "no such file" in err


class _Snap:
    """Just what config_parts reads of a run."""
    def __init__(self, family, cell, **config):
        self.family, self.cell, self.task = family, cell, config.get("task", "reverse")
        self.cfg = lambda *keys: next((config[k] for k in keys if k in config), None)


def test_legend_names_attention_teacher_forcing_and_chrono_gates():
    from analysis.compare import labels
    a = _Snap("seq2seq", "gru", task="reverse", attention="bahdanau", teacher_forcing=1.0, tf_schedule="constant")
    b = _Snap("seq2seq", "gru", task="reverse", attention="none", teacher_forcing=1.0,
              tf_schedule="inverse_sigmoid", tf_k=80.0)
    for s, name in ((a, "a"), (b, "b")):
        s.name = name
    assert labels([a, b]) == ["a: bahdanau attention", "b: no attention, TF 1 inverse_sigmoid k=80"]
    g = _Snap("synthetic", "gru", task="mem", gate_init="chrono")
    assert canvas.config_parts(g)["gate_init"] == "chrono gates"
    assert "gate_init" not in canvas.config_parts(_Snap("synthetic", "rnn", task="mem", gate_init="chrono"))
