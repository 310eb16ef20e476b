"""dynamics.Recorder on a loop of one's own: what it writes against what the loop itself computes
(the loss, clip_grad_norm_'s norm, the norm after clipping, g_t from the modules, ρ from numpy),
the run file in every analysis command (also while it is written), and bad input."""
import math

import h5py
import numpy as np
import pytest
import torch

import dynamics
import dynamics.nn as dnn
from dynamics.cli import main
from tasks.errors import InputError

V, E, H, T, B = 12, 8, 10, 15, 4


class Tagger(torch.nn.Module):
    """Two recurrent modules: a bidirectional GRU, then a 2-layer LSTM with dropout."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(V, E)
        self.encoder = torch.nn.GRU(E, H, bidirectional=True)
        self.decoder = torch.nn.LSTM(2 * H, H, num_layers=2, dropout=0.1)
        self.head = torch.nn.Linear(H, V)

    def forward(self, x):
        h, _ = self.encoder(self.embed(x))
        return self.head(self.decoder(h)[0])


def batch(g):
    x = torch.randint(0, V, (T + 1, B), generator=g)
    return x[:-1], x[1:]


def train(path, updates=30, check_every=10, cutoff=0.15, validate_at=(), **kwargs):
    """Trains a converted Tagger with the recorder; returns what the loop saw per update and at
    each check, independently of the recorder."""
    torch.manual_seed(0)
    model = dnn.convert(Tagger())
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    seen = {"loss": [], "before": [], "after": [], "g_main": [], "g_first": [], "rho": [], "lr": []}
    g = torch.Generator().manual_seed(1)
    with dynamics.Recorder(model, path, check_every=check_every, optimizer=opt, **kwargs) as rec:
        for i in range(1, updates + 1):
            x, y = batch(g)
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, V), y.reshape(-1))
            loss.backward()
            seen["before"].append(torch.nn.utils.clip_grad_norm_(model.parameters(), cutoff).item())
            seen["after"].append(math.sqrt(sum(p.grad.pow(2).sum().item() for p in model.parameters())))
            opt.step()
            rec.step(loss)
            seen["loss"].append(loss.item())
            seen["lr"].append(opt.param_groups[0]["lr"])
            if i % check_every == 0 or i == updates or i in validate_at:
                seen["g_main"].append(model.decoder.hidden_grad(1).norm(dim=2).mean(1).numpy())
                seen["g_first"].append(model.encoder.hidden_grad(0, reverse=True).flip(0).norm(dim=2).mean(1).numpy())
                W = model.decoder.weight_hh_l1.detach()[2 * H:3 * H].double().numpy()
                seen["rho"].append(np.abs(np.linalg.eigvals(W)).max())
            if i in validate_at:
                rec.validate(loss.item() + 1, 40.0)
    return seen


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    path = tmp_path_factory.mktemp("rec") / "mine.h5"
    return path, train(path, updates=25, validate_at=(10, 13))


def test_what_it_writes_is_what_the_loop_computed(recorded):
    path, seen = recorded
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "finished" and f.attrs["family"] == "recorded" and f.attrs["cell"] == "lstm"
        assert list(eval(f.attrs["parts"])) == ["encoder.l0", "encoder.l0_reverse", "decoder.l0", "decoder.l1"]
        it, check = f["iter"], f["check"]
        np.testing.assert_allclose(it["loss"][:], seen["loss"], rtol=1e-6)
        np.testing.assert_allclose(it["grad_norm"][:], seen["before"], rtol=1e-5)
        np.testing.assert_allclose(it["grad_norm_clipped"][:], seen["after"], rtol=1e-5)
        np.testing.assert_array_equal(it["clipped"][:], np.array(seen["before"]) > 0.15)
        assert it["clipped"][:].any() and not it["clipped"][:].all()   # the cut-off sits among the norms
        np.testing.assert_array_equal(it["lr"][:], seen["lr"])
        assert np.all(it["seq_len"][:] == T) and np.all(it["step_time"][:] > 0)
        # every 10 updates, at a validation between them (13) and at close
        np.testing.assert_array_equal(check["iter"][:], [10, 13, 20, 25])
        np.testing.assert_allclose(check["train_loss"][:], [np.mean(seen["loss"][a:b]) for a, b in
                                                            ((0, 10), (10, 13), (13, 20), (20, 25))], rtol=1e-6)
        np.testing.assert_array_equal(check["valid_error"][:], [40.0, 40.0, np.nan, np.nan])
        np.testing.assert_allclose(check["valid_loss"][:2], np.array(seen["loss"])[[9, 12]] + 1, rtol=1e-6)
        np.testing.assert_allclose(check["grad_time"][:], seen["g_main"], rtol=1e-5)
        np.testing.assert_allclose(check["layers/encoder.l0_reverse/grad_time"][:], seen["g_first"], rtol=1e-5)
        np.testing.assert_allclose(check["rho"][:], seen["rho"], rtol=1e-5)
        np.testing.assert_allclose(check["rho_decoder.l1"][:], seen["rho"], rtol=1e-5)
        assert np.all(check["hist/log10_grad"][:].sum(1) == T * B)             # one g_t per step and sequence
        for q in ("saturation", "gate_i", "gate_f", "gate_o"):
            assert np.all(check["hist"][q][:].sum(1) == T * B * H)             # one value per unit
        assert np.all(check["layers/encoder.l0/hist/gate_z"][:].sum(1) == T * B * H)
        assert "W_hc" in f["final/weights"] and "decoder.weight_hh_l1" in f["final/weights"]


@pytest.mark.parametrize("command", [["info"], ["plot", "-o", "{dir}/figs"], ["compare", "-o", "{dir}/c.png"],
                                     ["report", "-o", "{dir}/r/report.pdf"]])
def test_every_analysis_command_reads_it(recorded, command, capsys):
    path, _ = recorded
    args = [a.format(dir=path.parent) for a in command]
    main([args[0], str(path), *args[1:]])
    out = capsys.readouterr().out
    assert out.strip()
    if command == ["info"]:
        assert "ρ(W_hc)" in out and "valid error" in out


def test_export_reads_it(recorded, tmp_path):
    pytest.importorskip("tensorboard")
    path, _ = recorded
    main(["export", str(path), "--tensorboard", str(tmp_path / "tb")])
    assert any((tmp_path / "tb").rglob("events.out.tfevents*"))


def test_readable_while_written_and_closed_on_failure(tmp_path):
    torch.manual_seed(0)
    model = dnn.convert(Tagger())
    path = tmp_path / "live.h5"
    rec = dynamics.Recorder(model, path, check_every=2)
    g = torch.Generator().manual_seed(1)
    with pytest.raises(RuntimeError, match="boom"):
        with rec:
            for i in range(5):
                x, y = batch(g)
                model.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, V), y.reshape(-1))
                loss.backward()
                rec.step(loss)
                if i == 3:
                    run = dynamics.open(path)           # a reader, while the recorder writes
                    assert run.status == "running" and len(run.checks) == 2
                    main(["info", str(path)])
                    raise RuntimeError("boom")
    run = dynamics.open(path)
    assert run.status == "failed" and "boom" in run.attrs["error"]
    assert list(run.iters.index) == [1, 2, 3, 4] and list(run.checks.index) == [2, 4]


def test_no_gradient_during_evaluation_leaves_the_training_diagnostics(tmp_path):
    torch.manual_seed(0)
    model = dnn.convert(Tagger())
    x, y = batch(torch.Generator().manual_seed(1))
    torch.nn.functional.cross_entropy(model(x).reshape(-1, V), y.reshape(-1)).backward()
    g = model.decoder.hidden_grad(1).clone()
    with torch.no_grad():
        model(x[:5])
    assert torch.equal(model.decoder.hidden_grad(1), g)


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    path = tmp_path / "x.h5"
    with pytest.raises(InputError, match="has no recurrent module"):
        dynamics.Recorder(torch.nn.Linear(3, 3), path)
    with pytest.raises(InputError, match=r"convert the model first: model = dynamics.nn.convert\(model\)"):
        dynamics.Recorder(Tagger(), path)
    with pytest.raises(InputError, match="torch.nn.LSTMCell, which it cannot read"):
        dynamics.Recorder(torch.nn.Sequential(dnn.GRU(3, 3), torch.nn.LSTMCell(3, 3)), path)
    with pytest.raises(InputError, match="check_every=0"):
        dynamics.Recorder(dnn.GRU(3, 3), path, check_every=0)
    model = dnn.GRU(3, 4)
    rec = dynamics.Recorder(model, path)
    out, _ = model(torch.randn(5, 2, 3))
    out.sum().backward()
    with pytest.raises(InputError, match=r"the loss must be a scalar \(got \(5, 2, 4\)\)"):
        rec.step(out)
    assert list(tmp_path.iterdir()) == []          # nothing written before the first good step
    rec.step(out.sum())
    rec.close()
    assert path.exists()
    with pytest.raises(InputError, match="exists; give another path, or overwrite=True"):
        dynamics.Recorder(model, path)
    with pytest.raises(InputError, match="is closed"):
        rec.step(out.sum())
    fresh = dynamics.Recorder(model, tmp_path / "y.h5")
    with pytest.raises(InputError, match="no gradient since the last step"):
        fresh.step(1.0)


def test_full_level_records_the_theory_of_the_main_part(tmp_path):
    torch.manual_seed(0)
    model = dnn.convert(Tagger())
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    W = model.decoder.weight_hh_l1
    g = torch.Generator().manual_seed(1)
    seen = {"grad": [], "ratio": [], "lambda1": []}
    path = tmp_path / "full.h5"
    with dynamics.Recorder(model, path, check_every=5, optimizer=opt, diagnostics_level="full", probe_batch=1) as rec:
        for i in range(10):
            x, y = batch(g)
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x).reshape(-1, V), y.reshape(-1)).backward()
            seen["grad"].append(W.grad.norm().item())               # before clipping
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.15)
            before = W.detach().clone()
            opt.step()
            seen["ratio"].append(((W.detach() - before).norm() / before.norm()).item())
            rec.step(torch.tensor(1.0))
            if (i + 1) % 5 == 0:
                seen["lambda1"].append(np.linalg.norm(W.detach()[2 * H:3 * H].double().numpy(), 2))
    with h5py.File(path, "r") as f:
        np.testing.assert_allclose(f["iter/grad_norm_W_hh_decoder.l1"][:], seen["grad"], rtol=1e-5)
        np.testing.assert_allclose(f["iter/update_ratio_W_hh_decoder.l1"][:], seen["ratio"], rtol=1e-4)
        assert "iter/grad_norm_W_xh_encoder.l0_reverse" in f
        np.testing.assert_allclose(f["check/lambda1"][:], seen["lambda1"], rtol=1e-6)
        assert np.isnan(f["check/lambda1_gamma"][:]).all() and np.isnan(f["check/sharpness"][:]).all()
        step, prod = f["check/jac_step_norm"][:], f["check/jac_prod_norm"][:]
        assert step.shape == prod.shape == (2, T) and f["check/lyapunov"].shape == (2, 5)
        # one sequence: the product of one Jacobian, ∂s_T/∂s_{T-1}, is the last step's Jacobian
        np.testing.assert_allclose(prod[:, 0], step[:, -1], rtol=1e-10)
        assert np.all(np.diff(f["check/lyapunov"][:], axis=1) <= 0)   # largest first
    main(["plot", str(path), "-o", str(tmp_path / "figs")])
    assert (tmp_path / "figs" / "full_jacobians.png").exists() and (tmp_path / "figs" / "full_lyapunov.png").exists()
