"""Sweeps: grid expansion, validation up front, skip / resume / retry on a rerun, summary.csv,
execution on a local Dask cluster, and the Wilson intervals of the success figure."""
import csv
import math

import h5py
import numpy as np
import pytest

from analysis.success import table, wilson
from dynamics import sweep as sw
from dynamics.commands.success import success as success_command
from tasks.errors import InputError

BASE = """task = "torder"
n_hidden = 50
lr = 0.01
batch_size = 20
check_freq = 10
eval_batch_size = 50
chunk_batch_size = 50
"""


def write_spec(folder, grid, sets="max_iters = 20", name="t"):
    (folder / "base.toml").write_text(BASE)
    path = folder / f"{name}.toml"
    path.write_text(f'name = "{name}"\nbase = "base.toml"\n[set]\n{sets}\n[grid]\n{grid}\n')
    return path


@pytest.fixture(scope="module")
def client():
    """An in-process cluster (one worker thread): quick to start, and monkeypatches reach the tasks."""
    from dask.distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
                           dashboard_address=":0")
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


# -- the grid ----------------------------------------------------------------------------------
def test_grid_is_the_product_with_set_applied_and_readable_names(tmp_path):
    spec = sw.load_spec(write_spec(tmp_path, """
init = ["smart_tanh", {label = "sigmoid", init = "sigmoid", activation = "sigmoid"}]
method = [{label = "sgd", clip = "none", alpha = 0}, {label = "clip+omega", clip = "rescale", alpha = 2}]
length = [10, 20]
seed = [1, 2, 3]""", sets="max_iters = 123\nlr = 0.02"))
    points = sw.expand(spec, tmp_path / "out")
    assert len(points) == 2 * 2 * 2 * 3
    assert len({p.name for p in points}) == len(points)
    first, last = points[0], points[-1]
    assert first.name == "init=smart_tanh,method=sgd,length=10,seed=1"
    assert last.name == "init=sigmoid,method=clip+omega,length=20,seed=3"
    assert last.config.init == "sigmoid" and last.config.activation == "sigmoid"
    assert first.config.activation == "tanh" and first.config.clip == "none" and first.config.alpha == 0
    assert last.config.clip == "rescale" and last.config.alpha == 2
    assert (last.config.min_length, last.config.max_length) == (20, 20)
    assert all(p.config.max_iters == 123 and p.config.lr == 0.02 for p in points)      # [set]
    assert all(p.config.n_hidden == 50 and p.config.check_freq == 10 for p in points)  # base, relative to the spec
    assert all(p.config.name == p.name for p in points)
    assert all(p.config.run_path == (tmp_path / "out" / f"{p.name}.h5").resolve() for p in points)
    combos = {(p.config.init, p.config.clip, p.config.min_length, p.config.seed) for p in points}
    assert len(combos) == len(points)


def test_names_are_file_safe_and_table_labels_default_to_values(tmp_path):
    spec = sw.load_spec(write_spec(tmp_path, 'lr = [0.01, 1e-3]\nm = [{clip = "rescale", cutoff = 2.5}]\n'
                                             'text = ["a b/c"]', sets="task = 'text'"))
    names = [p.name for p in sw.expand(spec, tmp_path / "out")]
    assert names == ["lr=0.01,m=rescale-2.5,text=a_b_c", "lr=0.001,m=rescale-2.5,text=a_b_c"]


@pytest.mark.parametrize("grid, words", [
    ('init = ["smart_tanh", "bogus"]', ["init='bogus'", "smart_tanh"]),
    ('seed = [1, "x"]', ["seed='x'", "integer"]),
    ('nonsense = [1, 2]', ["nonsense", "tables"]),
    ('n_hiden = [{label = "a", n_hiden = 3}]', ["n_hiden"]),
    ('length = [1]', ["min_length=1", "too short"]),
    ('seed = []', ["seed", "non-empty"]),
    ('seed = [1, 1]', ["label '1'", "twice"]),
])
def test_an_invalid_grid_value_fails_the_whole_sweep_before_anything_runs(tmp_path, grid, words):
    spec = write_spec(tmp_path, grid)
    out = tmp_path / "out"
    with pytest.raises(InputError) as e:
        sw.run_sweep(spec, out_dir=out, client=object())   # a client that would fail if it were used
    message = str(e.value)
    assert "\n" not in message
    for word in words:
        assert word in message
    assert not out.exists()


def test_the_sweep_names_its_runs_and_folder(tmp_path):
    with pytest.raises(InputError, match="name is not allowed"):
        sw.load_spec(write_spec(tmp_path, "seed = [1]", sets='name = "x"'))
    with pytest.raises(InputError, match="relative to the spec file"):
        (tmp_path / "s.toml").write_text('base = "missing.toml"\n[grid]\nseed = [1]\n')
        sw.load_spec(tmp_path / "s.toml")


def test_cli_prints_one_line_and_exits_2_for_a_bad_spec(tmp_path, capsys):
    from dynamics.cli import main
    spec = write_spec(tmp_path, 'clip = ["rescale", "sometimes"]')
    with pytest.raises(SystemExit) as e:
        main(["sweep", str(spec), "--out-dir", str(tmp_path / "out")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "clip='sometimes'" in err


def test_one_sweep_at_a_time_per_folder(tmp_path):
    with sw.Lock(tmp_path):
        with pytest.raises(InputError, match="another sweep is running"):
            with sw.Lock(tmp_path):
                pass
    with sw.Lock(tmp_path):      # released on exit
        pass
    assert list(tmp_path.iterdir()) == []


# -- running, rerunning, failing --------------------------------------------------------------
def mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.suffix in (".h5", ".pt", ".npz")}


def test_a_rerun_skips_finished_runs_without_touching_them(tmp_path, client, monkeypatch):
    spec = write_spec(tmp_path, "seed = [1, 2]")
    out = tmp_path / "out"
    first = sw.run_sweep(spec, out_dir=out, client=client, progress=False)
    assert sorted(r["status"] for r in first.results.values()) == ["finished", "finished"]
    before = mtimes(out)
    assert len(before) == 6

    def never(*args, **kwargs):
        raise AssertionError("a finished run was submitted again")
    monkeypatch.setattr(sw.execute, "run_task", never)
    again = sw.run_sweep(spec, out_dir=out, client=client, progress=False)
    assert set(again.modes.values()) == {"skip"} and again.results == {}
    assert mtimes(out) == before
    rows = sw.read_summary(out / "summary.csv")
    assert [r["status"] for r in rows] == ["finished", "finished"]


def test_a_failing_run_is_recorded_and_the_others_complete_then_a_rerun_retries_it(tmp_path, client, monkeypatch):
    from dynamics import train as tr
    step = tr.Run.step

    def failing_step(self):
        if self.c.seed == 2 and self.iters == 15:
            raise RuntimeError("boom at 15")
        return step(self)
    monkeypatch.setattr(tr.Run, "step", failing_step)
    spec = write_spec(tmp_path, "seed = [1, 2, 3]")
    out = tmp_path / "out"
    result = sw.run_sweep(spec, out_dir=out, client=client, progress=False)
    status = {n: r["status"] for n, r in result.results.items()}
    assert status == {"seed=1": "finished", "seed=2": "failed", "seed=3": "finished"}
    assert "RuntimeError: boom at 15" in result.results["seed=2"]["error"]
    with h5py.File(out / "seed=2.h5", "r") as f:
        assert f.attrs["status"] == "failed" and "boom at 15" in f.attrs["error"]
    rows = {r["name"]: r for r in sw.read_summary(out / "summary.csv")}
    assert rows["seed=2"]["status"] == "failed" and "boom" in rows["seed=2"]["error"]
    assert rows["seed=2"]["iterations"] == "10"      # what the file holds: its last check
    assert rows["seed=1"]["status"] == rows["seed=3"]["status"] == "finished"

    monkeypatch.setattr(tr.Run, "step", step)
    again = sw.run_sweep(spec, out_dir=out, client=client, progress=False)
    assert again.modes == {"seed=1": "skip", "seed=2": "force", "seed=3": "skip"}
    assert again.results["seed=2"]["status"] == "finished"
    assert sw.read_summary(out / "summary.csv")[1]["status"] == "finished"


def test_a_run_that_fails_before_its_file_exists_is_recorded_as_failed(tmp_path, client):
    spec = write_spec(tmp_path, 'device = ["cpu", "cuda:99"]')
    out = tmp_path / "out"
    result = sw.run_sweep(spec, out_dir=out, client=client, progress=False)
    assert result.results["device=cpu"]["status"] == "finished"
    failed = result.results["device=cuda_99"]
    assert failed["status"] == "failed" and "cuda" in failed["error"].lower()
    assert not (out / "device=cuda_99.h5").exists()
    row = sw.read_summary(out / "summary.csv")[1]
    assert row["status"] == "failed" and row["error"] == failed["error"] and row["iterations"] == ""


def test_an_interrupted_run_is_resumed_from_its_checkpoint(tmp_path, client):
    from dynamics.train import train
    spec = write_spec(tmp_path, "seed = [4]", sets="max_iters = 30")
    out = tmp_path / "out"
    (point,) = sw.expand(sw.load_spec(spec), out)

    def interrupt(run, row):
        raise KeyboardInterrupt
    train(point.config, progress=False, after_check=interrupt)
    with h5py.File(point.config.run_path, "r") as f:
        assert f.attrs["status"] == "interrupted" and f["iter/loss"].shape[0] == 10
        loss_before = f["iter/loss"][:]
    result = sw.run_sweep(spec, out_dir=out, client=client, progress=False)
    assert result.modes == {"seed=4": "resume"}
    with h5py.File(point.config.run_path, "r") as f:
        assert f.attrs["status"] == "finished" and f["iter/loss"].shape[0] == 30
        assert np.array_equal(f["iter/loss"][:10], loss_before)


def test_the_timing_report_never_gives_a_negative_overhead(tmp_path, client, monkeypatch):
    """A resumed run's file holds the wall_time of its earlier attempts too, which this sweep's
    tasks did not spend: training counts only what each task added, so it never exceeds the
    workers' busy time, and neither the overhead nor the first runs' imports are negative."""
    import re
    import time
    from dynamics import train as tr
    spec = write_spec(tmp_path, "seed = [4, 5]", sets="max_iters = 30")
    out = tmp_path / "out"
    step = tr.Run.step

    def slow_step(self):        # the earlier attempts were slow: 0.6 s of recorded training each
        time.sleep(0.06)
        return step(self)

    def interrupt(run, row):
        raise KeyboardInterrupt
    monkeypatch.setattr(tr.Run, "step", slow_step)
    for point in sw.expand(sw.load_spec(spec), out):
        tr.train(point.config, progress=False, after_check=interrupt)
    monkeypatch.setattr(tr.Run, "step", step)
    result = sw.run_sweep(spec, out_dir=out, client=client, progress=False)
    assert result.modes == {"seed=4": "resume", "seed=5": "resume"}
    (line,) = [line for line in sw.report(result) if line.startswith("workers busy")]
    busy, training, overhead, warmup = map(float, re.findall(r"(-?[\d.]+) s", line))
    assert 0 <= training <= busy and overhead >= 0 and warmup >= 0, line
    for r in result.results.values():
        assert 0 <= r["trained"] <= r["task_time"]
        assert r["row"]["wall_time"] - r["trained"] >= 0.6      # the earlier attempt is not this task's


def test_a_changed_spec_over_existing_runs_is_an_error_not_a_silent_mix(tmp_path, client):
    spec = write_spec(tmp_path, "seed = [1]")
    out = tmp_path / "out"
    sw.run_sweep(spec, out_dir=out, client=client, progress=False)
    spec = write_spec(tmp_path, "seed = [1]", sets="max_iters = 20\nlr = 0.5")
    with pytest.raises(InputError, match="lr=0.01.*lr=0.5"):
        sw.run_sweep(spec, out_dir=out, client=client, progress=False)
    forced = sw.run_sweep(spec, out_dir=out, client=client, progress=False, force=True)
    assert forced.modes == {"seed=1": "force"} and forced.results["seed=1"]["status"] == "finished"


def test_summary_values_equal_the_run_files(tmp_path, client):
    spec = write_spec(tmp_path, 'init = ["smart_tanh", "basic_tanh"]\nseed = [2]',
                      sets='max_iters = 300\ncheck_freq = 25\nlength = 10\nclip = "rescale"\nalpha = 2')
    out = tmp_path / "out"
    sw.run_sweep(spec, out_dir=out, client=client, progress=False)
    rows = sw.read_summary(out / "summary.csv")
    assert [r["name"] for r in rows] == ["init=smart_tanh,seed=2", "init=basic_tanh,seed=2"]
    assert any(r["status"] == "solved" for r in rows)
    for r in rows:
        with h5py.File(out / f"{r['name']}.h5", "r") as f:
            iters, err, loss = f["check/iter"][:], f["check/valid_error"][:], f["check/valid_loss"][:]
            grad = f["iter/grad_norm"][:]
            assert r["status"] == f.attrs["status"]
            assert int(r["iterations"]) == iters[-1]
            assert float(r["final_valid_error"]) == err[-1]
            assert float(r["best_valid_error"]) == err.min()
            assert float(r["final_valid_loss"]) == loss[-1]
            assert float(r["max_grad_norm"]) == grad[np.isfinite(grad)].max()
            assert float(r["clipped_share"]) == f["iter/clipped"][:].mean()
            assert float(r["wall_time"]) == f["check/wall_time"][-1]
            if r["status"] == "solved":
                assert r["solved"] == "True" and int(r["solve_iter"]) == iters[-1] and err[-1] < 1e-4
                assert err[:-1].min() >= 1e-4
            else:
                assert r["solved"] == "False" and r["solve_iter"] == ""
        assert r["init"] in ("smart_tanh", "basic_tanh") and r["seed"] == "2"


def test_a_local_cluster_of_two_worker_processes_runs_four_runs(tmp_path):
    import os
    spec = write_spec(tmp_path, "seed = [1, 2, 3, 4]", sets="max_iters = 20\nlength = 10")
    out = tmp_path / "out"
    result = sw.run_sweep(spec, workers=2, out_dir=out, progress=False)
    assert result.workers == 2
    assert [r["status"] for r in result.results.values()] == ["finished"] * 4
    pids = {r["pid"] for r in result.results.values()}
    assert os.getpid() not in pids and len(pids) == 2
    assert sorted(p.name for p in out.glob("*.h5")) == [f"seed={s}.h5" for s in (1, 2, 3, 4)]
    with open(out / "summary.csv", newline="") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["finished"] * 4


# -- the success figure ------------------------------------------------------------------------
def test_wilson_interval_against_the_formula_by_hand():
    z = 1.959963984540054
    assert wilson(0, 10) == (0.0, pytest.approx(z * z / (10 + z * z)))
    assert wilson(10, 10) == (pytest.approx(10 / (10 + z * z)), 1.0)
    # 5 of 10: centre 0.5, half = z / (1 + z²/10) · sqrt(0.025 + z²/400) = 0.263407
    low, high = wilson(5, 10)
    assert low == pytest.approx(0.236593, abs=1e-6) and high == pytest.approx(0.763407, abs=1e-6)
    # 2 of 20 by hand: p = 0.1, z² = 3.841459
    p, n, z2 = 0.1, 20, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = math.sqrt(z2) / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    assert wilson(2, 20) == (pytest.approx(centre - half), pytest.approx(centre + half))
    assert wilson(2, 20)[0] == pytest.approx(0.027866, abs=1e-6)
    lows, highs = wilson(np.array([0, 5, 10]), np.array([10, 10, 10]))
    assert np.allclose(lows + highs[::-1], 1)       # symmetric in k ↔ n − k
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_success_table_groups_by_init_and_method_and_counts_only_ended_runs():
    def run(init, clip, alpha, L, seed, status, it=None):
        c = {"init": init, "activation": "tanh", "optimizer": "sgd", "clip": clip, "alpha": alpha,
             "min_length": L, "max_length": L, "seed": seed, "max_iters": 100, "task": "torder"}
        return {"config": c, "status": status, "solved": status == "solved", "solve_iter": it}
    runs = [run("smart_tanh", "rescale", 2, 10, 1, "solved", 40), run("smart_tanh", "rescale", 2, 10, 2, "finished"),
            run("smart_tanh", "rescale", 2, 10, 3, "failed"), run("smart_tanh", "none", 0, 10, 1, "finished"),
            run("smart_tanh", "rescale", 2, 20, 1, "solved", 90)]
    t = table(runs)
    assert set(t) == {("smart_tanh", "SGD + clip + Ω"), ("smart_tanh", "SGD")}
    cell = t[("smart_tanh", "SGD + clip + Ω")][10]
    assert (cell["k"], cell["n"], cell["iters"]) == (1, 2, [40])
    assert t[("smart_tanh", "SGD")][10]["k"] == 0


def test_success_table_gives_each_gated_cell_its_panel():
    base = {"init": "uniform", "activation": "tanh", "optimizer": "adam", "clip": "rescale", "alpha": 0,
            "min_length": 10, "max_length": 10, "seed": 1, "max_iters": 100, "task": "mem"}
    runs = [{"config": {**base, **extra}, "status": "finished", "solved": False, "solve_iter": None}
            for extra in ({"cell": "rnn"}, {"cell": "gru", "gate_init": "chrono"}, {"cell": "lstm"},
                          {"cell": "rnn", "init": "identity", "activation": "relu"})]
    assert set(table(runs)) == {("uniform", "Adam + clip"), ("GRU (uniform, chrono)", "Adam + clip"),
                                ("LSTM (uniform)", "Adam + clip"), ("identity (relu)", "Adam + clip")}


def test_success_command_draws_the_figure_from_a_sweep_folder(tmp_path, client):
    from click.testing import CliRunner
    spec = write_spec(tmp_path, 'method = [{label = "sgd", clip = "none", alpha = 0}, '
                                '{label = "cr", clip = "rescale", alpha = 2}]\nseed = [2, 5]',
                      sets="max_iters = 300\ncheck_freq = 25\nlength = 10\ninit = 'smart_tanh'")
    out = tmp_path / "out"
    sw.run_sweep(spec, out_dir=out, client=client, progress=False)
    res = CliRunner().invoke(success_command, [str(out), "-o", str(tmp_path / "fig.png")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "fig.png").stat().st_size > 10_000
    lines = res.output.splitlines()
    solved = sum(r["status"] == "solved" for r in sw.read_summary(out / "summary.csv"))
    counts = [line.split()[-1] for line in lines if line.startswith("smart_tanh")]
    assert len(counts) == 2 and sum(int(c.split("/")[0]) for c in counts) == solved
    assert all(c.endswith("/2") for c in counts)


def test_success_refuses_an_output_that_is_no_image_before_reading(tmp_path, capsys):
    from dynamics.cli import main
    with pytest.raises(SystemExit) as e:
        main(["success", str(tmp_path), "-o", str(tmp_path / "fig.txt")])
    assert e.value.code == 2 and "must end in .png" in capsys.readouterr().err
    assert not (tmp_path / "fig.txt").exists()


def test_an_entry_may_name_its_own_base_preset(tmp_path):
    """`base` in a grid entry replaces the spec's base for its runs: one sweep over several presets,
    [set] and the other axes applied on top; the label defaults to the preset's file name."""
    (tmp_path / "other.toml").write_text('task = "mem"\nn_hidden = 30\nlr = 0.05\n')
    spec = sw.load_spec(write_spec(tmp_path, 'preset = [{base = "other.toml"}, {label = "b", base = "base.toml", '
                                             'lr = 0.2}, {label = "c", lr = 0.3}]\nseed = [1, 2]'))
    points = {p.name: p.config for p in sw.expand(spec, tmp_path / "out")}
    assert sorted(points) == [f"preset={p},seed={s}" for p in ("b", "c", "other") for s in (1, 2)]
    other, b, c = points["preset=other,seed=1"], points["preset=b,seed=2"], points["preset=c,seed=1"]
    assert (other.task, other.n_hidden, other.lr, other.max_iters) == ("mem", 30, 0.05, 20)   # [set] on top
    assert (b.task, b.n_hidden, b.lr, b.seed) == ("torder", 50, 0.2, 2)
    assert (c.task, c.lr) == ("torder", 0.3)                                                   # the spec's base
    with pytest.raises(InputError, match="no such file"):
        sw.load_spec(write_spec(tmp_path, 'preset = [{base = "missing.toml"}]'))
    with pytest.raises(InputError, match="at most one"):
        sw.expand(sw.load_spec(write_spec(tmp_path, 'p = [{base = "other.toml"}]\nq = [{base = "base.toml"}]')))
