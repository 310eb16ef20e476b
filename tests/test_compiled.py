"""The compiled loops (dynamics/models/csrc/recurrence.cpp) against the Python loops of recurrence.py,
and the choice between them: config key, DYNAMICS_BACKEND, and the fallback when a build fails."""
from types import SimpleNamespace

import pytest
import torch

import dynamics
from dynamics.models import compiled
from dynamics.models.lnlstm import LNLSTMRecurrence
from dynamics import config as cfg
from tasks.errors import InputError

needs_toolchain = pytest.mark.skipif(compiled.missing_toolchain() is not None, reason="no C++ toolchain")
CASES = [("rnn", a) for a in ("tanh", "sigmoid", "relu", "linear")] + [("gru", "tanh"), ("lstm", "tanh"),
                                                                        ("lnlstm", "tanh")]


def one_step(cell, activation, dtype, backend, T, B, H, state):
    """Outputs, ∂L/∂h_t and every gradient of one backward pass of a 2-layer model on `backend`."""
    compiled.use(backend)
    try:
        model = dynamics.build_model(cell, 3, H, 4, "softmax", activation, n_layers=2, seed=5, dtype=dtype)
        with torch.no_grad():
            for layer in model.layers:
                layer.b.uniform_(-1, 1, generator=torch.Generator().manual_seed(6))
        g = torch.Generator().manual_seed(7)
        x = torch.randn(T, B, 3, generator=g, dtype=dtype)
        assert (compiled.ops_for(x) is not None) == (backend == "compiled")
        if state:  # an initial state that is a non-contiguous view, as a carried state can be
            wide = torch.randn(B, 2 * H, generator=g, dtype=dtype)[:, ::2]
            state = [(wide, wide.flip(0)) if cell in ("lstm", "lnlstm") else (wide,) for _ in model.layers]
        out = model(x, state=state or None)
        (out.logits * torch.randn(out.logits.shape, generator=g, dtype=dtype)).sum().backward()
        return ([out.logits, out.hidden, *out.gates.values()] + [layer.hidden_grad for layer in model.layers]
                + [p.grad for p in model.parameters()])
    finally:
        compiled.use("auto")


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("cell,activation", CASES)
@pytest.mark.parametrize("T,B,H,state", [(7, 3, 17, False), (1, 1, 5, True), (9, 40, 33, True)])
@needs_toolchain
def test_compiled_equals_python(cell, activation, dtype, tol, T, B, H, state):
    ours = one_step(cell, activation, dtype, "compiled", T, B, H, state)
    ref = one_step(cell, activation, dtype, "python", T, B, H, state)
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape and a.dtype == dtype
        assert ((a - b).abs().max() / b.abs().max()).item() <= tol


@pytest.mark.parametrize("cell,activation", [("rnn", "tanh"), ("gru", "tanh"), ("lstm", "tanh"), ("lnlstm", "tanh")])
@needs_toolchain
def test_rows_split_over_two_threads_give_the_python_numbers(cell, activation):
    """At B = 40, H = 64 each step's rows are split over the threads (blocks of 4096 values)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ours = one_step(cell, activation, torch.float64, "compiled", 6, 40, 64, True)
        ref = one_step(cell, activation, torch.float64, "python", 6, 40, 64, True)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(ours, ref):
        assert ((a - b).abs().max() / b.abs().max()).item() <= 1e-12


def lnlstm_gradients(backend, dtype, loss_on_states):
    """Outputs, ∂L/∂h_t and every input's gradient of LNLSTMRecurrence with a loss on its cell
    states (as a decoder reading an encoder's c_t), and on its states too when `loss_on_states`."""
    compiled.use(backend)
    try:
        T, B, H = 6, 4, 9
        g = torch.Generator().manual_seed(3)
        r = lambda *shape: torch.randn(*shape, generator=g, dtype=dtype)   # noqa: E731
        # x W_x, h0, c0, W_h, then gain and bias of LN_x, b, and gain and bias of LN_h and LN_c
        args = [r(T, B, 4 * H), r(B, H), r(B, H), 0.3 * r(H, 4 * H), 1 + 0.3 * r(4 * H), r(4 * H), r(4 * H),
                1 + 0.3 * r(4 * H), r(4 * H), 1 + 0.3 * r(H), r(H)]
        args = [a.requires_grad_() for a in args]
        sink = SimpleNamespace(hidden_grad=None)
        hs, cs, gates = LNLSTMRecurrence.apply(*args, sink)
        loss = (cs * r(T, B, H)).sum()
        if loss_on_states:
            loss = loss + (hs * r(T, B, H)).sum()
        loss.backward()
        return [hs, cs, gates, sink.hidden_grad] + [a.grad for a in args]
    finally:
        compiled.use("auto")


@pytest.mark.parametrize("loss_on_states", [True, False])
@needs_toolchain
def test_lnlstm_cell_state_gradients(loss_on_states):
    ours = lnlstm_gradients("compiled", torch.float64, loss_on_states)
    ref = lnlstm_gradients("python", torch.float64, loss_on_states)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        assert ((a - b).abs().max() / b.abs().max()).item() <= 1e-12


def test_selection(monkeypatch):
    cpu, other = torch.zeros(1), torch.zeros(1, device="meta")
    monkeypatch.setenv("DYNAMICS_BACKEND", "python")
    compiled.use("auto")               # a run's choice reads the environment
    assert compiled.ops_for(cpu) is None
    monkeypatch.setenv("DYNAMICS_BACKEND", "compiled")
    assert compiled.ops_for(cpu) is None   # ... once, not at every call
    compiled.use("compiled")           # the config key wins over the environment
    try:
        assert compiled.backend() == "compiled"
        assert compiled.ops_for(other) is None   # only CPU tensors take the compiled loops
    finally:
        compiled.use("auto")
    monkeypatch.setenv("DYNAMICS_BACKEND", "fast")
    compiled.use("auto")
    with pytest.raises(InputError, match="DYNAMICS_BACKEND"):
        compiled.ops_for(cpu)
    monkeypatch.delenv("DYNAMICS_BACKEND")
    compiled.use("auto")
    with pytest.raises(InputError, match="backend"):
        cfg.make({"backend": "gpu"})
    assert cfg.make({"backend": "python"}).backend == "python"


@needs_toolchain
def test_failed_build_falls_back(tmp_path, monkeypatch, capsys):
    """A source that does not compile: `auto` says so in one line and runs the Python loops with
    the same numbers; `compiled` raises."""
    broken = tmp_path / "recurrence.cpp"
    broken.write_text("#error this source does not compile\n")
    monkeypatch.setattr(compiled, "SOURCES", (broken,))
    monkeypatch.setattr(compiled, "_ops", None)
    monkeypatch.setattr(compiled, "_failure", None)
    monkeypatch.setenv("DYNAMICS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DYNAMICS_BACKEND", raising=False)
    compiled.use("auto")
    model = dynamics.build_model("lstm", 3, 6, 2, "last_softmax", seed=0, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    out = model(x)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "compiling" in lines[0]
    assert "unavailable" in lines[1] and "Python loops" in lines[1]
    compiled.use("python")
    try:
        assert torch.equal(model(x).hidden, out.hidden)
        compiled.use("compiled")
        with pytest.raises(RuntimeError, match="unavailable"):
            model(x)
    finally:
        compiled.use("auto")
