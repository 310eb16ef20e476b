"""dynamics.lightning.RecorderCallback under a real Trainer: what it writes against what the
LightningModule itself saw (its losses, the gradient norm before Lightning's clipping and after
it, the learning rate each update used, its validation numbers), also with gradient
accumulation, and the file's status when training raises or is interrupted."""
import importlib
import math
import signal
import sys

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

try:
    import lightning.pytorch as pl
except ImportError:
    pl = pytest.importorskip("pytorch_lightning")

import dynamics
import dynamics.nn as dnn
from dynamics.cli import main
from dynamics.lightning import RecorderCallback

pytestmark = [pytest.mark.filterwarnings("ignore:.*does not have many workers"),
              pytest.mark.filterwarnings("ignore:.*LeafSpec.* is deprecated")]  # inside Lightning 2.6

V, E, H, T, B = 12, 8, 10, 15, 4
CUTOFF = 0.3
TRAIN_BATCHES, VALID_BATCHES = 10, 2


def norm(module):
    return math.sqrt(sum(p.grad.double().pow(2).sum().item() for p in module.parameters() if p.grad is not None))


class Tagger(pl.LightningModule):
    """Embedding, a plain torch.nn recurrent module (the callback converts it), a linear head;
    it keeps its own account of every update in `seen`."""

    def __init__(self, cell=torch.nn.LSTM, fail_at=None, fail_with=RuntimeError):
        super().__init__()
        self.embed = torch.nn.Embedding(V, E)
        self.rnn = cell(E, H, batch_first=True)
        self.head = torch.nn.Linear(H, V)
        self.fail_at, self.fail_with = fail_at, fail_with
        self.seen = {"micro": [], "before": [], "after": [], "lr": [], "valid": []}
        self.valid_batches = []

    def forward(self, x):
        return self.head(self.rnn(self.embed(x))[0])

    def loss_and_accuracy(self, batch):
        x, y = batch
        logits = self(x)
        return F.cross_entropy(logits.reshape(-1, V), y.reshape(-1)), (logits.argmax(-1) == y).float().mean()

    def training_step(self, batch, batch_idx):
        if self.global_step == self.fail_at:
            raise self.fail_with("boom")
        loss, _ = self.loss_and_accuracy(batch)
        self.seen["micro"].append((self.global_step + 1, loss.item()))   # (the update it belongs to, its loss)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, accuracy = self.loss_and_accuracy(batch)
        self.log("val_loss", loss)
        self.log("val_acc", accuracy)
        self.valid_batches.append((loss.item(), accuracy.item()))

    def on_validation_epoch_end(self):
        if not self.trainer.sanity_checking:
            loss, accuracy = np.mean(self.valid_batches, axis=0)
            self.seen["valid"].append((self.global_step, loss, 100 * (1 - accuracy)))
        self.valid_batches = []

    def on_before_optimizer_step(self, optimizer):   # Lightning clips right after this hook
        self.seen["before"].append(norm(self))
        self.seen["lr"].append(optimizer.param_groups[0]["lr"])

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
        self.seen["after"].append(norm(self))

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.5)
        decay = torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.7)   # a rate that moves between updates
        return {"optimizer": opt, "lr_scheduler": {"scheduler": decay, "interval": "step"}}


def loader(n_batches, seed):
    seq = torch.randint(0, V, (n_batches * B, T + 1), generator=torch.Generator().manual_seed(seed))
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(seq[:, :-1], seq[:, 1:]), batch_size=B)


def fit(path, max_steps, check_every, accumulate=1, **module_args):
    """Trains a Tagger with the callback; returns the module."""
    torch.manual_seed(0)
    model = Tagger(**module_args)
    trainer = pl.Trainer(max_steps=max_steps, accumulate_grad_batches=accumulate, gradient_clip_val=CUTOFF,
                         callbacks=[RecorderCallback(path, check_every=check_every, config={"note": "mine"})],
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(model, loader(TRAIN_BATCHES, 1), loader(VALID_BATCHES, 2))
    return model


def update_losses(seen, accumulate):
    """Per update, the sum of its micro-batches' losses over accumulate (Lightning's scaling)."""
    updates = sorted({u for u, _ in seen["micro"]})
    return [sum(loss for u, loss in seen["micro"] if u == k) / accumulate for k in updates]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    path = tmp_path_factory.mktemp("lightning") / "mine.h5"
    return path, fit(path, max_steps=30, check_every=10)


def test_what_it_writes_is_what_the_module_saw(recorded):
    path, model = recorded
    seen = model.seen
    assert isinstance(model.rnn, dnn.LSTM)                       # converted at setup
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "finished" and f.attrs["cell"] == "lstm"
        it, check = f["iter"], f["check"]
        assert len(it["loss"]) == 30 == len(seen["before"]) == len(seen["after"])
        np.testing.assert_allclose(it["loss"][:], update_losses(seen, 1), rtol=1e-6)
        np.testing.assert_allclose(it["grad_norm"][:], seen["before"], rtol=1e-5)
        np.testing.assert_allclose(it["grad_norm_clipped"][:], seen["after"], rtol=1e-5)
        np.testing.assert_array_equal(it["clipped"][:], np.array(seen["before"]) > CUTOFF)
        np.testing.assert_allclose(it["lr"][:], seen["lr"], rtol=1e-12)   # the rate of the update, not the next
        assert len(set(seen["lr"])) > 1
        assert np.all(it["seq_len"][:] == T)
        np.testing.assert_array_equal(check["iter"][:], [10, 20, 30])
        # a validation after each epoch of 10 updates (none from the sanity check), each in its update's check
        assert [s for s, _, _ in seen["valid"]] == [10, 20, 30]
        np.testing.assert_allclose(check["valid_loss"][:], [v for _, v, _ in seen["valid"]], rtol=1e-6)
        np.testing.assert_allclose(check["valid_error"][:], [e for _, _, e in seen["valid"]], rtol=1e-5)
    settings = dynamics.open(path).config
    assert settings["clip"] == "rescale" and settings["cutoff"] == CUTOFF and settings["note"] == "mine"


def test_dynamics_info_reads_it(recorded, capsys):
    path, _ = recorded
    main(["info", str(path)])
    out = capsys.readouterr().out
    assert "ρ(W_hc)" in out and "valid" in out


def test_gradient_accumulation_records_one_row_per_update(tmp_path):
    path = tmp_path / "accumulated.h5"
    # 10 batches an epoch in windows of 3: updates of 3, 3, 3 and 1 batches (Lightning steps on the last)
    model = fit(path, max_steps=8, check_every=3, accumulate=3, cell=torch.nn.GRU)
    seen = model.seen
    assert [sum(1 for u, _ in seen["micro"] if u == k) for k in range(1, 9)] == [3, 3, 3, 1] * 2
    with h5py.File(path, "r") as f:
        it, check = f["iter"], f["check"]
        assert f.attrs["status"] == "finished" and f.attrs["cell"] == "gru"
        np.testing.assert_allclose(it["loss"][:], update_losses(seen, 3), rtol=1e-6)
        np.testing.assert_allclose(it["grad_norm"][:], seen["before"], rtol=1e-5)
        np.testing.assert_allclose(it["grad_norm_clipped"][:], seen["after"], rtol=1e-5)
        np.testing.assert_allclose(it["lr"][:], seen["lr"], rtol=1e-12)
        # every 3 updates, and at the validations after updates 4 and 8 (each epoch's end)
        assert [s for s, _, _ in seen["valid"]] == [4, 8]
        np.testing.assert_array_equal(check["iter"][:], [3, 4, 6, 8])
        (v4, v8) = [v for _, v, _ in seen["valid"]]
        np.testing.assert_allclose(check["valid_loss"][:], [np.nan, v4, np.nan, v8], rtol=1e-6)
    assert dynamics.open(path).config["accumulate_grad_batches"] == 3


def test_a_raising_training_step_leaves_the_file_failed(tmp_path):
    path = tmp_path / "failed.h5"
    with pytest.raises(RuntimeError, match="boom"):
        fit(path, max_steps=30, check_every=2, fail_at=5)
    run = dynamics.open(path)
    assert run.status == "failed" and "RuntimeError: boom" in run.attrs["error"]
    assert list(run.iters.index) == [1, 2, 3, 4, 5] and list(run.checks.index) == [2, 4, 5]


def test_ctrl_c_leaves_the_file_interrupted(tmp_path):
    path = tmp_path / "interrupted.h5"
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):          # Lightning's graceful shutdown ends in sys.exit(1)
            fit(path, max_steps=30, check_every=2, fail_at=3, fail_with=KeyboardInterrupt)
    finally:
        signal.signal(signal.SIGINT, handler)    # which it set to ignore Ctrl+C
    run = dynamics.open(path)
    assert run.status == "interrupted" and list(run.iters.index) == [1, 2, 3]


def test_without_lightning_the_import_says_what_to_install(monkeypatch):
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning"):
        monkeypatch.setitem(sys.modules, name, None)        # as if not installed
    monkeypatch.delitem(sys.modules, "dynamics.lightning")
    with pytest.raises(ImportError, match=r"pip install 'dynamics\[lightning\]'"):
        importlib.import_module("dynamics.lightning")
