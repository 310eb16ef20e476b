"""Record a PyTorch Lightning training into a run file: one callback.

    from dynamics.lightning import RecorderCallback

    trainer = lightning.pytorch.Trainer(max_steps=5000, gradient_clip_val=1.0,
                                        callbacks=[RecorderCallback("runs/mine.h5", check_every=100)])
    trainer.fit(module, data)        # then: dynamics info runs/mine.h5

It is dynamics.Recorder (dynamics/recorder.py) driven by the Trainer. At setup it converts the
module's torch.nn RNN, GRU and LSTM to dynamics.nn's in place (the same Parameter objects, so
optimisers and checkpoints are unaffected; dynamics.nn.restore undoes it); modules built in
`configure_model` come too late for that: convert them there yourself. It records every
optimizer step of the Trainer's first optimizer: the loss of that update (with gradient
accumulation, the sum of the micro-batches' scaled losses, i.e. their mean for a full window),
the gradient norm before Lightning's clipping and after it, the learning rate the update used.
After each validation it hands the logged `val_loss` (or `valid_loss`) and, if logged,
`val_error` / `valid_error` (in percent) or else `val_acc` / `valid_acc` (a fraction in [0, 1],
recorded as the error 100·(1 − acc)) to the run file's check. It closes the file as "finished"
at the end of training, "interrupted" on Ctrl+C and "failed" on an exception. Only the process
of global rank 0 writes; with fp16 mixed precision the gradients it reads are the loss-scaled
ones, so use 32-bit or bf16.
"""
import math

try:
    from lightning.pytorch import Callback
except ImportError:
    try:
        from pytorch_lightning import Callback
    except ImportError:
        raise ImportError("dynamics.lightning needs PyTorch Lightning: pip install 'dynamics[lightning]'") from None

from .nn import convert
from .recorder import Recorder


class RecorderCallback(Callback):
    """Records the LightningModule's training into the run file `path` (see the module's
    docstring); `check_every`, `name`, `config` and `overwrite` are dynamics.Recorder's."""

    def __init__(self, path, check_every=100, name=None, config=None, overwrite=False):
        self.path, self.check_every, self.name, self.overwrite = path, check_every, name, overwrite
        self.config = dict(config or {})
        self.recorder, self.step_hook, self.loss = None, None, None

    def setup(self, trainer, pl_module, stage):
        # before the optimiser is configured and the model moved or wrapped; every rank converts, so
        # that all run the same modules
        if stage == "fit":
            convert(pl_module)

    def on_train_start(self, trainer, pl_module):
        if not trainer.is_global_zero:
            return
        optimizer = trainer.optimizers[0]
        self.recorder = Recorder(pl_module, self.path, check_every=self.check_every, optimizer=optimizer,
                                 name=self.name, config={**trainer_settings(trainer), **self.config},
                                 overwrite=self.overwrite)
        # Recorder.step belongs right after optimizer.step(): the clipped gradients are still there and
        # the learning rate is the one the update used. Lightning steps its schedulers before
        # on_train_batch_end, so that hook would see the next update's rate.
        self.step_hook = optimizer.register_step_post_hook(self._after_step)
        self.loss = None

    def on_before_backward(self, trainer, pl_module, loss):
        # Lightning divides each micro-batch's loss by accumulate_grad_batches: their sum is the
        # loss whose gradient the update takes
        if self.recorder is not None:
            self.loss = loss.detach() if self.loss is None else self.loss + loss.detach()

    def _after_step(self, optimizer, args, kwargs):
        if self.loss is None:   # no backward since the last update (a skipped training_step)
            return
        loss, self.loss = self.loss, None
        self.recorder.step(loss)

    def on_validation_end(self, trainer, pl_module):
        # on_validation_end rather than on_validation_epoch_end: by now the module's own
        # on_validation_epoch_end has logged too, and the epoch means are in callback_metrics
        if self.recorder is None or trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        loss = first(metrics, "val_loss", "valid_loss")
        if loss is None:
            return
        error = first(metrics, "val_error", "valid_error")
        accuracy = first(metrics, "val_acc", "valid_acc")
        if error is None and accuracy is not None:
            error = 100 * (1 - float(accuracy))
        self.recorder.validate(loss, math.nan if error is None else float(error))

    def on_train_end(self, trainer, pl_module):
        self._close("finished")

    def on_exception(self, trainer, pl_module, exception):
        status = "interrupted" if isinstance(exception, KeyboardInterrupt) else "failed"
        self._close(status, f"{type(exception).__name__}: {exception}")

    def _close(self, status, error=""):
        if self.recorder is None:
            return
        self.step_hook.remove()
        recorder, self.recorder = self.recorder, None
        recorder.close(status, error)


def first(metrics, *keys):
    """The value of the first of `keys` that `metrics` holds, or None."""
    return next((metrics[k] for k in keys if k in metrics), None)


def trainer_settings(trainer):
    """The Trainer's clipping and accumulation, in the harness's setting names, for the run file's config."""
    settings = {"clip": "none", "accumulate_grad_batches": trainer.accumulate_grad_batches}
    if trainer.gradient_clip_val:
        algorithm = str(getattr(trainer.gradient_clip_algorithm, "value", trainer.gradient_clip_algorithm) or "norm")
        settings.update(clip="rescale" if algorithm == "norm" else algorithm, cutoff=float(trainer.gradient_clip_val))
    return settings
