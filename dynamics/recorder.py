"""Record the training of a model of your own into a run file, from your own loop: one line.

    model = dynamics.nn.convert(model)              # its torch.nn RNN/GRU/LSTM, now with ∂L/∂h_t
    rec = dynamics.Recorder(model, "runs/mine.h5", optimizer=opt, check_every=100)
    for x, y in batches:
        opt.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        opt.step()
        rec.step(loss)                              # after the update, before the next zero_grad
    rec.close()                                     # or `with dynamics.Recorder(...) as rec:`

Why one call after the update: the loop stays yours, as with Cockpit or a Lightning callback,
and everything an update shows is still there then. ∂L/∂h_t and the gates of this batch are
kept by the dynamics.nn modules; the gradient norm *before* clipping is read as backward
accumulates each gradient (a post-accumulate-grad hook per parameter), the norm *after*
clipping from the gradients as the optimiser used them. `rec.validate(loss, error)` after your
evaluation writes its numbers into a check at the latest update (made then if none was).

What it records is what a harness run records where it applies (docs/run-file.md): per update
the loss, the gradient norm before and after clipping, whether it was clipped, the sequence
length, the learning rate and the update's wall time; per check (every `check_every` updates,
and at close) the mean training loss, your validation numbers, ρ and σ_max of the main part's
recurrent matrix (and ρ of every part, `rho_<part>`), the gradient horizon, and per part (each
layer and direction of each module, named `<module>.l<k>[_reverse]`; the last part of the last
module is the main one) the batch-mean g_t = ‖∂L/∂h_t‖ by step and the histograms of log10 g_t,
of the units' saturation and of each gate; with diagnostics_level="full" also the theory's
objects a loop allows (FullLevel below). The file is written under SWMR, so `dynamics info`,
`plot` and a notebook read it while it grows; it is created at the first `step`, once the
parts are known, so a bad first call leaves nothing behind.
"""
import atexit
import json
import math
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch

from tasks.errors import InputError

from . import probes
from .nn.modules import ACTIVATION, DropIn, MODULES
from .probes import theory
from .probes.horizon import Horizon
from .probes.spectrum import Spectrum, singular_max
from .lock import exclusive
from .runfile import RunFile
from .schema import RECURRENT_MATRIX

FAMILY = "recorded"     # the run file's family: a loop of the user's, not one of the harness's tasks
# the /iter columns of an update: those stacked on the device by `step`, in order, then those of the host
UPDATE_COLUMNS = ("loss", *probes.CLIP_STATS, *probes.OMEGA_STATS)
HOST_COLUMNS = ("seq_len", "lr", "step_time")


class Recorder:
    """Records a model's training into the run file `path` (see the module's docstring)."""

    def __init__(self, model, path, check_every=100, optimizer=None, name=None, config=None, overwrite=False,
                 diagnostics_level="basic", probe_batch=8, lyapunov_k=5):
        for key, value in (("check_every", check_every), ("probe_batch", probe_batch), ("lyapunov_k", lyapunov_k)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"dynamics.Recorder: {key}={value!r}; give a positive integer")
        if diagnostics_level not in ("basic", "full"):
            raise InputError(f"dynamics.Recorder: diagnostics_level={diagnostics_level!r}; give basic or full")
        self.modules = recurrent_modules(model)
        self.path = Path(path)
        if self.path.suffix != ".h5":
            raise InputError(f"dynamics.Recorder: {str(path)!r} is not a run file name; give a path ending in .h5")
        if self.path.exists() and not overwrite:
            raise InputError(f"dynamics.Recorder: {str(path)!r} exists; give another path, or overwrite=True")
        if self.path.is_dir():
            raise InputError(f"dynamics.Recorder: {str(path)!r} is a directory; give a file path ending in .h5")
        self.model, self.optimizer, self.check_every = model, optimizer, check_every
        self.name = name or self.path.stem
        self.user_config = dict(config or {})
        self.file, self.iters, self.checks, self.last_check = None, 0, 0, 0
        self.pending, self.host, self.valid = [], [], {}
        self.t_start, self.c_start = time.perf_counter(), time.process_time()
        self.t_last = self.t_start
        self.sample, self.closed = None, False
        self._locks = ExitStack()
        # the gradient norm before clipping, as backward leaves each gradient
        self.pre_clip = {}
        self.hooks = [p.register_post_accumulate_grad_hook(self._read_gradient)
                      for p in model.parameters() if p.requires_grad]
        self.full = FullLevel(self, probe_batch, lyapunov_k) if diagnostics_level == "full" else None
        atexit.register(self._at_exit)

    # -- the user's one call per update ----------------------------------------------------
    def step(self, loss):
        """Record the update just made: `loss` its training loss (a scalar tensor or number)."""
        if self.closed:
            raise InputError(f"dynamics.Recorder: {str(self.path)!r} is closed; make a new Recorder to record more")
        loss = scalar(loss)
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if not grads or not self.pre_clip:
            raise InputError("dynamics.Recorder.step: no gradient since the last step; call it after "
                             "loss.backward() and optimizer.step(), before the next zero_grad")
        if self.file is None:
            self._create()
        before = torch.linalg.vector_norm(torch.stack(list(self.pre_clip.values())))
        after = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        if self.full is not None:
            self.full.after_update(self.pre_clip)
        self.pre_clip = {}
        bad = ~torch.isfinite(before)
        clipped = (after < before * (1 - 1e-6)) & ~bad
        nan = torch.full((2,), math.nan, dtype=before.dtype, device=before.device)   # Ω: not applied here
        self.pending.append(torch.cat([loss.detach().to(before).view(1), torch.stack(
            [before, after, clipped.to(before.dtype), bad.to(before.dtype)]), nan]))
        now = time.perf_counter()
        self.host.append((self.seq_len(), self.lr(), now - self.t_last))
        self.t_last = now
        self.iters += 1
        if self.iters % self.check_every == 0:
            self.check()

    def validate(self, loss, error=math.nan):
        """Your validation numbers (a loss and, if you have one, an error in percent), measured
        after the latest update: they go into a check at that update, made now if none was."""
        self.valid = {"valid_loss": float(scalar(loss)), "valid_error": float(error)}
        if self.file is None:
            return                                  # before the first step: the first check takes them
        if self.pending:
            self.check()
        elif self.last_check == self.iters:
            self.file.amend_check(self.valid)
            self.valid = {}

    def close(self, status="finished", error=""):
        """Write the last check and the status, and let go of the file."""
        if self.closed:
            return
        self.closed = True
        for hook in self.hooks:
            hook.remove()
        atexit.unregister(self._at_exit)
        if self.file is None:
            return
        try:
            if self.pending:
                self.check()
        finally:
            self.file.close(status, error, self.weights(), self.sample)
            self._locks.close()

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self.close()
        else:
            self.close("interrupted" if issubclass(kind, KeyboardInterrupt) else "failed",
                       f"{kind.__name__}: {value}")
        return False

    # -- what an update and a check read ----------------------------------------------------
    def _read_gradient(self, p):
        self.pre_clip[id(p)] = torch.linalg.vector_norm(p.grad.detach())

    def parts(self):
        """Every layer and direction of every recorded module, the main one last."""
        return [part for prefix, module in self.modules for part in module.parts(prefix)]

    def seq_len(self):
        parts = self.parts()
        return parts[-1].hidden.shape[0] if parts and parts[-1].hidden is not None else math.nan

    def lr(self):
        return self.optimizer.param_groups[0]["lr"] if self.optimizer is not None else math.nan

    def main(self):
        """(module, layer, reverse) of the main part: the last layer and direction of the last module."""
        return list(self.located().values())[-1]

    def weights(self):
        """The model's parameters by name, and the main part's recurrent matrix by its schema name."""
        module, layer, reverse = self.main()
        out = {k: v.detach() for k, v in self.model.state_dict().items() if torch.is_tensor(v)}
        out[RECURRENT_MATRIX[module_cell(module)]] = module.recurrent_matrix(layer, bool(reverse))
        return out

    def _create(self):
        parts = self.parts()
        if not parts or any(p.grad is None for p in parts):
            missing = [p.name for p in parts if p.grad is None]
            raise InputError(f"dynamics.Recorder.step: no ∂L/∂h_t in {', '.join(missing) or 'any module'}; "
                             f"call step after a forward and loss.backward() of a training batch")
        self._locks.enter_context(exclusive(self.path))
        self.edges = {p.name: probes.hist_edges(p) for p in parts}
        module = self.main()[0]
        config = Declared(self, module)
        self.file = RunFile(self.path, config, " ".join(sys.argv), self.edges, self.weights(), config,
                            self.columns(), self.full.datasets(*main_shape(module, parts[-1])) if self.full else {})

    def columns(self):
        return [*Spectrum.columns, *Horizon.columns, *(f"rho_{name}" for name in self.edges)]

    def check(self):
        rows = torch.stack(self.pending).double().cpu().numpy()
        host = np.asarray(self.host, dtype=float)
        self.pending, self.host = [], []
        iter_columns = {**dict(zip(UPDATE_COLUMNS, rows.T)), **dict(zip(HOST_COLUMNS, host.T))}
        parts = {}
        for part in self.parts():
            if part.grad is None:   # no backward reached it in this update: an empty row keeps the rows aligned
                parts[part.name] = {"grad_time": np.full(1, np.nan), "align": part.align,
                                    "hist": {q: np.zeros(len(e) - 1, int) for q, e in self.edges[part.name].items()}}
                continue
            d = probes.layer_diagnostics(part, self.edges[part.name])
            parts[part.name] = {"grad_time": d["grad_time"].double().cpu().numpy(), "align": part.align,
                                "hist": {q: v.cpu().numpy() for q, v in d["hist"].items()}}
            sample = {"g": d["g"], "h": part.hidden, **part.gates}   # the main part's, the last one
        self.sample = {k: v.detach().cpu() for k, v in sample.items()} if part.grad is not None else None
        module, layer, reverse = self.main()
        rhos = {f"rho_{p}": m.rho(l, bool(r)) for p, (m, l, r) in self.located().items()}
        W = module.recurrent_matrix(layer, bool(reverse))
        row = {"iter": self.iters, "train_loss": float(np.mean(iter_columns["loss"])),
               "valid_loss": math.nan, "valid_error": math.nan, **self.valid,
               "rho": rhos[f"rho_{list(parts)[-1]}"], "sigma_max": singular_max(W),
               **Horizon(None).check(parts)[1], **rhos,
               "wall_time": time.perf_counter() - self.t_start, "cpu_time": time.process_time() - self.c_start}
        if self.full is not None:
            full_iters, full_row = self.full.check(module, layer, reverse)
            iter_columns.update(full_iters)
            row.update(full_row)
        self.valid = {}
        self.file.append_iters(iter_columns)
        self.file.append_check(row, parts)
        self.checks, self.last_check = self.checks + 1, self.iters

    def located(self):
        """{part name: (module, layer, reverse)}."""
        return {name: (module, layer, reverse) for prefix, module in self.modules
                for name, (layer, reverse) in module.part_names(prefix).items()}

    def _at_exit(self):
        if not self.closed and self.file is not None:
            self.close("interrupted", "the process ended without Recorder.close()")


class FullLevel:
    """diagnostics_level = "full" of a recorded loop (dynamics/probes/theory.py has the harness's):
    per update, the gradient norm before clipping and the update-to-weight ratio ‖ΔW‖/‖W‖ of each
    part's W_hh and W_xh (its weight_hh and weight_ih); per check, along the last batch's
    trajectory through the main part (its first `probe_batch` sequences, float64), the norms of
    the step Jacobians and of their products, the top Lyapunov exponents, λ₁ = ‖W‖₂ of the
    recurrent matrix and λ₁γ (an RNN's). Sharpness and the error surface need the loss as a
    function of the parameters, which a recorder does not have: sharpness is NaN."""

    def __init__(self, recorder, probe_batch, lyapunov_k):
        self.probe_batch, self.lyapunov_k = probe_batch, lyapunov_k
        self.groups = {}
        for part, (module, layer, reverse) in recorder.located().items():
            w_ih, w_hh, _, _ = module.layer_weights(layer, reverse)
            self.groups.update({f"W_hh_{part}": w_hh, f"W_xh_{part}": w_ih})
        self.before = [p.detach().clone() for p in self.groups.values()]   # the weights before the next update
        self.pending = []

    def datasets(self, steps, n):
        """{path: width} of what it adds to the run file, for batches of `steps` steps (the widths
        grow with a longer one) and a state of size n."""
        out = {f"iter/{kind}_{g}": None for g in self.groups for kind in ("grad_norm", "update_ratio")}
        return {**out, "check/jac_step_norm": steps, "check/jac_prod_norm": steps,
                "check/lyapunov": min(self.lyapunov_k, n),
                "check/lambda1": None, "check/lambda1_gamma": None, "check/sharpness": None}

    def after_update(self, pre_clip):
        params = [p.detach() for p in self.groups.values()]
        missing = params[0].new_full((), math.nan)
        norms = torch.stack([pre_clip.get(id(p), missing) for p in self.groups.values()])
        ratio = torch.stack(torch._foreach_norm(torch._foreach_sub(params, self.before)))
        ratio = ratio / torch.stack(torch._foreach_norm(self.before))
        torch._foreach_copy_(self.before, params)
        self.pending.append(torch.cat([norms, ratio]))

    def check(self, module, layer, reverse):
        rows = torch.stack(self.pending).double().cpu().numpy()
        self.pending, G = [], len(self.groups)
        iters = {f"grad_norm_{g}": rows[:, j] for j, g in enumerate(self.groups)}
        iters.update({f"update_ratio_{g}": rows[:, G + j] for j, g in enumerate(self.groups)})
        J = module.step_jacobians(layer, bool(reverse), self.probe_batch)
        k = min(self.lyapunov_k, J[0].shape[-1])
        lambda1 = singular_max(module.recurrent_matrix(layer, bool(reverse)))
        gamma = theory.GAMMA[ACTIVATION[module.mode]] if module_cell(module) == "rnn" else math.nan
        return iters, {
            "jac_step_norm": torch.stack([torch.linalg.matrix_norm(J_t, ord=2).mean() for J_t in J]).cpu().numpy(),
            "jac_prod_norm": (10 ** theory.product_log10_norms(J).mean(dim=1)).cpu().numpy(),
            "lyapunov": theory.lyapunov_exponents(J, k).mean(dim=0).cpu().numpy(),
            "lambda1": lambda1, "lambda1_gamma": lambda1 * gamma, "sharpness": math.nan}


class Declared:
    """What the run file asks of a config and a task family, for a recorded loop: its name, the
    main module's cell, and the settings (the modules, the check rate and your `config`)."""

    family, attrs, check_columns, check_arrays, static = FAMILY, {}, (), {}, {}

    def __init__(self, recorder, module):
        self.name = recorder.name
        self.cell = module_cell(module)
        self.task = FAMILY
        self.device = str(next(recorder.model.parameters()).device)
        self.settings = {"name": self.name, "task": FAMILY, "cell": self.cell, "n_hidden": module.hidden_size,
                         "n_layers": module.num_layers, "check_freq": recorder.check_every,
                         "diagnostics_level": "full" if recorder.full else "basic",
                         "optimizer": type(recorder.optimizer).__name__.lower() if recorder.optimizer else "",
                         "lr": recorder.lr(),
                         "modules": {prefix.rstrip(".") or "model": repr(m) for prefix, m in recorder.modules},
                         **recorder.user_config}

    def to_json(self):
        return json.dumps(self.settings, sort_keys=True, default=str)


def main_shape(module, part):
    """The steps of the main part's batch and the size of its state (the LSTM's is [h, c])."""
    return part.hidden.shape[0], module.hidden_size * (2 if module.mode == "LSTM" else 1)


def module_cell(module):
    return {"LSTM": "lstm", "GRU": "gru"}.get(module.mode, "rnn")


def scalar(loss):
    """`loss` as a 0-dim tensor; anything else is bad input."""
    value = loss if torch.is_tensor(loss) else torch.as_tensor(loss, dtype=torch.float64) \
        if isinstance(loss, (int, float)) else None
    if value is None or value.numel() != 1 or value.dtype.is_complex:
        shape = tuple(loss.shape) if torch.is_tensor(loss) else type(loss).__name__
        raise InputError(f"dynamics.Recorder: the loss must be a scalar (got {shape}); pass the batch's mean loss, "
                         f"e.g. loss.mean()")
    return value.reshape(())


UNSUPPORTED = (torch.nn.RNNCell, torch.nn.GRUCell, torch.nn.LSTMCell)


def recurrent_modules(model):
    """[(prefix, module)] of every dynamics.nn module inside `model` (prefix: its name and a dot);
    a model without one, or with a recurrent module it cannot read, is bad input."""
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"dynamics.Recorder: expected a torch.nn.Module, got {type(model).__name__}")
    found, unconverted = [], []
    for name, m in model.named_modules():
        where = name or type(model).__name__
        if isinstance(m, DropIn):
            if m.proj_size:
                raise InputError(f"dynamics.Recorder: {where} is an LSTM with proj_size={m.proj_size}, which is "
                                 f"not supported")
            found.append((f"{name}." if name else "", m))
        elif type(m) in MODULES:
            unconverted.append(where)
        elif isinstance(m, UNSUPPORTED):
            raise InputError(f"dynamics.Recorder: {where} is a torch.nn.{type(m).__name__}, which it cannot read; "
                             f"run the sequence through dynamics.nn.{type(m).__name__[:-4].upper()} instead")
    if unconverted:
        raise InputError(f"dynamics.Recorder: {', '.join(unconverted)} is a torch.nn recurrent module without "
                         f"∂L/∂h_t; convert the model first: model = dynamics.nn.convert(model)")
    if not found:
        raise InputError(f"dynamics.Recorder: {type(model).__name__} has no recurrent module; it records models "
                         f"with a torch.nn or dynamics.nn RNN, GRU or LSTM")
    return found
