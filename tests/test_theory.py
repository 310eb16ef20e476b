"""The `full` probes (dynamics/probes/theory.py) against independent computations: autograd Jacobians
of the naive cell, explicit matrix products, closed forms, a quadratic with a known spectrum."""
import math

import h5py
import numpy as np
import pytest
import torch
from torch.autograd.functional import jacobian

from dynamics import config as cfg
from dynamics.probes import theory
from dynamics.models.recurrent import build_model
from dynamics.train import train

TINY = dict(task="torder", n_hidden=8, batch_size=5, eval_batch_size=40, chunk_batch_size=20, check_freq=5,
            min_length=10, max_length=14, max_iters=20, init="smart_tanh")
CELLS = [("rnn", "tanh"), ("rnn", "sigmoid"), ("rnn", "relu"), ("gru", "tanh"), ("lstm", "tanh")]


def layer_of(cell, activation, H=6, n_in=3, seed=0):
    model = build_model(cell, n_in, H, 2, "last_softmax", activation, "uniform", seed=seed, dtype=torch.float64)
    with torch.no_grad():   # larger weights than the init, so that gates and units are far from linear
        for p in model.parameters():
            p.mul_(3.0)
    return model, model.layers[0]


@pytest.mark.parametrize("cell,activation", CELLS)
def test_naive_cell_is_the_trained_cell(cell, activation):
    model, layer = layer_of(cell, activation)
    x = torch.randn(7, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    hs, _, _ = layer(x)
    zero = x.new_zeros(4, layer.n_hidden)
    state = (zero, zero) if cell == "lstm" else (zero,)
    for t in range(7):
        state = theory.cell_step(layer, x[t], state)
        torch.testing.assert_close(state[0], hs[t].detach(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell,activation", CELLS)
def test_step_jacobian_against_autograd(cell, activation):
    model, layer = layer_of(cell, activation)
    g = torch.Generator().manual_seed(2)
    B, H = 3, layer.n_hidden
    x_t = torch.randn(B, 3, dtype=torch.float64, generator=g)
    state = tuple(torch.randn(B, H, dtype=torch.float64, generator=g) * 0.8 for _ in range(2 if cell == "lstm" else 1))
    ours = theory.step_jacobian(layer, x_t, state)
    for b in range(B):
        flat = torch.cat(state, dim=1)[b]

        def step(s):
            parts = tuple(s[None, k * H:(k + 1) * H] for k in range(len(state)))
            return torch.cat(theory.cell_step(layer, x_t[b:b + 1], parts), dim=1)[0]
        with torch.no_grad():
            ref = jacobian(step, flat)
        torch.testing.assert_close(ours[b].detach(), ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell,activation", [("rnn", "tanh"), ("lstm", "tanh")])
def test_product_norms_against_the_product_of_autograd_jacobians(cell, activation):
    model, layer = layer_of(cell, activation)
    x = torch.randn(9, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    J = theory.trajectory_jacobians(layer, x)
    ours = theory.product_log10_norms(J)                       # (T, B)
    H = layer.n_hidden
    for b in range(2):
        zero = x.new_zeros(1, H)
        state = (zero, zero) if cell == "lstm" else (zero,)
        autograd_J = []
        for t in range(9):
            flat = torch.cat(state, dim=1)[0]

            def step(s):
                parts = tuple(s[None, k * H:(k + 1) * H] for k in range(len(state)))
                return torch.cat(theory.cell_step(layer, x[t, b:b + 1], parts), dim=1)[0]
            with torch.no_grad():
                autograd_J.append(jacobian(step, flat))
                state = theory.cell_step(layer, x[t, b:b + 1], state)
        P = torch.eye(autograd_J[0].shape[0], dtype=torch.float64)
        for k in range(1, 10):
            P = P @ autograd_J[9 - k]                           # J_T J_{T−1} ⋯ J_{T−k+1}
            ref = math.log10(torch.linalg.matrix_norm(P, ord=2).item())
            assert ours[k - 1, b].item() == pytest.approx(ref, abs=1e-9)


def test_product_norms_do_not_overflow():
    J = torch.eye(4, dtype=torch.float64).expand(400, 1, 4, 4) * 10.0    # 10^400 after 400 steps
    out = theory.product_log10_norms(J)[:, 0]
    np.testing.assert_allclose(out.numpy(), np.arange(1, 401), rtol=1e-12)


def test_lyapunov_exponents_of_a_linear_rnn_are_log_eigenvalues():
    """h_t = h_{t−1} W: J_t = Wᵀ, and the exponents are log |λ_i(W)| (W symmetric, known eigenvalues)."""
    eig = torch.tensor([1.3, 0.9, -0.7, 0.5, 0.2, 0.05], dtype=torch.float64)
    Q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4)))
    W = Q @ torch.diag(eig) @ Q.t()
    model = build_model("rnn", 2, 6, 2, "last_softmax", "linear", "uniform", seed=0, dtype=torch.float64)
    layer = model.layers[0]
    with torch.no_grad():
        layer.W_h.copy_(W)
    x = torch.zeros(4000, 1, 2, dtype=torch.float64)
    J = theory.trajectory_jacobians(layer, x)
    torch.testing.assert_close(J[0, 0], W.t())
    ours = theory.lyapunov_exponents(J, 4)[0]
    expected = torch.log(eig.abs()).sort(descending=True).values[:4]
    np.testing.assert_allclose(ours.numpy(), expected.numpy(), atol=1e-3)


def test_top_hessian_eigenvalue_of_a_quadratic():
    """L = ½ θᵀAθ with eigenvalues of A known: the largest in magnitude is found, with its sign."""
    g = torch.Generator().manual_seed(5)
    Q, _ = torch.linalg.qr(torch.randn(7, 7, dtype=torch.float64, generator=g))
    for spectrum, top in (([5.0, 3.0, -1.0, 0.5, 0.2, 0.1, 0.0], 5.0), ([2.0, -6.0, 1.0, 0.5, 0.3, 0.1, 0.0], -6.0)):
        A = Q @ torch.diag(torch.tensor(spectrum, dtype=torch.float64)) @ Q.t()
        theta = torch.nn.Parameter(torch.randn(7, dtype=torch.float64, generator=g))
        before = theta.detach().clone()

        def gradient():
            loss = 0.5 * theta @ A @ theta
            return torch.autograd.grad(loss, [theta])[0]
        value = theory.top_hessian_eigenvalue(gradient, [theta], 80, torch.Generator().manual_seed(0))
        assert value == pytest.approx(top, rel=1e-6)
        assert torch.equal(theta.detach(), before)          # parameters restored exactly


def full(tmp_path, **kw):
    return cfg.make({**TINY, "out_dir": str(tmp_path), "diagnostics_level": "full", **kw})


def read_raw(path):
    with h5py.File(path, "r") as f:
        out = {}
        f.visititems(lambda k, v: out.__setitem__(k, v[()]) if isinstance(v, h5py.Dataset) else None)
        return out


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_full_probes_leave_training_unchanged(tmp_path, cell):
    """The probes perturb and restore the weights and use their own random streams: a run with
    every probe on trains exactly as one with the default set."""
    basic = read_raw(train(cfg.make({**TINY, "out_dir": str(tmp_path), "name": "basic", "cell": cell}), progress=False))
    rich = read_raw(train(full(tmp_path, name="full", cell=cell, surface_every=2), progress=False))
    for k in ("iter/loss", "iter/grad_norm", "check/valid_loss", "check/grad_time", "final/weights/W_hy"):
        np.testing.assert_array_equal(rich[k], basic[k])
    T = TINY["min_length"]
    assert rich["check/jac_step_norm"].shape == (4, T) and rich["check/jac_prod_norm"].shape == (4, T)
    assert rich["check/lyapunov"].shape == (4, 5) and np.isfinite(rich["check/sharpness"]).all()
    assert "check/jac_step_norm" not in basic and "surface/iter" not in basic


def test_loss_slice_at_zero_is_the_recorded_loss(tmp_path):
    d = read_raw(train(full(tmp_path, surface_every=1, clip="rescale", cutoff=0.01), progress=False))
    iters = d["surface/iter"].astype(int)
    np.testing.assert_array_equal(iters, [5, 10, 15, 20])
    assert d["surface/steps"][:, 0].tolist() == [0.0] * 4
    np.testing.assert_allclose(d["surface/loss"][:, 0], d["iter/loss"][iters - 1], rtol=1e-6)
    # the steps: lr ‖g‖ unclipped, lr · cutoff clipped (every gradient here exceeds 0.01)
    np.testing.assert_allclose(d["surface/step_taken"], 0.01 * d["iter/grad_norm"][iters - 1], rtol=1e-6)
    np.testing.assert_allclose(d["surface/step_clipped"], 0.01 * 0.01, rtol=1e-9)
    assert d["surface/loss_2d"].shape == (4, theory.SURFACE_GRID ** 2)
    # the 2-D slice's row t = 0 is the 1-D slice at the same step lengths
    mid = theory.SURFACE_GRID // 2
    plane = d["surface/loss_2d"].reshape(4, theory.SURFACE_GRID, theory.SURFACE_GRID)
    for r in range(4):
        line_s, line = d["surface/steps"][r, 1:], d["surface/loss"][r, 1:]
        every = np.flatnonzero(np.isclose(line_s, d["surface/grid_s"][r, 1]))[0]
        np.testing.assert_allclose(line_s[::every][:theory.SURFACE_GRID], d["surface/grid_s"][r], rtol=1e-12)
        assert d["surface/grid_t"][r, mid] == 0.0
        np.testing.assert_allclose(plane[r, mid], line[::every][:theory.SURFACE_GRID], rtol=1e-6)


def test_surface_at_named_updates(tmp_path):
    """surface_at takes the surface at any update, recorded at the next check; one per interval."""
    d = read_raw(train(full(tmp_path, surface_every=0, surface_at="3,7,8", max_iters=10), progress=False))
    np.testing.assert_array_equal(d["surface/iter"], [3, 7])
    np.testing.assert_allclose(d["surface/loss"][:, 0], d["iter/loss"][[2, 6]], rtol=1e-6)


def test_group_norms_and_update_ratios_against_the_weights(tmp_path):
    """One SGD update without clipping: ΔW = −lr ∇W, so ‖ΔW‖/‖W‖ and ‖∇W‖ follow from the
    start and final weights."""
    d = read_raw(train(full(tmp_path, max_iters=1, check_freq=1, lr=0.05), progress=False))
    for group, name in (("W_hh", "W_hh"), ("W_xh", "W_xh"), ("W_hy", "W_hy")):
        W0, W1 = d[f"start/weights/{name}"], d[f"final/weights/{name}"]
        ratio = np.linalg.norm(W1 - W0) / np.linalg.norm(W0)
        assert d[f"iter/update_ratio_{group}"][0] == pytest.approx(ratio, rel=1e-4)
        assert d[f"iter/grad_norm_{group}"][0] == pytest.approx(np.linalg.norm(W1 - W0) / 0.05, rel=1e-4)


def test_bounds_recorded(tmp_path):
    d = read_raw(train(full(tmp_path, activation="sigmoid", init="sigmoid"), progress=False))
    W = d["final/weights/W_hh"]
    assert d["check/lambda1"][-1] == pytest.approx(np.linalg.norm(W, 2), rel=1e-6)
    assert d["check/lambda1_gamma"][-1] == pytest.approx(0.25 * np.linalg.norm(W, 2), rel=1e-6)
    # sup_t ‖J_t‖ ≤ λ₁ γ: the bound holds on the trajectory
    assert np.nanmax(d["check/jac_step_norm"][-1]) <= d["check/lambda1_gamma"][-1] * (1 + 1e-9)


def test_resume_keeps_the_surface_rows_of_its_checkpoint(tmp_path):
    c = full(tmp_path, surface_every=1, max_iters=10)
    train(c, progress=False)
    d = read_raw(train(c.replace(max_iters=20), resume=True, progress=False))
    np.testing.assert_array_equal(d["surface/iter"], [5, 10, 15, 20])
    assert d["check/lyapunov"].shape[0] == 4 and d["iter/grad_norm_W_hh"].shape[0] == 20


@pytest.mark.parametrize("args,key", [
    (["--set", "diagnostics_level=everything"], "diagnostics_level"),
    (["--set", "lyapunov_k=0"], "lyapunov_k"),
    (["--set", "lyapunov_k=9", "--nhid", "8", "--set", "diagnostics_level=full"], "lyapunov_k"),   # the level that reads it
    (["--set", "surface_every=-1"], "surface_every"),
    (["--set", "sharpness_iters=two"], "sharpness_iters"),
    (["--set", "probe_batch_size=0"], "probe_batch_size"),
    (["--set", "surface_at=12,x"], "surface_at"),
    (["--set", "surface_at=-4"], "surface_at"),
])
def test_bad_values_of_the_new_keys(refused, args, key):
    assert key in refused(*args)


# -- reading, verdicts and figures --------------------------------------------------------------

def test_reader_verdicts_and_figures(tmp_path):
    from analysis import figures, read, verdicts as V
    path = train(full(tmp_path, surface_every=1, clip="rescale", cutoff=0.01), progress=False)
    snap = read.load(path)
    raw = read_raw(path)
    np.testing.assert_array_equal(snap.theory["lyapunov"], raw["check/lyapunov"])
    np.testing.assert_array_equal(snap.surface["iter"], raw["surface/iter"])
    assert "grad_norm_W_hh" in snap.iter and "lambda1_gamma" in snap.check
    by_kind = {v.kind: v for v in V.verdicts(snap)}
    assert by_kind["lyapunov"].value == raw["check/lyapunov"][-1, 0]
    assert by_kind["bounds"].value == raw["check/lambda1_gamma"][-1]
    assert by_kind["sharpness"].value == raw["check/sharpness"][-1]
    assert "wall" in by_kind
    written = [p.rsplit("_", 1)[-1] for p in figures.plot_run(snap, str(tmp_path / "fig"))]
    for name in ("dashboard.png", "jacobians.png", "lyapunov.png", "surface.png", "groups.png"):
        assert name in written
    basic = read.load(train(cfg.make({**TINY, "out_dir": str(tmp_path), "name": "basic"}), progress=False))
    assert {v.kind for v in V.verdicts(basic)}.isdisjoint({"bounds", "lyapunov", "wall", "sharpness"})
    assert not any(n in figures.dashboard_layout(basic)[0] for n in ("jac_steps", "surface_line"))


def surface_of(steps, loss, taken):
    return {"steps": np.array([steps]), "loss": np.array([loss]), "step_taken": np.array([taken])}


def test_wall_criterion():
    from analysis import verdicts as V
    s = np.concatenate([[0.0], 10 ** np.arange(-4, 1 + 1e-9, 1 / 12)])
    bowl = 1.0 - 2.0 * s + 5.0 * s ** 2                 # a quadratic, minimum 0.8 at s = 0.2
    assert V.surface_wall(surface_of(s, bowl, 0.35), 0) is None        # a stable step: no wall
    w = V.surface_wall(surface_of(s, bowl, 1.0), 0)                     # 5× past the minimum, loss 4
    assert w is not None and w["s_min"] == pytest.approx(0.2, rel=0.1) and w["jump"] == pytest.approx(4 / 0.8, rel=1e-2)
    cliff = np.where(s < 0.05, 1.0 - s, 40.0)            # a jump from ≈ 1 to 40 at s = 0.05
    w = V.surface_wall(surface_of(s, cliff, s[-1]), 0)
    assert w is not None and w["s1"] < 0.05 <= w["s2"] and w["loss2"] == 40.0
    assert V.surface_wall(surface_of(s, cliff, 0.04), 0) is None       # the step does not reach it


def test_gated_cells_state_the_trajectory_bound(tmp_path):
    """λ₁γ is the RNN's bound: a GRU or LSTM records NaN and the verdict uses sup_t ‖J_t‖₂."""
    from analysis import read, verdicts as V
    for cell in ("gru", "lstm"):
        snap = read.load(train(full(tmp_path, name=cell, cell=cell), progress=False))
        assert np.isnan(snap.check["lambda1_gamma"]).all()
        v = V.bounds(snap)
        assert v.value == np.nanmax(snap.theory["jac_step_norm"][-1]) and "RNN's" in v.text
