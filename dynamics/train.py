"""The training loop: batch → forward → loss → BPTT → Ω → clipping → update → record.

Per update the loop keeps a few 0-dim device tensors (loss, norms, flags, Ω); every check it
moves them to the host in one go, evaluates, reads the diagnostics of that update's batch, appends
to the run file and saves a checkpoint from which `resume` continues bit-identically.
"""
import os
import sys
import time

import numpy as np
import torch

from tasks.errors import InputError

from . import config as cfg
from . import probes
from .models import compiled
from .probes import CLIP_STATS, OMEGA_STATS
from .allocator import keep_freed_memory
from .checkpoint import checkpoint_path, load_checkpoint, save_atomic
from .progress import progress_bar
from .faults import memory_fault, os_fault
from .lock import exclusive
from .runfile import RunFile, read_only, verify, write_npz
from .schedule import Schedule
from .sources import make_source
from .stopping import Stop, StopSignals

SOLVED_ERROR = 1e-4   # percent
# The /iter columns of an update: those kept on the device until the check moves them in one go,
# in the order step() stacks them, and those known on the host
DEVICE_COLUMNS = ("loss", *CLIP_STATS, *OMEGA_STATS)
HOST_COLUMNS = ("seq_len", "lr", "step_time")


def make_optimizer(config, params):
    c = config
    if c.optimizer == "sgd":
        return torch.optim.SGD(params, lr=c.lr, weight_decay=c.weight_decay)
    if c.optimizer == "momentum":
        return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
    if c.optimizer == "adam":
        return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
    return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)


def threads_for(c, cores=None):
    """The CPU threads of one run: the key `threads`, or for `auto` the cores this process may use
    when a step has the work to share them, else 1. The recurrence itself stays sequential in
    time: more threads split each step's matmuls and element-wise work, not the steps."""
    if c.threads != "auto":
        return c.threads
    width = c.d_model if c.cell == "transformer" else c.n_hidden
    return (cores or len(os.sched_getaffinity(0))) if c.batch_size * width >= cfg.SHARED_STEP else 1


def resolve_device(name):
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device={name!r} is not allowed: CUDA is not available on this machine")
    return torch.device(name)


class Run:
    """One training run: the model, optimiser, data source, and what it records."""

    def __init__(self, config):
        self.c = c = config
        self.device = resolve_device(c.device)
        self.dtype = getattr(torch, c.dtype)
        torch.set_num_threads(threads_for(c))
        if self.device.type == "cpu":
            keep_freed_memory()
        compiled.use(c.backend)
        torch.manual_seed(c.seed)
        self.source = make_source(c, self.device, self.dtype)
        self.model = self.source.build_model()
        self.params = [p for p in self.model.parameters()]
        self.opt = make_optimizer(c, self.params)
        self.schedule = Schedule(c)
        self.edges = {p.name: probes.hist_edges(p) for p in self.model.parts()}   # main part last
        # A model may record per-check arrays of its own (the Transformer: attention entropy and
        # maps, gradient norm per block): it declares them, and the run file adds them to the source's.
        self.example = None
        if hasattr(self.model, "check_values"):
            self.example = self.source.example()
            self.source.check_arrays = {**self.source.check_arrays, **self.model.check_arrays(self.example)}
        self.iters, self.checks, self.elapsed, self.cpu = 0, 0, 0.0, 0.0
        self.saved = 0      # the update of the last checkpoint written
        self.pending, self.host = [], []
        self.no_omega = torch.full((2,), float("nan"), device=self.device, dtype=self.dtype)   # Ω off
        self.sample = None
        self.probes = [probe(self) for probe in probes.PROBES if probe.applies(c)]
        # the probes' hooks around the clipping and the update, looked up once, not at every step
        self.before_clip = [p.before_clip for p in self.probes if hasattr(p, "before_clip")]
        self.after_update = [p.after_update for p in self.probes if hasattr(p, "after_update")]

    # -- one update -------------------------------------------------------------------------
    def step(self):
        c, model = self.c, self.model
        t0 = time.perf_counter()
        x, y = self.source.batch()
        self.opt.zero_grad(set_to_none=False)
        out = self.source.forward(model, x)
        loss = self.source.loss(out.logits, y)
        loss.backward()
        omega_past = self.no_omega
        if c.alpha > 0:   # config allows Ω only for the RNN of the stacked model
            layer = model.layers[0]
            W = layer.W_h.detach().requires_grad_()
            omega_value, past = probes.omega(out.hidden, layer.hidden_grad, W, layer.activation)
            (grad,) = torch.autograd.grad(omega_value, W)
            layer.W_h.grad.add_(grad, alpha=c.alpha)
            omega_past = torch.stack([omega_value.detach(), past]).to(loss.dtype)
        for hook in self.before_clip:
            hook(x, y, loss)
        recurrent = self.model.layers[0].W_h if c.cell == "rnn" and hasattr(self.model, "layers") else None
        clip_stats = probes.clip_gradients(self.params, recurrent, c.cutoff, c.clip)
        self.schedule.apply(self.opt, self.iters + 1)
        self.opt.step()
        for hook in self.after_update:
            hook()
        self.iters += 1
        self.pending.append((loss.detach(), clip_stats, omega_past))   # joined at the check, not per update
        self.host.append((x.shape[0], self.opt.param_groups[0]["lr"], time.perf_counter() - t0))
        return out

    # -- one check --------------------------------------------------------------------------
    def check(self, t_start, c_start=None):
        losses, clip_stats, omegas = zip(*self.pending)
        rows = torch.cat([torch.stack(losses)[:, None], torch.stack(clip_stats), torch.stack(omegas)], 1)
        rows = rows.double().cpu().numpy()   # the one transfer of the interval
        host = np.asarray(self.host, dtype=float)
        self.pending, self.host = [], []
        iter_columns = {**dict(zip(DEVICE_COLUMNS, rows.T)), **dict(zip(HOST_COLUMNS, host.T))}
        # diagnostics first: they read this update's batch, before validation runs the model again
        parts = {}
        if self.c.diagnostics:
            for part in self.model.parts():
                d = probes.layer_diagnostics(part, self.edges[part.name])
                parts[part.name] = {"grad_time": d["grad_time"].double().cpu().numpy(),
                                    "hist": {q: v.cpu().numpy() for q, v in d["hist"].items()},
                                    "align": part.align}
            self.sample = {"g": d["g"], "h": part.hidden, **part.gates}   # the main part's
            self.sample = {k: v.detach().cpu() for k, v in self.sample.items()}
        extra = self.model.check_values(self.example) if self.example is not None else {}
        self.model.eval()
        valid = self.source.evaluate(self.model)
        self.model.train()
        row = {"iter": self.iters, "train_loss": float(np.mean(iter_columns["loss"])), **valid, **extra}
        self.schedule.after_check(row["valid_loss"])
        for probe in self.probes:
            probe_iters, probe_row = probe.check(parts)
            iter_columns.update(probe_iters)
            row.update(probe_row)
        self.checks += 1
        row["wall_time"] = self.elapsed + time.perf_counter() - t_start
        row["cpu_time"] = self.cpu + (0.0 if c_start is None else time.process_time() - c_start)
        return iter_columns, row, parts

    def columns(self):
        """The per-check columns the probes declare."""
        return [name for p in self.probes for name in p.columns]

    def datasets(self):
        """The other growing datasets the probes declare, {path: width}."""
        return {k: v for p in self.probes if hasattr(p, "datasets") for k, v in p.datasets(self.c).items()}

    def state_dict(self):
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "source": self.source.state_dict(),
                "schedule": self.schedule.state_dict(),
                "torch_rng": torch.get_rng_state(), "iters": self.iters, "checks": self.checks,
                "elapsed": self.elapsed, "cpu": self.cpu, "sample": self.sample}

    def load_state_dict(self, s):
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["opt"])
        self.source.load_state_dict(s["source"])
        if "schedule" in s:    # checkpoints from before schedules ran at a constant rate
            self.schedule.load_state_dict(s["schedule"])
        torch.set_rng_state(s["torch_rng"])
        self.iters, self.checks, self.elapsed, self.sample = s["iters"], s["checks"], s["elapsed"], s["sample"]
        self.saved = self.iters
        self.cpu = s.get("cpu", 0.0)   # checkpoints from before the CPU clock


def train(config, command="", force=False, resume=False, progress=True, after_check=None):
    """Run `config` to the end and return the run file's path. The file is never overwritten
    without `force`; `resume` continues from the last checkpoint. Only one process at a time
    writes a run file: another one that is writing it makes this one an InputError."""
    with exclusive(config.run_path) as held:
        return train_alone(config, command, force, resume, progress, after_check, held)


def train_alone(config, command, force, resume, progress, after_check, held):
    path = config.run_path
    if force and resume:
        raise InputError("--force and --resume are not allowed together: choose one")
    if path.exists() and not (force or resume):
        raise InputError(f"run file {str(path)!r} exists: use --resume to continue it or --force to overwrite it")
    if resume and not path.exists():
        raise InputError(f"--resume: there is no run file {str(path)!r} to continue; without --resume the "
                         f"run starts afresh")
    try:
        run = Run(config)
        recorder = resumed(run, path) if resume else started(run, command)
    except OSError as e:   # a new run file appears whole or not at all; a resumed one is cut back only
        raise os_fault(e, "write the run file", "; nothing was changed") from None
    except (MemoryError, RuntimeError) as e:
        raise (memory_fault(e, "build the model and its data") or e) from None
    if recorder is None:
        return path   # nothing left to do; a larger max_iters or cpu_budget continues a finished run
    status, error, fault = "interrupted", "", None
    with StopSignals() as signals, progress_bar(config.name, config.max_iters, run.iters, progress) as bar:
        try:
            status = loop(run, recorder, bar, signals, after_check)
        except (KeyboardInterrupt, Stop):
            status = "interrupted"
        except Exception as e:
            status, error = "failed", f"{type(e).__name__}: {e}"
            # the machine rather than the run: one line that says what to do, not a traceback
            fault = os_fault(e, "write", after_fault(run)) if isinstance(e, OSError) else \
                memory_fault(e, "train", after_fault(run))
            if fault is None:
                raise
        finally:
            # rows of an unfinished interval are dropped: the file ends at the last checkpoint
            final = run.model.weights() if status in ("finished", "solved") else None
            try:
                recorder.close(status, error, final, run.sample if final is not None else None)
                if final is not None:
                    write_npz(path)
            except OSError as e:   # the file stays readable, as its last check left it, and says "running":
                held.keep()        # the lock names this process, so readers see that it stopped
                fault = fault or os_fault(e, "close the run file", after_fault(run))
    if fault is not None:
        raise fault
    return path


def after_fault(run):
    """What a run stopped by a fault keeps, and how it goes on."""
    if run.saved == 0:
        return "; no checkpoint was written yet: once that is fixed, start the run again with --force"
    return (f"; the run keeps its checkpoint at update {run.saved}: once that is fixed, the same command "
            f"with --resume continues from there")


def started(run, command):
    """A new run file for `run` (an old checkpoint beside it removed)."""
    ckpt = checkpoint_path(run.c)
    recorder = RunFile(run.c.run_path, run.c, command, run.edges, run.model.weights(), run.source, run.columns(),
                       run.datasets())
    if ckpt.exists():
        ckpt.unlink()
    return recorder


def resumed(run, path):
    """The run file cut back to the last checkpoint, whose state `run` takes; None when the run
    has nothing left to do."""
    c, ckpt = run.c, checkpoint_path(run.c)
    if not ckpt.exists():
        raise InputError(f"--resume: no checkpoint {str(ckpt)!r} beside {str(path)!r}")
    check_same_config(path, c)
    remedy = "--resume cannot continue from it, --force starts the run again (nothing was changed)"
    verify(path, remedy)
    state = load_checkpoint(ckpt, remedy)
    try:
        run.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as e:   # another run's checkpoint
        reason = " ".join(str(e).split())
        raise InputError(f"checkpoint {str(ckpt)!r} does not fit this run ({type(e).__name__}: {reason[:100]}); "
                         f"{remedy}") from None
    run.source.after_resume(run.model)
    if run_status(path) == "solved" or run.iters >= c.max_iters or 0 < c.cpu_budget <= run.cpu:
        return None
    return RunFile.resume(path, state["iters"], state["checks"], run.columns())


def loop(run, recorder, bar, signals, after_check):
    """Updates until max_iters, the CPU budget or a solved check; a check every check_freq
    updates appends its rows and saves the checkpoint. Returns the status."""
    c = run.c
    t_start, c_start = time.perf_counter(), time.process_time()
    while run.iters < c.max_iters:
        if signals.requested:
            raise Stop()
        run.step()
        bar.update(1)
        if run.iters % c.check_freq and run.iters != c.max_iters:
            continue
        columns, row, parts = run.check(t_start, c_start)
        if recorder.still_there() == "recreated":
            print(f"dynamics: run file {str(c.run_path)!r} was removed during the run; written again from this "
                  f"process's copy, every row kept", file=sys.stderr, flush=True)
        recorder.append_iters(columns)
        recorder.append_check(row, parts)
        run.elapsed += time.perf_counter() - t_start
        run.cpu += time.process_time() - c_start
        t_start, c_start = time.perf_counter(), time.process_time()
        save_atomic(run.state_dict(), checkpoint_path(c))
        run.saved = run.iters
        bar.set_postfix_str(f"loss {row['train_loss']:.4g} | gnorm {np.nanmax(columns['grad_norm']):.2e}"
                            f" | valid loss {row['valid_loss']:.4g}, error {row['valid_error']:.3g}%", refresh=False)
        if after_check is not None:
            after_check(run, row)
        if row["valid_error"] < SOLVED_ERROR and np.isfinite(row["valid_loss"]):
            return "solved"
        if 0 < c.cpu_budget <= run.cpu:
            break   # "finished": the budget, like max_iters, is part of the config
    return "finished"


def run_status(path):
    with read_only(path) as f:
        return f.attrs["status"]


def read_recorded(path):
    """The recorded config and status of a run file about to be resumed: a damaged file
    (truncated, not HDF5) is an InputError before anything touches it."""
    try:
        with read_only(path) as f:
            return cfg.recorded(f.attrs["config"]), str(f.attrs["status"])
    except (OSError, RuntimeError, KeyError, ValueError) as e:
        raise InputError(f"run file {str(path)!r} is damaged ({str(e).splitlines()[0][:80]}); --resume cannot "
                         f"continue it, --force starts the run again (nothing was changed)") from None


# what a resumed run may change: how long it runs, and where and on what (a copied or moved run
# folder resumes in its new place); every other key is what it computes
RESUME_MAY_CHANGE = ("max_iters", "cpu_budget", "device", "threads", "backend", "out_dir")


def check_same_config(path, config):
    import json
    recorded, _ = read_recorded(path)
    now = json.loads(config.to_json())
    changed = [k for k in now if k not in RESUME_MAY_CHANGE and recorded.get(k) != now[k]]
    if changed:
        k = changed[0]
        raise InputError(f"--resume: {k}={now[k]!r} differs from the run file's {k}={recorded.get(k)!r}")
