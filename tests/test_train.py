"""The training loop, probes and run file against direct computations."""
import json
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch

from dynamics import config as cfg
from dynamics import probes, runfile
from dynamics import schema
from dynamics.models import compiled
from dynamics.cli import main
from dynamics.train import Run, train

TINY = dict(task="torder", n_hidden=8, batch_size=5, eval_batch_size=40, chunk_batch_size=20, check_freq=5,
            min_length=10, max_length=14, max_iters=20, init="smart_tanh")


def make(tmp_path, **kw):
    return cfg.make({**TINY, "out_dir": str(tmp_path), **kw})


def read(path):
    with h5py.File(path, "r") as f:
        out = {}
        f.visititems(lambda k, v: out.__setitem__(k, v[()]) if isinstance(v, h5py.Dataset) else None)
        return dict(f.attrs), out


# -- probes against direct computations -------------------------------------------------------

def test_clip_rescale_and_fallback():
    torch.manual_seed(0)
    W = torch.nn.Parameter(torch.randn(4, 4))
    b = torch.nn.Parameter(torch.randn(4))
    for scale, cutoff in ((0.1, 1.0), (10.0, 1.0)):
        W.grad, b.grad = torch.randn(4, 4) * scale, torch.randn(4) * scale
        norm0 = torch.cat([W.grad.flatten(), b.grad]).norm().item()
        norm, after, clipped, bad = probes.clip_gradients([W, b], W, cutoff, "rescale").unbind()
        assert norm.item() == pytest.approx(norm0, rel=1e-6)
        assert after.item() == pytest.approx(min(norm0, cutoff), rel=1e-6)
        assert bool(clipped) == (norm0 > cutoff) and not bool(bad)
    W.grad, b.grad = torch.full((4, 4), float("inf")), torch.ones(4)
    norm, after, clipped, bad = probes.clip_gradients([W, b], W, 1.0, "rescale").unbind()
    assert bool(bad) and not bool(clipped)
    assert torch.allclose(W.grad, 0.02 * W.detach()) and (b.grad == 0).all()
    W.grad, b.grad = torch.ones(4, 4) * 100, torch.ones(4)
    probes.clip_gradients([W, b], W, 1.0, "none")
    assert (W.grad == 100).all()   # no clipping


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fill", [None, float("inf"), float("nan"), 1e11])
@pytest.mark.parametrize("clip,cutoff", [("rescale", 1.0), ("rescale", 0.1), ("rescale", 100.0), ("none", 1.0)])
@pytest.mark.parametrize("recurrent", [True, False])
def test_compiled_clip_equals_the_python_path(dtype, fill, clip, cutoff, recurrent):
    if compiled.missing_toolchain():
        pytest.skip(f"the compiled loops cannot be built here: {compiled.missing_toolchain()}")
    torch.manual_seed(1)
    params = [torch.nn.Parameter(torch.randn(*shape, dtype=dtype)) for shape in ((6, 6), (6,), (3, 6))]
    grads = [torch.randn_like(p) * 0.3 for p in params]
    if fill is not None:
        grads[1][2] = fill
    if cutoff == 0.1:   # the norm on the cutoff itself, as the dtype rounds it
        grads = [g * (torch.tensor(0.1, dtype=dtype) / torch.cat([h.flatten() for h in grads]).norm()) for g in grads]
    results = {}
    for backend in ("python", "compiled"):
        for p, g in zip(params, grads):
            p.grad = g.clone()
        compiled.use(backend)
        try:
            out = probes.clip_gradients(params, params[0] if recurrent else None, cutoff, clip)
        finally:
            compiled.use("auto")
        results[backend] = [out, *[p.grad for p in params]]
    for a, b in zip(results["python"], results["compiled"]):
        assert a.dtype == b.dtype and torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("edges", [schema.TANH_EDGES, schema.SIGMOID_EDGES, schema.LOG10_EDGES])
def test_histogram_matches_numpy(backend, edges, dtype):
    lo, hi = edges[0], edges[-1]
    e = torch.as_tensor(edges, dtype=dtype)
    v = torch.cat([torch.rand(5000, dtype=dtype) * 1.2 * (hi - lo) + lo - 0.1 * (hi - lo),  # some outside
                   e, torch.nextafter(e, e + 1), torch.nextafter(e, e - 1)])               # on and beside every edge
    ours = probes.histogram(v, edges).numpy()
    ref, _ = np.histogram(np.clip(v.numpy(), lo, hi), bins=e.numpy())
    assert (ours == ref).all() and ours.sum() == len(v)
    special = torch.tensor([float("nan"), float("inf"), -float("inf")], dtype=dtype)  # NaN: the top bin
    assert probes.histogram(special, edges).tolist() == [1] + [0] * (len(edges) - 3) + [2]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("transform,edges", [("tanh", schema.TANH_EDGES), ("sigmoid", schema.SIGMOID_EDGES)])
def test_histogram_of_saturation_on_a_strided_view_matches_numpy(backend, transform, edges, dtype):
    torch.manual_seed(3)
    buffer = torch.rand(7, 5, 4 * 9, dtype=dtype) * 2 - int(transform == "tanh")   # (T, B, 4H), as the gates
    buffer[2, 3, 10], buffer[0, 0, 11] = float("nan"), 0.5
    near = torch.as_tensor(edges, dtype=dtype)[:9]
    buffer[4, 1, 9:18] = 1 - near if transform == "tanh" else near               # d(v) on the edges
    view = buffer[:, :, 9:18]                                                    # one gate: strided
    v = view.numpy()
    d = 1 - np.abs(v) if transform == "tanh" else np.minimum(v, 1 - v)
    ref, _ = np.histogram(np.clip(np.nan_to_num(d, nan=edges[-1]), edges[0], edges[-1]), bins=edges.astype(v.dtype))
    assert probes.histogram(view, edges, transform).tolist() == ref.tolist()
    assert probes.histogram(view.flatten(), edges, transform).tolist() == ref.tolist()


def omega_naive(hidden, d, W, activation="tanh"):
    """Ω as docs/tasks.md defines it, written as loops, differentiated by autograd."""
    total, share_sum = 0.0, 0.0
    T, B, _ = d.shape
    for k in range(1, T):
        kept, terms = 0, 0.0
        for b in range(B):
            dk = d[k, b]
            if (dk @ dk) < 1e-20:
                continue
            u = dk * (1 - hidden[k, b] ** 2)
            r = ((u @ W.t()) ** 2).sum() / (dk @ dk)
            terms = terms + (r - 1) ** 2
            kept += 1
        total = total + terms / B
        share_sum += kept / B
    return total / share_sum, share_sum / (T - 1)


def test_omega_and_gradient_equal_the_formula():
    torch.manual_seed(1)
    T, B, H = 7, 4, 5
    hidden = torch.tanh(torch.randn(T, B, H, dtype=torch.float64))
    d = torch.randn(T, B, H, dtype=torch.float64)
    d[3, 1] = 0.0   # a vanished pair: left out
    W1 = torch.randn(H, H, dtype=torch.float64, requires_grad=True)
    W2 = W1.detach().clone().requires_grad_()
    ours, past = probes.omega(hidden, d, W1, "tanh")
    ref, past_ref = omega_naive(hidden, d, W2)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)
    assert past.item() == pytest.approx(past_ref, rel=1e-12)
    ours.backward(), ref.backward()
    assert torch.allclose(W1.grad, W2.grad, rtol=1e-10, atol=0)


def test_check_diagnostics_equal_direct_computation(tmp_path):
    for cell in ("rnn", "gru", "lstm"):
        c = make(tmp_path, cell=cell, init="uniform", name=cell)
        run = Run(c)
        out = run.step()
        g_direct = run.model.hidden_grad.norm(dim=2)            # (T, B)
        hidden = out.hidden.detach().numpy()
        gates = {k: v.detach().numpy() for k, v in out.gates.items()}
        columns, row, layers = run.check(time.perf_counter())
        diag = list(layers.values())[-1]
        assert np.allclose(diag["grad_time"], g_direct.mean(dim=1).numpy(), rtol=1e-6)
        assert np.array_equal(run.sample["g"].numpy(), g_direct.numpy())
        sat, _ = np.histogram(1 - np.abs(hidden), bins=schema.TANH_EDGES)
        assert np.array_equal(diag["hist"]["saturation"], sat)
        log_g, _ = np.histogram(np.clip(np.log10(g_direct.numpy().astype(np.float64)), -20, 10), bins=schema.LOG10_EDGES)
        assert np.array_equal(diag["hist"]["log10_grad"], log_g)
        assert set(diag["hist"]) == {"log10_grad", "saturation"} | {f"gate_{k}" for k in gates}
        for k, v in gates.items():
            ref, _ = np.histogram(np.minimum(v, 1 - v), bins=schema.SIGMOID_EDGES)
            assert np.array_equal(diag["hist"][f"gate_{k}"], ref), (cell, k)
        assert row["rho"] == pytest.approx(run.model.rho())


# -- the run file ------------------------------------------------------------------------------

def test_run_file_schema_and_npz(tmp_path):
    c = make(tmp_path, name="schema", clip="rescale", cutoff=0.05, alpha=2.0)
    path = train(c, progress=False)
    attrs, data = read(path)
    assert attrs["schema"] == "dynamics-run/1" and attrs["status"] == "finished"
    assert json.loads(attrs["config"])["cutoff"] == 0.05 and attrs["recurrent_matrix"] == "W_hh"
    for k in ("loss", "grad_norm", "grad_norm_clipped", "clipped", "nonfinite", "omega", "steps_in_past",
              "seq_len", "lr", "step_time"):
        assert data[f"iter/{k}"].shape == (20,), k
    for k in ("iter", "train_loss", "valid_loss", "valid_error", "rho", "sigma_max", "wall_time", "cpu_time"):
        assert data[f"check/{k}"].shape == (4,), k
    assert np.array_equal(data["check/iter"], [5, 10, 15, 20])
    checked_T = data["iter/seq_len"][data["check/iter"].astype(int) - 1]
    assert data["check/grad_time"].shape == (4, checked_T.max())
    # g_t is NaN-padded beyond each check's own T
    for k, it in enumerate(data["check/iter"].astype(int)):
        T = int(data["iter/seq_len"][it - 1])
        assert np.isfinite(data["check/grad_time"][k, :T]).all() and np.isnan(data["check/grad_time"][k, T:]).all()
    # post-clip norm = min(norm, cutoff) on every update
    g, gc = data["iter/grad_norm"], data["iter/grad_norm_clipped"]
    assert np.allclose(gc, np.minimum(g, 0.05), rtol=1e-5)
    assert np.array_equal(data["iter/clipped"] == 1, g > 0.05)
    assert np.isfinite(data["iter/omega"]).all() and ((0 < data["iter/steps_in_past"]) & (data["iter/steps_in_past"] <= 1)).all()
    assert data["check/hist/log10_grad"].sum(axis=1).tolist() == [5 * T for T in
                                                                    data["iter/seq_len"][[4, 9, 14, 19]].astype(int)]
    for k in ("W_xh", "W_hh", "b_h", "W_hy", "b_y"):
        assert data[f"start/weights/{k}"].shape == data[f"final/weights/{k}"].shape
    npz = np.load(tmp_path / "schema_final_state.npz")
    for k in ("train_nll", "valid_error", "gradient_norm", "rho_Whh", "Omega", "gradient_norm_clipped", "g_t",
              "saturation", "W_hh"):
        assert k in npz, k
    assert np.array_equal(npz["gradient_norm"], g)


def test_readable_while_running(tmp_path):
    """A reader opens the file (SWMR) between checks and sees whole rows."""
    c = make(tmp_path, name="live", max_iters=15)
    seen = []

    def peek(run, row):
        with h5py.File(c.run_path, "r", libver="latest", swmr=True) as f:
            seen.append((f.attrs["status"], f["check/iter"].shape[0], f["iter/loss"].shape[0]))
    train(c, progress=False, after_check=peek)
    assert seen == [("running", 1, 5), ("running", 2, 10), ("running", 3, 15)]


def test_determinism(tmp_path):
    a = train(make(tmp_path / "a", name="d", cell="gru"), progress=False)
    b = train(make(tmp_path / "b", name="d", cell="gru"), progress=False)
    _, da = read(a)
    _, db = read(b)
    for k in da:
        if k not in ("iter/step_time", "check/wall_time", "check/cpu_time"):
            assert np.array_equal(da[k], db[k], equal_nan=True), k


def test_interrupt_and_resume_equal_uninterrupted(tmp_path):
    full = train(make(tmp_path / "full", name="r", cell="lstm", max_iters=30), progress=False)

    def stop_after_two(run, row):
        if run.checks == 2:
            raise KeyboardInterrupt
    c = make(tmp_path / "part", name="r", cell="lstm", max_iters=30)
    path = train(c, progress=False, after_check=stop_after_two)
    attrs, data = read(path)
    assert attrs["status"] == "interrupted" and data["check/iter"].tolist() == [5, 10]
    train(c, resume=True, progress=False)
    attrs, resumed = read(path)
    _, reference = read(full)
    assert attrs["status"] == "finished"
    assert set(resumed) == set(reference)
    for k in reference:
        if k not in ("iter/step_time", "check/wall_time", "check/cpu_time"):
            assert np.array_equal(resumed[k], reference[k], equal_nan=True), k


def test_cpu_budget_stops_at_the_first_check_past_it_and_resume_extends_it(tmp_path, monkeypatch):
    clock = iter(range(0, 10**6, 2))    # a CPU clock that advances 2 s per reading
    monkeypatch.setattr("dynamics.train.time.process_time", lambda: float(next(clock)))
    c = make(tmp_path, name="budget", max_iters=20, cpu_budget=5)
    path = train(c, progress=False)
    attrs, data = read(path)
    cpu = data["check/cpu_time"]
    assert attrs["status"] == "finished" and data["check/iter"].tolist() == list(range(5, 5 * len(cpu) + 1, 5))
    assert cpu[-1] >= 5 and (len(cpu) == 1 or cpu[-2] < 5) and np.all(np.diff(cpu) > 0)
    assert train(c, resume=True, progress=False) == path     # the budget is spent: nothing more to do
    assert read(path)[1]["check/iter"].shape == cpu.shape
    train(make(tmp_path, name="budget", max_iters=20), resume=True, progress=False)   # no budget: to max_iters
    assert read(path)[1]["check/iter"][-1] == 20


def test_a_file_from_before_a_check_column_resumes_with_nan_for_its_earlier_checks(tmp_path):
    def stop_after_two(run, row):
        if run.checks == 2:
            raise KeyboardInterrupt
    c = make(tmp_path, name="old", max_iters=20)
    path = train(c, progress=False, after_check=stop_after_two)
    with h5py.File(path, "a") as f:
        del f["check/cpu_time"]                       # as written before the column existed
    train(c, resume=True, progress=False)
    attrs, data = read(path)
    assert attrs["status"] == "finished" and data["check/iter"].tolist() == [5, 10, 15, 20]
    cpu = data["check/cpu_time"]
    assert np.isnan(cpu[:2]).all() and (cpu[2:] > 0).all() and data["check/valid_loss"].shape == (4,)


def wait_for_checks(path, n, proc, timeout=120):
    """Poll a run file that the process `proc` writes until it holds n checks."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, f"the writer exited with status {proc.returncode}"
        time.sleep(0.05)
        try:
            with h5py.File(path, "r", libver="latest", swmr=True) as f:
                if f["check/iter"].shape[0] >= n:
                    return
        except (OSError, KeyError):
            pass
    raise AssertionError(f"{path} did not reach {n} checks in {timeout} s")


def hold(path, seconds):
    """Another process that opens the run file as a reader and keeps it open."""
    code = (f"import h5py, time; f = h5py.File({str(path)!r}, 'r', libver='latest', swmr=True); "
            f"print('open', flush=True); time.sleep({seconds})")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "open"
    return proc


def test_a_reader_holding_the_file_delays_the_writer_a_little(tmp_path):
    path = tmp_path / "r.h5"
    h5py.File(path, "w", libver="latest").close()
    reader = hold(path, 1.0)
    t = time.perf_counter()
    with runfile.open_for_writing(path) as f:         # waits for the reader to let go
        f.attrs["status"] = "finished"
    assert 0.2 < time.perf_counter() - t < 9
    reader.wait(timeout=30)


def test_a_reader_that_never_lets_go_cannot_stop_the_writer(tmp_path):
    path = tmp_path / "r.h5"
    h5py.File(path, "w", libver="latest").close()
    reader = hold(path, 60)
    try:
        with pytest.raises(OSError):
            h5py.File(path, "a", libver="latest").close()     # what HDF5's lock does on its own
        with runfile.open_for_writing(path, patience=0.3) as f:
            f.attrs["status"] = "finished"
    finally:
        reader.kill()
        reader.wait(timeout=30)
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "finished"


def test_a_run_read_while_it_ends_is_closed_with_its_status(tmp_path, monkeypatch):
    monkeypatch.setattr(runfile, "LOCK_PATIENCE", 0.3)
    readers = []

    def look(run, row):
        if run.checks == 4:                            # a reader opens the file just before the end
            readers.append(hold(c.run_path, 60))
    c = make(tmp_path, name="looked", max_iters=20)
    try:
        train(c, progress=False, after_check=look)
    finally:
        for reader in readers:
            reader.kill()
            reader.wait(timeout=30)
    attrs, data = read(c.run_path)
    assert readers and attrs["status"] == "finished"
    assert data["check/iter"].tolist() == [5, 10, 15, 20] and "final/weights/W_hh" in data


def test_sigterm_closes_as_interrupted(tmp_path):
    code = ("from dynamics.cli import main; main(['train', '--task', 'torder', '--nhid', '8', '--bs', '5', "
            "'--ebs', '20', '--cbs', '20', '--checkFreq', '5', '--min-length', '10', '--max-length', '10', "
            f"'--maxiters', '1000000', '--quiet', '--name', 'term', '--out-dir', {str(tmp_path)!r}])")
    proc = subprocess.Popen([sys.executable, "-c", code])
    path = tmp_path / "term.h5"
    wait_for_checks(path, 2, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM      # the conventional status: 143
    attrs, data = read(path)
    assert attrs["status"] == "interrupted"
    assert data["check/iter"].shape[0] >= 2 and data["iter/loss"].shape[0] == data["check/iter"][-1]


def test_exception_records_failed(tmp_path, monkeypatch):
    c = make(tmp_path, name="boom")
    run_step = Run.step

    def flaky(self):
        if self.iters == 12:
            raise RuntimeError("simulated failure")
        return run_step(self)
    monkeypatch.setattr(Run, "step", flaky)
    with pytest.raises(RuntimeError):
        train(c, progress=False)
    attrs, data = read(c.run_path)
    assert attrs["status"] == "failed" and "simulated failure" in attrs["error"]
    assert data["check/iter"].tolist() == [5, 10]   # what was recorded is kept


# -- the command line --------------------------------------------------------------------------

BAD = [
    (["--task", "sorting"], "task"),
    (["--cell", "mamba"], "cell"),
    (["--init", "xavier"], "init"),
    (["--set", "colour=red"], "colour"),
    (["--set", "n_hidden=many"], "n_hidden"),
    (["--nhid", "-3"], "n_hidden"),
    (["--bs", "0"], "batch_size"),
    (["--min-length", "100", "--max-length", "50"], "min_length"),
    (["--min-length", "5", "--max-length", "5"], "min_length"),
    (["--cell", "gru", "--alpha", "2"], "alpha"),
    (["--clipstyle", "sometimes"], "clip"),
    (["runs/no_such_preset.toml"], "no_such_preset"),
]


@pytest.mark.parametrize("args,key", BAD)
def test_bad_input_one_line_exit_2_no_file(refused, args, key):
    assert key in refused(*args)


def test_existing_run_file_refused(tmp_path, capsys):
    args = ["train", "--task", "torder", "--nhid", "8", "--bs", "5", "--ebs", "20", "--cbs", "20", "--min-length", "10",
            "--max-length", "10", "--maxiters", "5", "--checkFreq", "5", "--quiet", "--name", "x", "--out-dir", str(tmp_path)]
    main(args)
    before = (tmp_path / "x.h5").read_bytes()
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2 and "--force" in capsys.readouterr().err
    assert (tmp_path / "x.h5").read_bytes() == before
    main(args + ["--force", "--seed", "3"])
    assert (tmp_path / "x.h5").read_bytes() != before


def test_preset_and_set_precedence(tmp_path):
    preset = tmp_path / "p.toml"
    preset.write_text('task = "mem"\nnhid = 12\ncheckFreq = 7\n')
    c = cfg.load(preset, cfg.parse_sets(["n_hidden=9", "maxiters=33"]))
    assert (c.name, c.task, c.n_hidden, c.check_freq, c.max_iters) == ("p", "mem", 9, 7, 33)


def test_resume_after_sigkill(tmp_path):
    """A writer killed outright leaves the file marked open; resume copies it clean and goes on,
    giving the numbers of an uninterrupted run."""
    full = train(make(tmp_path / "full", name="k", max_iters=40), progress=False)
    out = tmp_path / "part"
    code = ("from dynamics import config as cfg; from dynamics.train import train; import time\n"
            "from dynamics.train import Run\n"
            "step = Run.step\n"
            "def slow(self):\n"
            "    time.sleep(0.02)\n"
            "    return step(self)\n"
            "Run.step = slow\n"
            f"train(cfg.make({{**{TINY!r}, 'out_dir': {str(out)!r}, 'name': 'k', 'max_iters': 40}}), progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code])
    path = out / "k.h5"
    wait_for_checks(path, 2, proc)
    proc.kill()
    proc.wait(timeout=30)
    with pytest.raises(OSError):
        h5py.File(path, "a", libver="latest").close()   # what HDF5 does to a killed writer's file
    # the file still says "running"; a reader tells that its writer is gone
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        assert f.attrs["status"] == "running" and (last := int(f["check/iter"][-1])) >= 10
    from analysis.info import info_text
    from analysis.read import load
    status = info_text(load(path)).splitlines()[2]
    assert status == (f"status    stopped without closing (last check at update {last}); "
                      f"dynamics train --resume continues it")
    train(make(out, name="k", max_iters=40), resume=True, progress=False)
    attrs, resumed = read(path)
    _, reference = read(full)
    assert attrs["status"] == "finished"
    for k in ("iter/loss", "iter/grad_norm", "check/valid_loss", "check/grad_time", "final/weights/W_hh"):
        assert np.array_equal(resumed[k], reference[k], equal_nan=True), k


def test_a_copied_run_folder_resumes_in_its_new_place(tmp_path):
    """out_dir says where a run is, not what it computes: a copy resumes, as the original would."""
    import shutil
    reference = train(make(tmp_path / "ref", name="c", max_iters=20), progress=False)
    train(make(tmp_path / "a", name="c", max_iters=10), progress=False)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "a")
    path = train(make(tmp_path / "b", name="c", max_iters=20), resume=True, progress=False)
    _, resumed = read(path)
    _, expected = read(reference)
    for k in ("iter/loss", "check/valid_loss", "final/weights/W_hh"):
        assert np.array_equal(resumed[k], expected[k], equal_nan=True), k
