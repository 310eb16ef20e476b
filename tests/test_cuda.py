"""The CUDA path against the CPU: same weights, same batch, same numbers. Skipped without a GPU."""
import h5py
import pytest
import torch

import dynamics
from dynamics import config as cfg
from dynamics.train import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CASES = [("rnn", "tanh", 1), ("rnn", "relu", 1), ("gru", "tanh", 1), ("lstm", "tanh", 1), ("lstm", "tanh", 2)]


def step(model, x, y):
    """Loss, ∂L/∂h_t and every parameter gradient of one backward pass, on the CPU."""
    model.zero_grad(set_to_none=True)
    out = model(x)
    loss = torch.nn.functional.cross_entropy(out.logits, y)
    loss.backward()
    grads = {k: p.grad.cpu() for k, p in model.named_parameters()}
    return loss.item(), model.hidden_grad.cpu(), grads


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("cell,activation,layers", CASES)
def test_cuda_equals_cpu(cell, activation, layers, dtype, tol):
    torch.manual_seed(0)
    T, B, n_in, H, n_out = 40, 6, 3, 16, 5
    x, y = torch.randn(T, B, n_in, dtype=dtype), torch.randint(n_out, (B,))
    cpu = dynamics.build_model(cell, n_in, H, n_out, "last_softmax", activation, n_layers=layers, seed=1,
                               dtype=dtype)
    gpu = dynamics.build_model(cell, n_in, H, n_out, "last_softmax", activation, n_layers=layers, seed=1,
                               dtype=dtype, device="cuda")
    gpu.load_state_dict(cpu.state_dict())
    loss_c, d_c, g_c = step(cpu, x, y)
    loss_g, d_g, g_g = step(gpu, x.cuda(), y.cuda())
    assert loss_g == pytest.approx(loss_c, rel=tol)
    assert ((d_g - d_c).norm() / d_c.norm()).item() < tol
    for k in g_c:
        assert ((g_g[k] - g_c[k]).norm() / g_c[k].norm().clamp_min(1e-30)).item() < tol, k


def test_a_run_on_cuda_records_its_device(tmp_path):
    c = cfg.make(dict(task="torder", cell="lstm", n_hidden=8, batch_size=5, eval_batch_size=40, chunk_batch_size=20,
                      check_freq=5, min_length=10, max_length=14, max_iters=10, device="cuda",
                      out_dir=str(tmp_path), name="gpu"))
    path = train(c, progress=False)
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "finished" and f.attrs["device"] == "cuda"
        assert f["check/grad_time"].shape[0] == 2
