"""Dropout (dynamics/models/dropout.py) against F.dropout: the same masks, outputs, gradients and
generator state, bit for bit, on both paths; and the models that use it, trained with dropout,
the same on both."""
import pytest
import torch
from torch.nn import functional as F

import dynamics
from dynamics.models import compiled
from dynamics.models.dropout import Dropout, dropout


def both(x, p, advance):
    """F.dropout's and ours from the same generator state (`advance` numbers drawn after seeding,
    so that the engine starts part-way through its 624 words): outputs, ∂L/∂x, and the generator
    state after each, with a few numbers drawn from it."""
    results = []
    for f in (lambda v: F.dropout(v, p, True), lambda v: dropout(v, p)):
        torch.manual_seed(11)
        torch.rand(advance)
        v = x.clone().requires_grad_()
        out = f(v)
        out.backward(torch.arange(out.numel(), dtype=x.dtype).view_as(out))
        results.append((out.detach(), v.grad, torch.get_rng_state(), torch.rand(5)))
    return results


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("p", [0.1, 0.2, 0.5, 0.9])
@pytest.mark.parametrize("size, advance", [((1,), 0), ((7, 3), 5), ((64, 8, 33), 623), ((3001,), 1000)])
def test_same_as_torch(backend, dtype, p, size, advance):
    x = torch.randn(size, dtype=dtype, generator=torch.Generator().manual_seed(3))
    x.view(-1)[0] = -0.0   # the sign of a zero, kept or dropped, too
    theirs, ours = both(x, p, advance)
    for a, b in zip(theirs, ours):
        assert torch.equal(a, b)
        assert torch.equal(a.view(-1).signbit(), b.view(-1).signbit())
    if x.numel() > 1000:   # a mask of this size drops p of the values, give or take a few percent
        assert abs((ours[0] == 0).double().mean().item() - p) < 0.05


def test_the_compiled_path_is_taken(monkeypatch):
    """On the CPU with the compiled loops, `dropout` draws its masks there (not through bernoulli_)."""
    if compiled.missing_toolchain():
        pytest.skip("no C++ toolchain")
    compiled.use("compiled")
    try:
        monkeypatch.setattr(torch.Tensor, "bernoulli_", lambda *a, **k: pytest.fail("bernoulli_ called"))
        out = dropout(torch.ones(100), 0.5)
        assert set(out.tolist()) <= {0.0, 2.0}
    finally:
        compiled.use("auto")


def test_no_mask_where_torch_draws_none(backend):
    """p = 0, evaluation mode and a non-contiguous tensor: F.dropout's behaviour, the generator untouched
    where it is untouched."""
    x = torch.randn(6, 4)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    assert dropout(x, 0.0) is x or torch.equal(dropout(x, 0.0), x)
    assert torch.equal(dropout(x, 0.3, training=False), x)
    assert torch.equal(torch.get_rng_state(), state)
    module = Dropout(0.3).eval()
    assert torch.equal(module(x), x)
    torch.manual_seed(0)
    expected = F.dropout(x.t(), 0.3, True)
    torch.manual_seed(0)
    assert torch.equal(dropout(x.t(), 0.3), expected)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_model_with_dropout_same_on_both_paths(cell):
    """A 2-layer language model with dropout: the same losses, in float32, over a few Adam updates on
    the Python loops and F.dropout and on the compiled loops and their dropout (which the compiled
    recurrences make equal only up to rounding: tolerance 1e-5; the masks must be the same, or the
    losses differ by far more)."""
    if compiled.missing_toolchain():
        pytest.skip("no C++ toolchain")
    losses = {}
    for backend in ("python", "compiled"):
        compiled.use(backend)
        try:
            model = dynamics.build_model(cell, 16, 24, 30, "softmax", n_layers=2, vocab_size=30, dropout=0.3, seed=4)
            opt = torch.optim.Adam(model.parameters(), lr=1e-2)
            torch.manual_seed(9)
            x = torch.randint(30, (12, 5))
            losses[backend] = []
            for _ in range(4):
                opt.zero_grad()
                loss = F.cross_entropy(model(x).logits.reshape(-1, 30), x.reshape(-1))
                loss.backward()
                opt.step()
                losses[backend].append(loss.item())
        finally:
            compiled.use("auto")
    assert losses["python"] == pytest.approx(losses["compiled"], rel=1e-5)
    assert len(set(losses["python"])) == 4
