"""dynamics.nn's drop-in RNN, GRU and LSTM against torch.nn (outputs, final states and every
gradient), their ∂L/∂h_t against autograd on a naive per-step unroll with torch.nn's cells, and
convert/restore on a model of one's own."""
import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import dynamics.nn as dnn
from tasks.errors import InputError

KINDS = {"rnn": (torch.nn.RNN, dnn.RNN), "relu": (torch.nn.RNN, dnn.RNN), "gru": (torch.nn.GRU, dnn.GRU),
         "lstm": (torch.nn.LSTM, dnn.LSTM)}
OPTIONS = [dict(), dict(num_layers=2), dict(bidirectional=True), dict(num_layers=2, bidirectional=True),
           dict(batch_first=True), dict(bias=False), dict(num_layers=2, bidirectional=True, batch_first=True)]
N_IN, H, B = 5, 6, 3


def pair(kind, dtype=torch.float64, **options):
    """torch.nn's module and ours, with the same weights (the same seed draws the same init)."""
    theirs, ours = KINDS[kind]
    if kind == "relu":
        options["nonlinearity"] = "relu"
    torch.manual_seed(7)
    a = theirs(N_IN, H, **options).to(dtype)
    torch.manual_seed(7)
    b = ours(N_IN, H, **options).to(dtype)
    return a, b


def initial(kind, module, dtype, batch=B):
    n = module.num_layers * (2 if module.bidirectional else 1)
    h0 = torch.randn(n, batch, H, dtype=dtype, requires_grad=True)
    if kind == "lstm":
        return (h0, torch.randn(n, batch, H, dtype=dtype, requires_grad=True))
    return h0


def run(module, x, hx, weights):
    """Outputs, final states and the gradients of every parameter, the input and the initial state
    of a loss that reads the outputs and the final states."""
    for p in module.parameters():
        p.grad = None
    x = x.detach().requires_grad_()
    inputs = [x] + ([] if hx is None else list(hx) if isinstance(hx, tuple) else [hx])
    for t in inputs[1:]:
        t.grad = None
    out, h_n = module(x, hx)
    finals = h_n if isinstance(h_n, tuple) else (h_n,)
    loss = (out * weights).sum() + sum((f * f).sum() for f in finals)
    loss.backward()
    grads = [p.grad.clone() for p in module.parameters()] + [t.grad.clone() for t in inputs]
    return [out.detach(), *(f.detach() for f in finals)], grads


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(o) or "plain")
def test_float64_matches_torch_nn(kind, options, backend):
    a, b = pair(kind, **options)
    T = 200 if options == OPTIONS[-1] else 40
    x = torch.randn((B, T, N_IN) if a.batch_first else (T, B, N_IN), dtype=torch.float64)
    for hx in (None, initial(kind, a, torch.float64)):
        weights = torch.randn_like(a(x, hx)[0])
        (outs_a, grads_a), (outs_b, grads_b) = run(a, x, hx, weights), run(b, x, hx, weights)
        for u, v in zip(outs_a + grads_a, outs_b + grads_b):
            assert u.shape == v.shape
            np.testing.assert_allclose(v.numpy(), u.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_float32_matches_torch_nn_at_T200(kind, backend):
    a, b = pair(kind, torch.float32, num_layers=2, bidirectional=True)
    x = torch.randn(200, B, N_IN)
    weights = torch.randn(200, B, 2 * H)
    (outs_a, grads_a), (outs_b, grads_b) = run(a, x, None, weights), run(b, x, None, weights)
    for u, v in zip(outs_a + grads_a, outs_b + grads_b):   # float32 rounding of sums over 200 steps
        np.testing.assert_allclose(v.numpy(), u.numpy(), rtol=1e-4, atol=1e-5 * max(1.0, u.abs().max().item()))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_packed_sequences_match_torch_nn(kind, backend):
    a, b = pair(kind, num_layers=2, bidirectional=True)
    lengths = torch.tensor([9, 4, 12, 4])
    x = torch.randn(12, 4, N_IN, dtype=torch.float64)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    hx = initial(kind, a, torch.float64, batch=4)
    out_a, h_a = a(packed, hx)
    out_b, h_b = b(packed, hx)
    assert torch.equal(out_a.batch_sizes, out_b.batch_sizes)
    assert torch.equal(out_a.sorted_indices, out_b.sorted_indices)
    np.testing.assert_allclose(out_b.data.detach(), out_a.data.detach(), atol=1e-12)
    finals_a, finals_b = (h_a, h_b) if kind == "lstm" else ((h_a,), (h_b,))
    weights = torch.randn_like(out_a.data)
    grads = []
    for module, out, finals in ((a, out_a, finals_a), (b, out_b, finals_b)):
        module.zero_grad()
        ((out.data * weights).sum() + sum(f.sum() for f in finals)).backward()
        grads.append([p.grad for p in module.parameters()])
    for u, v in zip(*grads):
        np.testing.assert_allclose(v, u, atol=1e-11)
    for u, v in zip(finals_a, finals_b):
        np.testing.assert_allclose(v.detach(), u.detach(), atol=1e-12)
    # every step beyond a sequence's end is outside the recurrence: no gradient reaches it
    g = b.hidden_grad(1, reverse=True)
    padded = torch.arange(12)[:, None] >= lengths[None, :]
    assert torch.all(g[padded] == 0) and torch.all(g[~padded].abs().sum(-1) > 0)
    order = lengths.argsort(descending=True)                   # the same, packed already sorted
    in_order = pack_padded_sequence(x[:, order], lengths[order])
    np.testing.assert_allclose(b(in_order)[0].data.detach(), a(in_order)[0].data.detach(), atol=1e-12)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_dropout_between_layers_draws_as_torch_nn(kind):
    a, b = pair(kind, num_layers=3, dropout=0.4, bidirectional=True)
    x = torch.randn(15, B, N_IN, dtype=torch.float64)
    torch.manual_seed(3)
    out_a = a(x)[0]
    torch.manual_seed(3)
    out_b = b(x)[0]
    np.testing.assert_allclose(out_b.detach(), out_a.detach(), atol=1e-12)
    a.eval(), b.eval()
    assert torch.allclose(a(x)[0], b(x)[0], atol=1e-12)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_unbatched_input_and_state_dict_both_ways(kind):
    a, b = pair(kind, num_layers=2)
    assert list(a.state_dict()) == list(b.state_dict())
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)   # the same init from the same seed
    theirs, ours = KINDS[kind]
    c = ours(N_IN, H, num_layers=2, nonlinearity="relu") if kind == "relu" else ours(N_IN, H, num_layers=2)
    c.load_state_dict(a.state_dict())
    d = theirs(N_IN, H, num_layers=2, nonlinearity="relu") if kind == "relu" else theirs(N_IN, H, num_layers=2)
    d.load_state_dict(b.state_dict())
    x = torch.randn(10, N_IN, dtype=torch.float64)
    for m in (b, c.double(), d.double()):
        out, h = m(x)
        assert out.shape == (10, H)
        np.testing.assert_allclose(out.detach(), a(x)[0].detach(), atol=1e-12)


# ----------------------------------------------------------------- ∂L/∂h_t against a naive unroll

CELLS = {"rnn": torch.nn.RNNCell, "relu": torch.nn.RNNCell, "gru": torch.nn.GRUCell, "lstm": torch.nn.LSTMCell}


def naive_unroll(kind, module, x, hx):
    """The module's equations one step at a time with torch.nn's cells and autograd: the output,
    the final states, and every layer and direction's h_t (retained, so .grad is ∂L/∂h_t)."""
    directions = 2 if module.bidirectional else 1
    T = x.shape[0]
    states, hs_all, finals = hx, {}, []
    for layer in range(module.num_layers):
        outs = []
        for direction in range(directions):
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            extra = {"nonlinearity": "relu"} if kind == "relu" else {}
            cell = CELLS[kind](x.shape[2], H, bias=module.bias, **extra).double()
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                if hasattr(cell, name) and getattr(cell, name) is not None:
                    setattr(cell, name, getattr(module, name + suffix))
            k = layer * directions + direction
            state = tuple(s[k] for s in states)
            hs = []
            for t in (range(T) if direction == 0 else range(T - 1, -1, -1)):
                state = cell(x[t], state if kind == "lstm" else state[0])
                state = state if isinstance(state, tuple) else (state,)
                state[0].retain_grad()
                hs.append(state[0])
            finals.append(state)
            hs_all[(layer, direction)] = hs if direction == 0 else hs[::-1]   # input order
            outs.append(torch.stack(hs_all[(layer, direction)]))
        x = torch.cat(outs, 2)
    return x, finals, hs_all


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_hidden_grad_is_the_total_derivative_of_a_naive_unroll(kind, backend):
    _, b = pair(kind, num_layers=2, bidirectional=True)
    T = 25
    x = torch.randn(T, B, N_IN, dtype=torch.float64)
    hx = initial(kind, b, torch.float64)
    hx = hx if isinstance(hx, tuple) else (hx,)
    weights = torch.randn(T, B, 2 * H, dtype=torch.float64)
    out, finals, hs = naive_unroll(kind, b, x, [h.detach() for h in hx])
    ((out * weights).sum() + sum((f[0] ** 2).sum() for f in finals)).backward()
    b_out, b_final = b(x, tuple(h.detach() for h in hx) if kind == "lstm" else hx[0].detach())
    b_final = b_final[0] if kind == "lstm" else b_final
    ((b_out * weights).sum() + (b_final ** 2).sum()).backward()
    for (layer, direction), steps in hs.items():
        expected = torch.stack([h.grad for h in steps])
        got = b.hidden_grad(layer, reverse=bool(direction))
        assert got.shape == (T, B, H)
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
        assert got.abs().max() > 0


def test_gates_rho_and_parts():
    _, lstm = pair("lstm", num_layers=2, bidirectional=True)
    x = torch.randn(8, B, N_IN, dtype=torch.float64)
    lstm(x)[0].sum().backward()
    gates = lstm.gates(1, reverse=True)
    assert sorted(gates) == ["f", "i", "o"]
    W = lstm.weight_hh_l1_reverse.detach()[2 * H:3 * H]      # the candidate's block of torch's layout
    assert lstm.rho(1, reverse=True) == pytest.approx(np.abs(np.linalg.eigvals(W.numpy())).max(), rel=1e-12)
    parts = lstm.parts()
    assert [p.name for p in parts] == ["l0", "l0_reverse", "l1", "l1_reverse"]
    # a part is in its direction's own order of steps: the reverse direction's first step is the last input
    assert torch.equal(parts[3].grad, lstm.hidden_grad(1, reverse=True).flip(0))
    assert torch.equal(parts[3].hidden[0], lstm(x)[0][-1, :, H:])
    _, gru = pair("gru")
    gru(x)[0].sum().backward()
    z = gru.gates()["z"]   # torch.nn.GRU's z: h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}
    w_ih, b_ih, b_hh = gru.weight_ih_l0, gru.bias_ih_l0, gru.bias_hh_l0
    h1 = gru(x)[0][0]
    z0 = torch.sigmoid(x[0] @ w_ih[H:2 * H].t() + b_ih[H:2 * H] + b_hh[H:2 * H])
    np.testing.assert_allclose(z[0].detach(), z0.detach(), atol=1e-14)
    assert h1.shape == (B, H)


def test_refusals():
    lstm = dnn.LSTM(N_IN, H, proj_size=2)
    with pytest.raises(InputError, match="proj_size=2 is not supported"):
        lstm(torch.randn(4, 2, N_IN))
    with pytest.raises(InputError, match="input_size=5"):
        dnn.GRU(N_IN, H)(torch.randn(4, 2, N_IN + 1))
    with pytest.raises(InputError, match="nothing recorded yet"):
        dnn.GRU(N_IN, H).hidden_grad()
    with pytest.raises(InputError, match="not bidirectional"):
        m = dnn.RNN(N_IN, H)
        m(torch.randn(4, 2, N_IN))
        m.hidden_grad(reverse=True)
    with pytest.raises(InputError, match="holds no torch.nn.RNN, GRU or LSTM"):
        dnn.convert(torch.nn.Linear(3, 3))
    with pytest.raises(InputError, match="proj_size=2 is not supported; nothing was converted"):
        dnn.convert(torch.nn.Sequential(torch.nn.GRU(3, 4), torch.nn.LSTM(4, 4, proj_size=2)))


# ------------------------------------------------------------------------- convert and restore

class Tagger(torch.nn.Module):
    """A model of one's own with two recurrent modules: a bidirectional GRU encoder and an LSTM."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(20, N_IN)
        self.encoder = torch.nn.GRU(N_IN, H, bidirectional=True, batch_first=True)
        self.decoder = torch.nn.Sequential(torch.nn.LSTM(2 * H, H, num_layers=2, batch_first=True))
        self.head = torch.nn.Linear(H, 4)

    def forward(self, tokens):
        h, _ = self.encoder(self.embed(tokens))
        h, _ = self.decoder(h)
        return self.head(h)


def test_convert_keeps_outputs_parameters_and_optimiser():
    torch.manual_seed(0)
    model = Tagger().double()
    tokens = torch.randint(0, 20, (B, 11))
    before = model(tokens).detach()
    params = list(model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert dnn.convert(model) is model
    assert type(model.encoder) is dnn.GRU and type(model.decoder[0]) is dnn.LSTM
    assert all(p is q for p, q in zip(params, model.parameters()))
    np.testing.assert_allclose(model(tokens).detach(), before, atol=1e-13)
    model(tokens).sum().backward()
    assert model.decoder[0].hidden_grad(1).shape == (11, B, H)
    opt.step()                                                   # the optimiser trains the same tensors
    after_step = model(tokens).detach()
    assert not torch.allclose(after_step, before)
    dnn.restore(model)
    assert type(model.encoder) is torch.nn.GRU and type(model.decoder[0]) is torch.nn.LSTM
    np.testing.assert_allclose(model(tokens).detach(), after_step, atol=1e-13)
    lone = torch.nn.LSTM(N_IN, H)
    assert type(dnn.convert(lone)) is dnn.LSTM


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_step_jacobians_against_finite_differences_and_the_hand_written_ones(kind):
    _, b = pair(kind, num_layers=2, bidirectional=True)
    x = torch.randn(9, B, N_IN, dtype=torch.float64)
    b(x)[0].sum().backward()
    J = b.step_jacobians(1, reverse=True, batch=2)
    trace = b._trace(1, True)
    n = 2 * H if kind == "lstm" else H
    assert len(J) == 9 and J[4].shape == (2, n, n)
    # central differences of one step of torch.nn's cell, at step t of the reverse direction
    t, eps = 5, 1e-6
    w_ih, w_hh, b_ih, b_hh = (w.detach() for w in b.layer_weights(1, 1))
    cell = CELLS[kind](2 * H, H, **({"nonlinearity": "relu"} if kind == "relu" else {})).double()
    with torch.no_grad():
        for name, w in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), (w_ih, w_hh, b_ih, b_hh)):
            getattr(cell, name).copy_(w)
    s = torch.cat([trace.hidden[t - 1, :2], trace.cells[t - 1, :2]], 1) if kind == "lstm" else trace.hidden[t - 1, :2]
    s = s.detach()

    def step(s):
        out = cell(trace.input[t, :2].detach(), (s[:, :H], s[:, H:]) if kind == "lstm" else s)
        return torch.cat(out, 1) if kind == "lstm" else out
    with torch.no_grad():
        fd = torch.stack([(step(s + eps * e) - step(s - eps * e)) / (2 * eps) for e in torch.eye(n, dtype=s.dtype)], 2)
    np.testing.assert_allclose(J[t], fd, atol=1e-8)
    if kind in ("rnn", "relu", "lstm"):   # the harness's hand-written J of the same equations
        from dynamics.models.recurrent import Recurrent
        from dynamics.probes.theory import step_jacobian
        layer = Recurrent("lstm" if kind == "lstm" else "rnn", 2 * H, H, "relu" if kind == "relu" else "tanh").double()
        with torch.no_grad():
            layer.W_x.copy_(w_ih.t()), layer.W_h.copy_(w_hh.t()), layer.b.copy_(b_ih + b_hh)
        state = (s[:, :H], s[:, H:]) if kind == "lstm" else (s,)
        expected = step_jacobian(layer, trace.input[t, :2].detach(), state).detach()
        np.testing.assert_allclose(J[t], expected, atol=1e-13)
