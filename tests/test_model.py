"""The hand-written BPTT against independent computations: naive step-by-step autograd,
gradcheck, torch.nn.RNN/LSTM, and closed forms; each on both backends (the `backend` fixture)."""
import math

import pytest
import torch

import dynamics
from dynamics.models.recurrent import Recurrent
from tasks.errors import InputError
from dynamics.models.recurrence import GRURecurrence, LSTMRecurrence, RNNRecurrence

F64 = torch.float64
CASES = [("rnn", a) for a in ("tanh", "sigmoid", "relu", "linear")] + [("gru", "tanh"), ("lstm", "tanh")]


def naive(model, x):
    """The DESIGN.md equations one step at a time with autograd; returns logits, hs, gates, and
    the per-step hidden tensors (retain_grad) so ∂L/∂h_t can be read off independently."""
    layer = model.layers[0]
    w = {k: v.clone().requires_grad_() for k, v in layer.weights().items()}
    phi = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu, "linear": lambda a: a}[layer.activation]
    σ = torch.sigmoid
    T, B, _ = x.shape
    h = x.new_zeros(B, layer.n_hidden)
    c = torch.zeros_like(h)
    hs, gates = [], {}
    for t in range(T):
        xt = x[t]
        if model.cell == "rnn":
            h = phi(xt @ w["W_xh"] + h @ w["W_hh"] + w["b_h"])
        elif model.cell == "gru":
            z = σ(xt @ w["W_xz"] + h @ w["W_hz"] + w["b_z"])
            r = σ(xt @ w["W_xr"] + h @ w["W_hr"] + w["b_r"])
            cand = torch.tanh(xt @ w["W_xh"] + (r * h) @ w["W_hh"] + w["b_h"])
            h = (1 - z) * h + z * cand
            gates.setdefault("z", []).append(z), gates.setdefault("r", []).append(r)
        else:
            i = σ(xt @ w["W_xi"] + h @ w["W_hi"] + w["b_i"])
            f = σ(xt @ w["W_xf"] + h @ w["W_hf"] + w["b_f"])
            o = σ(xt @ w["W_xo"] + h @ w["W_ho"] + w["b_o"])
            cc = torch.tanh(xt @ w["W_xc"] + h @ w["W_hc"] + w["b_c"])
            c = f * c + i * cc
            h = o * torch.tanh(c)
            for k, v in zip("ifo", (i, f, o)):
                gates.setdefault(k, []).append(v)
        h.retain_grad()
        hs.append(h)
    W_hy = model.W_hy.detach().clone().requires_grad_()
    b_y = model.b_y.detach().clone().requires_grad_()
    top = torch.stack(hs) if model.head == "softmax" else hs[-1]
    logits = top @ W_hy + b_y
    w.update(W_hy=W_hy, b_y=b_y)
    return logits, hs, {k: torch.stack(v) for k, v in gates.items()}, w


def loss_of(logits, target):
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


@pytest.mark.parametrize("cell,activation", CASES)
@pytest.mark.parametrize("head", ["softmax", "last_softmax"])
def test_exact_against_naive_autograd(backend, cell, activation, head):
    torch.manual_seed(0)
    T, B, n_in, H, n_out = 12, 5, 3, 6, 4
    model = dynamics.build_model(cell, n_in, H, n_out, head, activation, init="uniform", seed=1, dtype=F64)
    with torch.no_grad():  # non-zero biases so that every bias gradient is exercised
        for layer in model.layers:
            layer.b.uniform_(-0.5, 0.5)
    x = torch.randn(T, B, n_in, dtype=F64)
    target = torch.randint(n_out, (T, B) if head == "softmax" else (B,))
    out = model(x)
    loss_of(out.logits, target).backward()

    logits, hs, gates, w = naive(model, x)
    loss_of(logits, target).backward()
    assert rel(out.logits, logits) < 1e-12
    assert rel(out.hidden, torch.stack(hs)) < 1e-12
    assert set(out.gates) == set(gates)
    for k in gates:
        assert rel(out.gates[k], gates[k]) < 1e-12
    assert rel(model.hidden_grad, torch.stack([h.grad for h in hs])) < 1e-10
    # every parameter gradient, compared through the per-equation views
    layer = model.layers[0]
    grads = {}
    H_ = layer.n_hidden
    from dynamics.models.recurrent import GATES
    for j, g in enumerate(GATES[cell]):
        cols = slice(j * H_, (j + 1) * H_)
        grads[f"W_x{g}"], grads[f"W_h{g}"], grads[f"b_{g}"] = (
            layer.W_x.grad[:, cols], layer.W_h.grad[:, cols], layer.b.grad[cols])
    grads.update(W_hy=model.W_hy.grad, b_y=model.b_y.grad)
    assert set(grads) == set(w)
    for k in w:
        assert rel(grads[k], w[k].grad) < 1e-10, k


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_gradcheck_recurrence(backend, cell):
    torch.manual_seed(1)
    T, B, H = 4, 3, 3
    sink = Recurrent("rnn", 1, 1)
    k = {"rnn": 1, "gru": 3, "lstm": 4}[cell]
    xp = torch.randn(T, B, k * H, dtype=F64, requires_grad=True)
    h0 = torch.randn(B, H, dtype=F64, requires_grad=True)
    if cell == "rnn":
        W = torch.randn(H, H, dtype=F64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda a, b, c: RNNRecurrence.apply(a, b, c, "tanh", sink), (xp, h0, W))
    elif cell == "gru":
        Wzr = torch.randn(H, 2 * H, dtype=F64, requires_grad=True)
        Whh = torch.randn(H, H, dtype=F64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda a, b, c, d: GRURecurrence.apply(a, b, c, d, sink)[0], (xp, h0, Wzr, Whh))
    else:
        x = torch.randn(T, B, 2, dtype=F64, requires_grad=True)
        c0 = torch.randn(B, H, dtype=F64, requires_grad=True)
        W_x = torch.randn(2, 4 * H, dtype=F64, requires_grad=True)
        b = torch.randn(4 * H, dtype=F64, requires_grad=True)
        W = torch.randn(H, 4 * H, dtype=F64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda *a: LSTMRecurrence.apply(*a, sink)[0], (x, h0, c0, W_x, b, W))


def layer_norm(z, gain, bias):
    mu, var = z.mean(-1, keepdim=True), z.var(-1, unbiased=False, keepdim=True)
    return gain * (z - mu) / torch.sqrt(var + 1e-5) + bias


@pytest.mark.parametrize("cell", ["lstm", "lnlstm"])
def test_cell_states_are_differentiable_exactly(backend, cell):
    """A loss on the hidden states and on the cell states (each sequence's c at its own last step,
    as an encoder hands it to a decoder, and c_T): every input's gradient and ∂L/∂h_t equal
    autograd on the equations written out one step at a time."""
    T, B, H, n_in = 5, 3, 4, 2
    g = torch.Generator().manual_seed(7)
    layer = Recurrent(cell, n_in, H).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(p + 0.5 * torch.randn(p.shape, generator=g, dtype=F64))
    x, h0, c0 = (torch.randn(*s, generator=g, dtype=F64).requires_grad_() for s in ((T, B, n_in), (B, H), (B, H)))
    w_h, w_c, w_last = (torch.randn(*s, generator=g, dtype=F64) for s in ((T, B, H), (B, H), (B, H)))
    lengths = torch.tensor([5, 2, 4])
    rows = torch.arange(B)

    def loss(hs, cs):
        return (w_h * hs).sum() + (w_c * cs[lengths - 1, rows]).sum() + (w_last * cs[-1] ** 2).sum()

    (hs, cs), _ = layer.states(x, (h0, c0))
    loss(hs, cs).backward()
    got = [x.grad, h0.grad, c0.grad] + [p.grad for p in layer.parameters()]
    d = layer.hidden_grad
    for t in (x, h0, c0):
        t.grad = None

    params = {k: p.detach().clone().requires_grad_() for k, p in layer.named_parameters()}
    P = params
    h, c, naive_hs, naive_cs = h0, c0, [], []
    for t in range(T):
        if cell == "lstm":
            a = x[t] @ P["W_x"] + h @ P["W_h"] + P["b"]
        else:
            a = (layer_norm(x[t] @ P["W_x"], P["g_x"], P["beta_x"])
                 + layer_norm(h @ P["W_h"], P["g_h"], P["beta_h"]) + P["b"])
        i, f, o = (torch.sigmoid(a[:, k * H:(k + 1) * H]) for k in (0, 1, 3))
        c = f * c + i * torch.tanh(a[:, 2 * H:3 * H])
        h = o * torch.tanh(c if cell == "lstm" else layer_norm(c, P["g_c"], P["beta_c"]))
        h.retain_grad()
        naive_hs.append(h)
        naive_cs.append(c)
    loss(torch.stack(naive_hs), torch.stack(naive_cs)).backward()
    expect = [x.grad, h0.grad, c0.grad] + [params[k].grad for k, _ in layer.named_parameters()]
    for name, a, b in zip(["x", "h0", "c0"] + [k for k, _ in layer.named_parameters()], got, expect):
        assert torch.allclose(a, b, atol=1e-12, rtol=1e-10), name
    assert torch.allclose(d, torch.stack([h.grad for h in naive_hs]), atol=1e-12, rtol=1e-10)
    # the cell states' part is not negligible: without it ∂L/∂c_0 is far from the above
    (hs, _), _ = layer.states(x, (h0, c0))
    assert not torch.allclose(torch.autograd.grad((w_h * hs).sum(), c0)[0], c0.grad, atol=1e-3)


@pytest.mark.parametrize("lam", [0.5, 1.0, 1.5])
def test_linear_rnn_closed_form(backend, lam):
    """W_hh = λQ, Q orthogonal, loss on the last step: ‖∂L/∂h_t‖ = λ^{T−t} ‖∂L/∂h_T‖ exactly."""
    T, B, H = 100, 1, 8
    model = dynamics.build_model("rnn", 2, H, 1, "last_linear", "linear", init="orthogonal", seed=3, dtype=F64)
    with torch.no_grad():
        Q = torch.linalg.qr(torch.randn(H, H, dtype=F64, generator=torch.Generator().manual_seed(4)))[0]
        model.weights()["W_hh"].copy_(lam * Q)
    x = torch.randn(T, B, 2, dtype=F64)
    out = model(x)
    (out.logits ** 2).sum().backward()
    g = model.hidden_grad[:, 0].norm(dim=1)
    expected = g[-1] * lam ** torch.arange(T - 1, -1, -1, dtype=F64)
    assert rel(g, expected) < 1e-6
    assert ((g - expected).abs() / expected).max() < 1e-6  # relative at every t, vanishing or not
    ratio = (g[0] / g[-1]).item()
    assert ratio == pytest.approx(lam ** (T - 1), rel=1e-6)  # 0.5^99 ≈ 1.6e-30, 1.5^99 ≈ 2.5e17


def torch_layout(W_x, W_h, b, cell):
    """Our row-vector fused tensors in torch.nn's layout: W_ih = W_xᵀ (the gate order i f c o is torch's i f g o)."""
    return W_x.t(), W_h.t(), b


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_equals_torch_nn(backend, cell):
    torch.manual_seed(5)
    T, B, n_in, H, n_out = 20, 4, 3, 7, 5
    model = dynamics.build_model(cell, n_in, H, n_out, "softmax", init="uniform", seed=2, dtype=F64)
    layer = model.layers[0]
    with torch.no_grad():
        layer.b.uniform_(-0.5, 0.5)
    ref = (torch.nn.RNN if cell == "rnn" else torch.nn.LSTM)(n_in, H).double()
    with torch.no_grad():
        W_ih, W_hh, b = torch_layout(layer.W_x, layer.W_h, layer.b, cell)
        ref.weight_ih_l0.copy_(W_ih), ref.weight_hh_l0.copy_(W_hh), ref.bias_ih_l0.copy_(b)
        ref.bias_hh_l0.zero_()
    x = torch.randn(T, B, n_in, dtype=F64)
    target = torch.randint(n_out, (T, B))
    out = model(x)
    loss = loss_of(out.logits, target)
    loss.backward()
    W_hy = model.W_hy.detach().clone().requires_grad_()
    hs_ref, _ = ref(x)
    loss_ref = loss_of(hs_ref @ W_hy + model.b_y.detach(), target)
    loss_ref.backward()
    assert abs(loss.item() - loss_ref.item()) < 1e-12
    assert rel(out.hidden, hs_ref) < 1e-12
    dW_ih, dW_hh, db = torch_layout(layer.W_x.grad, layer.W_h.grad, layer.b.grad, cell)
    assert rel(dW_ih, ref.weight_ih_l0.grad) < 1e-10
    assert rel(dW_hh, ref.weight_hh_l0.grad) < 1e-10
    assert rel(db, ref.bias_ih_l0.grad) < 1e-10
    assert rel(model.W_hy.grad, W_hy.grad) < 1e-10


def test_weights_are_views():
    model = dynamics.build_model("gru", 2, 4, 1, "last_linear", seed=0)
    model.weights()["W_hr"].fill_(0.25)
    model.weights()["b_z"].fill_(-1.0)
    assert (model.layers[0].W_h[:, 4:8] == 0.25).all()
    assert (model.layers[0].b[:4] == -1.0).all()
    assert model.recurrent_matrix().data_ptr() == model.layers[0].W_h[:, 8:].data_ptr()
    lstm = dynamics.build_model("lstm", 2, 4, 1, "last_linear", seed=0, forget_bias=1.0)
    assert (lstm.weights()["b_f"] == 1).all() and (lstm.weights()["b_i"] == 0).all()
    assert lstm.recurrent_matrix().data_ptr() == lstm.layers[0].W_h[:, 8:12].data_ptr()


def test_smart_tanh_and_rho():
    model = dynamics.build_model("rnn", 2, 50, 1, "last_linear", init="smart_tanh", seed=7)
    W = model.weights()["W_hh"].double()
    assert ((W != 0).sum(dim=1) == 15).all()
    assert model.rho() == pytest.approx(0.95, rel=1e-6)
    with torch.no_grad():  # known matrices: a rotation by θ scaled by 2 has radius 2; a Jordan block radius 3
        W = model.weights()["W_hh"]
        W.zero_()
        θ = 0.3
        W[:2, :2] = 2 * torch.tensor([[math.cos(θ), -math.sin(θ)], [math.sin(θ), math.cos(θ)]])
        W[2, 2], W[3, 3], W[2, 3] = 3.0, 3.0, 100.0
    assert model.rho() == pytest.approx(3.0, rel=1e-6)
    assert dynamics.spectral_radius(torch.eye(5) * -1.5) == pytest.approx(1.5)


def test_initialisations():
    H = 40
    for init, std in (("sigmoid", 0.01), ("basic_tanh", 0.1)):
        m = dynamics.build_model("rnn", 3, H, 2, "last_softmax", init=init, seed=0)
        assert m.weights()["W_hh"].std().item() == pytest.approx(std, rel=0.1)
        assert (m.weights()["b_h"] == 0).all()
    m = dynamics.build_model("rnn", 3, H, 2, "last_softmax", init="orthogonal", seed=0)
    W = m.weights()["W_hh"].double()
    assert torch.allclose(W @ W.t(), torch.eye(H, dtype=F64), atol=1e-5)
    m = dynamics.build_model("gru", 3, H, 2, "last_softmax", init="identity", seed=0)
    assert torch.equal(m.weights()["W_hh"], torch.eye(H)) and torch.equal(m.weights()["W_hz"], torch.eye(H))
    a = dynamics.build_model("lstm", 3, H, 2, "last_softmax", init="uniform", seed=11)
    b = dynamics.build_model("lstm", 3, H, 2, "last_softmax", init="uniform", seed=11)
    assert all(torch.equal(a.weights()[k], b.weights()[k]) for k in a.weights())
    assert a.weights()["W_hc"].abs().max() <= 1 / math.sqrt(H)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_chrono_biases_drive_both_loops(backend, cell):
    """The chrono biases are ordinary parameters: both loops (Python and compiled) read them, and
    give the step-by-step equations' outputs and ∂L/∂h_t."""
    torch.manual_seed(0)
    model = dynamics.build_model(cell, 3, 6, 4, "softmax", seed=1, dtype=F64, gate_init="chrono", chrono_max=30)
    x, target = torch.randn(12, 5, 3, dtype=F64), torch.randint(4, (12, 5))
    out = model(x)
    loss_of(out.logits, target).backward()
    logits, hs, _, _ = naive(model, x)
    loss_of(logits, target).backward()
    assert rel(out.logits, logits) < 1e-12
    assert rel(model.hidden_grad, torch.stack([h.grad for h in hs])) < 1e-10


def test_chrono_initialisation():
    """Tallec & Ollivier's chrono biases, against the generator replayed by hand: the uniform
    init draws W_x, then the k recurrent blocks, then u ~ U(0, 1) per unit, τ = 1 + u (T_max − 2);
    LSTM b_f = log τ, b_i = −b_f; GRU b_z = −log τ; every other bias and every weight as without it."""
    H, T_max, seed = 300, 50, 3
    for cell, k in (("lstm", 4), ("gru", 3)):
        chrono = dynamics.build_model(cell, 3, H, 2, "last_softmax", seed=seed, gate_init="chrono", chrono_max=T_max)
        plain = dynamics.build_model(cell, 3, H, 2, "last_softmax", seed=seed)
        g = torch.Generator().manual_seed(seed)
        torch.rand((3, k * H), generator=g, dtype=F64)
        for _ in range(k):
            torch.rand((H, H), generator=g, dtype=F64)
        log_tau = torch.log(1 + torch.rand(H, generator=g, dtype=F64) * (T_max - 2)).float()
        w, p = chrono.weights(), plain.weights()
        assert torch.equal(w["W_x" + ("i" if cell == "lstm" else "z")], p["W_x" + ("i" if cell == "lstm" else "z")])
        if cell == "lstm":
            assert torch.equal(w["b_f"], log_tau) and torch.equal(w["b_i"], -log_tau)
            assert (w["b_c"] == 0).all() and (w["b_o"] == 0).all()
        else:
            assert torch.equal(w["b_z"], -log_tau) and (w["b_r"] == 0).all() and (w["b_h"] == 0).all()
        tau = log_tau.double().exp()                     # the law: τ in [1, T_max − 1], mean T_max / 2
        assert tau.min() >= 1 and tau.max() <= T_max - 1 + 1e-4
        assert tau.mean().item() == pytest.approx(T_max / 2, rel=0.1)
    with pytest.raises(InputError, match="gate_init"):
        dynamics.build_model("rnn", 3, H, 2, "last_softmax", gate_init="chrono", chrono_max=T_max)
    with pytest.raises(InputError, match="chrono_max"):
        dynamics.build_model("gru", 3, H, 2, "last_softmax", gate_init="chrono", chrono_max=2)


@pytest.mark.parametrize("bad", [dict(cell="cnn"), dict(init="zeros"), dict(head="mean"),
                                 dict(activation="gelu"), dict(n_hidden=0), dict(cell="gru", activation="relu")])
def test_bad_arguments(bad):
    args = dict(cell="rnn", n_in=2, n_hidden=4, n_out=1, head="last_linear")
    args.update(bad)
    with pytest.raises(InputError, match=list(bad)[-1]):
        dynamics.build_model(**args)


def test_stacked_embedding_and_state_carry(backend):
    """Token inputs through an embedding, two layers; running a sequence in two halves with the
    state carried gives the same hidden states as one pass."""
    model = dynamics.build_model("lstm", 8, 6, 11, "softmax", n_layers=2, vocab_size=11, seed=0, dtype=F64)
    tokens = torch.randint(11, (10, 3))
    full = model(tokens)
    first = model(tokens[:4])
    second = model(tokens[4:], state=model.final_state)
    assert rel(torch.cat([first.hidden, second.hidden]), full.hidden) < 1e-12
    assert full.logits.shape == (10, 3, 11)
    full.logits.sum().backward()
    assert all(layer.hidden_grad.shape == (10, 3, 6) for layer in model.layers)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_float32_matches_float64(backend, cell):
    model = dynamics.build_model(cell, 3, 16, 2, "last_softmax", seed=0)
    x = torch.randn(30, 4, 3)
    out32 = model(x)
    out32.logits.sum().backward()
    d32 = model.hidden_grad
    out64 = model.double()(x.double())
    out64.logits.sum().backward()
    assert rel(out32.logits.double(), out64.logits) < 1e-5
    assert rel(out32.hidden.double(), out64.hidden) < 1e-5
    assert rel(d32.double(), model.hidden_grad) < 1e-5
