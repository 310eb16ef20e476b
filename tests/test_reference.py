"""The reference architectures: the LayerNorm LSTM against autograd on a naive implementation
and gradcheck; the Transformer's causal mask, its hooked ∂L/∂x_t against autograd, its
per-check arrays against direct computations, exact resume, and the architecture keys."""
import math

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dynamics
from dynamics import config as cfg
from dynamics.cli import main
from dynamics.models import compiled
from dynamics.models.lnlstm import LNLSTMRecurrence
from dynamics.models.transformer import build_transformer, sinusoidal
from dynamics.train import train

F64 = torch.float64


# -- LayerNorm LSTM ------------------------------------------------------------------------------

@pytest.fixture(params=["python", "compiled"])
def backend(request):
    """Each LN-LSTM exactness test on both loops: Python, and compiled where a toolchain is."""
    if request.param == "compiled" and compiled.missing_toolchain() is not None:
        pytest.skip("no C++ toolchain")
    compiled.use(request.param)
    try:
        assert (compiled.ops_for(torch.zeros(1)) is not None) == (request.param == "compiled")
        yield request.param
    finally:
        compiled.use("auto")


def ln(z, gain, bias):
    """Layer norm written out: (z − mean)/√(var + ε) γ + β."""
    mu = z.mean(-1, keepdim=True)
    var = ((z - mu) ** 2).mean(-1, keepdim=True)
    return (z - mu) / torch.sqrt(var + 1e-5) * gain + bias


def naive_lnlstm(model, x):
    """Ba et al.'s equations one step at a time with autograd on cloned weights: logits, the
    per-step h (retain_grad), the gates, and the weight copies."""
    w = {k: v.clone().requires_grad_() for k, v in model.layers[0].weights().items()}
    cat = lambda kind: torch.cat([w[f"W_{kind}{g}"] for g in "ifco"], dim=1)   # noqa: E731
    W_x, W_h, b = cat("x"), cat("h"), torch.cat([w[f"b_{g}"] for g in "ifco"])
    T, B, _ = x.shape
    H = model.layers[0].n_hidden
    h, c = x.new_zeros(B, H), x.new_zeros(B, H)
    hs, gates = [], {g: [] for g in "ifo"}
    for t in range(T):
        a = ln(x[t] @ W_x, w["g_x"], w["beta_x"]) + ln(h @ W_h, w["g_h"], w["beta_h"]) + b
        i, f, cc, o = torch.sigmoid(a[:, :H]), torch.sigmoid(a[:, H:2 * H]), torch.tanh(a[:, 2 * H:3 * H]), \
            torch.sigmoid(a[:, 3 * H:])
        c = f * c + i * cc
        h = o * torch.tanh(ln(c, w["g_c"], w["beta_c"]))
        h.retain_grad()
        hs.append(h)
        for k, v in zip("ifo", (i, f, o)):
            gates[k].append(v)
    w["W_hy"], w["b_y"] = model.W_hy.detach().clone().requires_grad_(), model.b_y.detach().clone().requires_grad_()
    top = torch.stack(hs) if model.head == "softmax" else hs[-1]
    return top @ w["W_hy"] + w["b_y"], hs, {k: torch.stack(v) for k, v in gates.items()}, w


@pytest.mark.parametrize("head", ["softmax", "last_softmax"])
def test_lnlstm_exact_against_naive_autograd(head, backend):
    torch.manual_seed(0)
    model = dynamics.build_model("lnlstm", 3, 5, 4, head, seed=1, dtype=F64)
    with torch.no_grad():   # gains and biases away from 1 and 0, so that every term counts
        for name, p in model.layers[0].named_parameters():
            if name.startswith(("g_", "beta_")):
                p.add_(torch.randn_like(p) * 0.3)
    x = torch.randn(7, 2, 3, dtype=F64)
    y = torch.randint(4, (7, 2) if head == "softmax" else (2,))
    out = model(x)
    F.cross_entropy(out.logits.reshape(-1, 4), y.reshape(-1)).backward()
    logits, hs, gates, w = naive_lnlstm(model, x)
    F.cross_entropy(logits.reshape(-1, 4), y.reshape(-1)).backward()
    assert torch.allclose(out.logits, logits, atol=1e-12)
    assert torch.allclose(out.hidden, torch.stack(hs), atol=1e-12)
    for k in "ifo":
        assert torch.allclose(out.gates[k], gates[k], atol=1e-12), k
    expected = torch.stack([h.grad for h in hs])
    assert torch.allclose(model.hidden_grad, expected, atol=1e-12, rtol=1e-9)
    assert expected[0].abs().max() > 1e-4   # the first step's gradient is not trivially zero
    grads = {}
    layer = model.layers[0]
    for k in w:
        if k in ("W_hy", "b_y"):
            continue
        grads[k] = w[k].grad
    H = 5
    for j, g in enumerate("ifco"):
        cols = slice(j * H, (j + 1) * H)
        assert torch.allclose(layer.W_x.grad[:, cols], grads[f"W_x{g}"], atol=1e-12)
        assert torch.allclose(layer.W_h.grad[:, cols], grads[f"W_h{g}"], atol=1e-12)
        assert torch.allclose(layer.b.grad[cols], grads[f"b_{g}"], atol=1e-12)
    for k in ("g_x", "beta_x", "g_h", "beta_h", "g_c", "beta_c"):
        assert torch.allclose(getattr(layer, k).grad, grads[k], atol=1e-12), k
    assert torch.allclose(model.W_hy.grad, w["W_hy"].grad, atol=1e-12)


def test_lnlstm_gradcheck(backend):
    torch.manual_seed(0)
    T, B, H = 4, 3, 3

    class Sink:
        hidden_grad = None
    gain = lambda n: 1 + 0.3 * torch.randn(n, dtype=F64)   # noqa: E731
    # x W_x, h0, c0, W_h, then gain and bias of LN_x, b, and gain and bias of LN_h and LN_c
    args = [torch.randn(T, B, 4 * H, dtype=F64), torch.randn(B, H, dtype=F64), torch.randn(B, H, dtype=F64),
            torch.randn(H, 4 * H, dtype=F64), gain(4 * H), torch.randn(4 * H, dtype=F64), torch.randn(4 * H, dtype=F64),
            gain(4 * H), torch.randn(4 * H, dtype=F64), gain(H), torch.randn(H, dtype=F64)]
    args = [a.requires_grad_() for a in args]
    assert torch.autograd.gradcheck(lambda *a: LNLSTMRecurrence.apply(*a, Sink())[0], args)
    # the cell states are outputs too: a decoder stepping one token at a time carries them
    assert torch.autograd.gradcheck(lambda *a: LNLSTMRecurrence.apply(*a, Sink())[1], args)


def test_lnlstm_weights_views_rho_and_forget_bias():
    model = dynamics.build_model("lnlstm", 3, 6, 2, "last_softmax", init="orthogonal", forget_bias=2.0, seed=0)
    w = model.weights()
    assert torch.equal(w["b_f"], torch.full((6,), 2.0)) and torch.equal(w["g_c"], torch.ones(6))
    w["W_hc"][0, 0] = 42.0   # a view: writing it writes the layer
    assert model.layers[0].W_h[0, 12] == 42.0
    w["W_hc"][0, 0] = 0.0
    eig = torch.linalg.eigvals(model.layers[0].W_h.detach()[:, 12:18].double()).abs().max().item()
    assert model.rho() == pytest.approx(eig)
    state_carry = model(torch.randn(5, 2, 3)).hidden
    assert state_carry.shape == (5, 2, 6) and len(model.final_state[0]) == 2   # (h, c)


# -- Transformer ---------------------------------------------------------------------------------

def tiny_transformer(head="softmax", vocab=None, positions="learned", n_layers=2, dropout=0.0, seed=0):
    c = cfg.make(dict(cell="transformer", d_model=16, n_heads=4, n_layers=n_layers, positions=positions,
                      dropout=dropout, seed=seed, task="torder"))
    return build_transformer(c, 5, 4 if vocab is None else vocab, head, 12, vocab, dtype=F64)


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_causal_mask(positions):
    """The logits at step t do not change when the inputs after t change."""
    torch.manual_seed(0)
    model = tiny_transformer(positions=positions).eval()
    x = torch.randn(10, 3, 5, dtype=F64)
    t = 4
    changed = x.clone()
    changed[t + 1:] = torch.randn(10 - t - 1, 3, 5, dtype=F64) * 5
    a, b = model(x).logits, model(changed).logits
    assert torch.equal(a[:t + 1], b[:t + 1])
    assert not torch.allclose(a[t + 1:], b[t + 1:])     # later steps do see the change
    lm = tiny_transformer(vocab=7).eval()
    ids = torch.randint(7, (10, 2))
    other = ids.clone()
    other[t + 1:] = (ids[t + 1:] + 1) % 7
    assert torch.equal(lm(ids).logits[:t + 1], lm(other).logits[:t + 1])


@pytest.mark.parametrize("head", ["softmax", "last_softmax"])
def test_hooked_grad_equals_autograd_on_retained_tensors(head):
    torch.manual_seed(0)
    model = tiny_transformer(head=head, n_layers=3)
    x = torch.randn(9, 4, 5, dtype=F64)
    y = torch.randint(4, (9, 4) if head == "softmax" else (4,))
    out = model(x)
    loss = F.cross_entropy(out.logits.reshape(-1, 4), y.reshape(-1))
    expected = torch.autograd.grad(loss, model.residuals, retain_graph=True)   # (B, T, d) each
    loss.backward()
    parts = model.parts()
    assert [p.name for p in parts] == ["block0", "block1", "block2"]
    for part, e in zip(parts, expected):
        assert torch.allclose(part.grad, e.transpose(0, 1), atol=1e-14)
        assert part.hidden.shape == (9, 4, 16) and part.cell == "transformer" and part.gates == {}
    assert parts[0].grad[0].abs().max() > 0   # the first position gets a gradient through attention
    if head == "last_softmax":                # above the last block only the last position is read
        assert (parts[-1].grad[:-1] == 0).all() and parts[-1].grad[-1].abs().max() > 0
    assert model.hidden_grad is parts[-1].grad
    assert all(p.hidden is None and p.grad is None for p in tiny_transformer().parts())


def test_check_values_against_direct_computation():
    torch.manual_seed(0)
    model = tiny_transformer(n_layers=2)
    x = torch.randn(8, 3, 5, dtype=F64)
    out = model(x)
    out.logits.pow(2).sum().backward()
    example = torch.randn(6, 1, 5, dtype=F64)
    v = model.check_values(example)
    # attention of block 0 recomputed by hand from its weights
    h = model.embed(x.transpose(0, 1)) + model.pos[:8]
    q, k, _ = model.blocks[0].attn.qkv(model.blocks[0].ln1(h)).split(16, dim=2)
    q, k = (t.view(3, 8, 4, 4).transpose(1, 2) for t in (q, k))
    s = q @ k.transpose(-2, -1) / 2.0
    s = s.masked_fill(torch.ones(8, 8, dtype=torch.bool).triu(1), -math.inf)
    p = s.softmax(-1)
    entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(-1).mean(dim=(0, 2))
    assert np.allclose(v["attn_entropy"][0], entropy.detach().numpy())
    assert (v["attn_entropy"] <= np.mean(np.log(np.arange(1, 9))) + 1e-9).all()   # at most mean ln(t + 1)
    norms = [torch.cat([p.grad.flatten() for p in b.parameters()]).norm().item() for b in model.blocks]
    assert np.allclose(v["block_grad_norm"], norms)
    maps = v["attn_map"]
    assert maps.shape == (2, 4, 6, 6) and np.allclose(maps.sum(-1), 1, atol=1e-6)
    assert (np.triu(maps[0, 0], 1) == 0).all()
    assert model.training and model.residuals    # the example left the training state alone


def test_sinusoidal_table():
    table = sinusoidal(5, 6)
    assert torch.allclose(table[3, 0], torch.sin(torch.tensor(3.0, dtype=F64)))
    assert torch.allclose(table[2, 3], torch.cos(torch.tensor(2 * 10000 ** (-2 / 6), dtype=F64)))


def test_tied_weights_and_generation_context():
    model = tiny_transformer(vocab=7)
    tied = build_transformer(cfg.make(dict(cell="transformer", d_model=16, n_heads=4, task="text", tie_weights=True)),
                             None, 7, "softmax", 12, 7)
    assert tied.out.weight is tied.embed.weight
    model.eval()
    ids = torch.randint(7, (20, 2))
    window = ids[-12:]
    full = model(window).logits[-1]
    # one new token with the earlier ids as the carried state sees the same context
    stepped = model(window[-1:], state=window[:-1]).logits[-1]
    assert torch.allclose(full, stepped, atol=1e-12)
    assert model.final_state.shape == (11, 2)


TINY = dict(task="torder", cell="transformer", d_model=16, n_heads=2, n_layers=2, batch_size=5, eval_batch_size=40,
            chunk_batch_size=20, check_freq=5, min_length=10, max_length=14, max_iters=20, optimizer="adam",
            lr=0.003, dropout=0.1)


def read(path):
    with h5py.File(path, "r") as f:
        out = {}
        f.visititems(lambda k, v: out.__setitem__(k, v[()]) if isinstance(v, h5py.Dataset) else None)
        return dict(f.attrs), out


def test_transformer_run_file_and_bit_identical_resume(tmp_path):
    full = train(cfg.make({**TINY, "out_dir": str(tmp_path / "full"), "name": "r"}), progress=False)

    def stop_after_two(run, row):
        if run.checks == 2:
            raise KeyboardInterrupt
    c = cfg.make({**TINY, "out_dir": str(tmp_path / "part"), "name": "r"})
    path = train(c, progress=False, after_check=stop_after_two)
    assert read(path)[0]["status"] == "interrupted"
    train(c, resume=True, progress=False)
    attrs, resumed = read(path)
    _, reference = read(full)
    assert attrs["status"] == "finished" and set(resumed) == set(reference)
    for k in reference:
        if k not in ("iter/step_time", "check/wall_time", "check/cpu_time"):
            assert np.array_equal(resumed[k], reference[k], equal_nan=True), k
    assert resumed["check/attn_entropy"].shape == (4, 2, 2) and resumed["check/block_grad_norm"].shape == (4, 2)
    assert resumed["check/attn_map"].shape == (4, 2, 2, 10, 10)
    assert resumed["check/layers/block0/grad_time"].shape[0] == 4 and "check/grad_time" in resumed
    assert attrs["cell"] == "transformer" and attrs["recurrent_matrix"] == ""
    npz = np.load(path.with_name("r_final_state.npz"))
    assert "g_t" in npz and "saturation" not in npz
    # the top block is read at the last step only: its zeros before it are no vanishing
    from analysis import verdicts
    from analysis.figures import plot_run
    from analysis.read import load
    snap = load(path)
    assert snap.part_names == {0: "block0", 1: "block1"}
    assert verdicts.read_at_last_step_only(snap, 1) and not verdicts.read_at_last_step_only(snap, 0)
    written = plot_run(snap, tmp_path / "figures")
    assert any(p.endswith("_attention_maps.png") for p in written) and any(p.endswith("_attention.png") for p in written)


ARCH_BAD = [
    (["--cell", "transformer", "--d-model", "10", "--n-heads", "4"], "n_heads"),
    (["--cell", "transformer", "--activation", "tanh"], "activation"),
    (["--cell", "transformer", "--nhid", "20"], "n_hidden"),
    (["--cell", "rnn", "--n-heads", "2"], "n_heads"),
    (["--cell", "lstm", "--positions", "sinusoidal"], "positions"),
    (["--cell", "gru", "--d-model", "32"], "d_model"),
    (["--cell", "transformer", "--positions", "rotary"], "positions"),
]


@pytest.mark.parametrize("args,key", ARCH_BAD)
def test_architecture_keys_one_line_exit_2_no_file(refused, args, key):
    assert key in refused("--task", "torder", *args)


def test_transformer_language_model_trains_and_samples(tmp_path):
    from dynamics.sample import continuation
    book = tmp_path / "book.txt"
    book.write_text("the cat sat on the mat. " * 200, encoding="utf-8")
    c = cfg.make(dict(task="text", text=str(book), cell="transformer", d_model=16, n_heads=2, n_layers=1,
                      batch_size=4, min_length=16, optimizer="adam", lr=0.01, max_iters=30, check_freq=15,
                      eval_batch_size=200, sample_chars=10, tie_weights=True, out_dir=str(tmp_path), name="lm"))
    path = train(c, progress=False)
    attrs, data = read(path)
    assert data["check/valid_loss"][-1] < data["check/valid_loss"][0]
    assert data["check/attn_map"].shape == (2, 1, 2, 16, 16)
    text = continuation(path, "the cat", n=12, seed=1)
    assert len(text) == 12


def test_lnlstm_run(tmp_path):
    c = cfg.make(dict(task="mem", cell="lnlstm", n_hidden=8, batch_size=5, eval_batch_size=20, chunk_batch_size=20,
                      check_freq=5, min_length=10, max_length=12, max_iters=10, out_dir=str(tmp_path), name="ln"))
    attrs, data = read(train(c, progress=False))
    assert attrs["recurrent_matrix"] == "W_hc" and "check/hist/gate_f" in data
    assert np.isfinite(data["check/rho"]).all() and "final/weights/g_c" in data


# -- the reference architectures in the classification family ------------------------------------

def classify_config(tmp_path, **kw):
    return cfg.make(dict(task="sentiment", min_length=8, max_length=14, batch_size=8, eval_batch_size=40,
                         chunk_batch_size=20, check_freq=5, max_iters=10, optimizer="adam", lr=0.003,
                         out_dir=str(tmp_path), **kw))


def test_encoder_ignores_padding_and_matches_autograd():
    """A sequence alone and inside a padded batch gives the same logits; the hooked ∂L/∂x_t are
    autograd's and exactly 0 at padded steps."""
    from dynamics.models.classifier import Batch
    from dynamics.models.transformer import build_encoder
    c = cfg.make(dict(task="sentiment", cell="transformer", d_model=16, n_heads=2, n_layers=2, pooling="mean"))
    model = build_encoder(c, 11, 2, 12, dtype=F64).eval()
    torch.manual_seed(0)
    ids = torch.randint(11, (9, 3))
    lengths = torch.tensor([9, 5, 3])
    both = model(Batch(ids, lengths)).logits
    for b in range(3):
        n = int(lengths[b])
        alone = model(Batch(ids[:n, b:b + 1], lengths[b:b + 1])).logits
        assert torch.allclose(alone[0], both[b], atol=1e-12)
    model.train()
    out = model(Batch(ids, lengths))
    loss = F.cross_entropy(out.logits, torch.tensor([0, 1, 1]))
    expected = torch.autograd.grad(loss, model.residuals, retain_graph=True)
    loss.backward()
    for part, e in zip(model.parts(), expected):
        assert torch.allclose(part.grad, e.transpose(0, 1), atol=1e-14)
        assert part.align == "end" and torch.equal(part.lengths, lengths)
        assert (part.grad[5:, 1] == 0).all() and (part.grad[3:, 2] == 0).all()


@pytest.mark.parametrize("cell,pooling", [("transformer", "attention"), ("lnlstm", "last")])
def test_classification_runs(tmp_path, cell, pooling):
    kw = dict(d_model=16, n_heads=2, n_layers=2) if cell == "transformer" else dict(n_hidden=8)
    attrs, data = read(train(classify_config(tmp_path, cell=cell, pooling=pooling, name="c", **kw), progress=False))
    assert attrs["status"] in ("finished", "solved") and np.isfinite(data["check/valid_loss"]).all()
    if cell == "transformer":
        assert data["check/attn_map"].shape[:3] == (2, 2, 2) and "check/layers/block0/grad_time" in data
        assert "check/attention" in data     # the pooling's weights over the fixed examples
    else:
        assert "check/hist/gate_f" in data


def test_transformer_refuses_recurrent_classify_keys(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--task", "sentiment", "--cell", "transformer", "--bidirectional", "true",
              "--out-dir", str(tmp_path), "--quiet"])
    assert e.value.code == 2 and "bidirectional" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# -- the LN-LSTM in the seq2seq family; the Transformer is not (yet) there ------------------------

def seq2seq_config(tmp_path, **kw):
    return cfg.make(dict(task="reverse", alphabet=6, min_length=3, max_length=6, n_hidden=12, batch_size=8,
                         eval_batch_size=20, chunk_batch_size=20, optimizer="adam", lr=0.01, beam_size=2,
                         max_iters=10, check_freq=5, seed=3, out_dir=str(tmp_path), name="s", **kw))


def test_lnlstm_seq2seq_runs_with_bahdanau_and_with_luong_and_scheduled_sampling(tmp_path):
    attrs, data = read(train(seq2seq_config(tmp_path, cell="lnlstm", attention="bahdanau"), progress=False))
    assert attrs["status"] in ("finished", "solved") and "check/layers/enc0/hist/gate_f" in data
    attrs, data = read(train(seq2seq_config(tmp_path / "luong", cell="lnlstm", attention="luong_general",
                                            teacher_forcing=0.5), progress=False))   # decodes step by step
    assert attrs["status"] in ("finished", "solved") and np.isfinite(data["check/valid_loss"]).all()
    assert 0 < np.nanmean(data["check/tf_used"]) < 1
    with pytest.raises(cfg.InputError, match="attention='bahdanau' is not allowed: not set"):
        cfg.make(dict(task="reverse", cell="transformer", attention="bahdanau"))   # a recurrent decoder's key
