"""The training loop: batch → forward → loss → BPTT → Ω → clipping → update → record.

Per update the loop keeps a few 0-dim device tensors (loss, norms, flags, Ω); every check it
moves them to the host in one go, evaluates, reads the diagnostics of that update's batch, appends
to the run file and saves a checkpoint from which `resume` continues bit-identically.
"""
import signal
import sys
import threading
import time

import h5py
import numpy as np
import torch
from tqdm import tqdm

from tasks.errors import InputError

from . import config as cfg
from . import probes
from .models import compiled
from .probes import CLIP_STATS, OMEGA_STATS
from .runfile import RunFile, exclusive, read_only, save_atomic
from .schedule import Schedule
from .sources import make_source

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
        torch.set_num_threads(c.threads)
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
        self.pending, self.host = [], []
        self.no_omega = torch.full((2,), float("nan"), device=self.device, dtype=self.dtype)   # Ω off
        self.sample = None
        self.probes = [probe(self) for probe in probes.PROBES if probe.applies(c)]

    def hooks(self, name):
        """The probes' methods `name` (before_clip, after_update), for those that have one."""
        return [getattr(p, name) for p in self.probes if hasattr(p, name)]

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
        for before_clip in self.hooks("before_clip"):
            before_clip(x, y, loss)
        recurrent = self.model.layers[0].W_h if c.cell == "rnn" and hasattr(self.model, "layers") else None
        clip_stats = probes.clip_gradients(self.params, recurrent, c.cutoff, c.clip)
        self.schedule.apply(self.opt, self.iters + 1)
        self.opt.step()
        for after_update in self.hooks("after_update"):
            after_update()
        self.iters += 1
        self.pending.append(torch.cat([loss.detach().view(1), clip_stats, omega_past]))
        self.host.append((x.shape[0], self.opt.param_groups[0]["lr"], time.perf_counter() - t0))
        return out

    # -- one check --------------------------------------------------------------------------
    def check(self, t_start, c_start=None):
        rows = torch.stack(self.pending).double().cpu().numpy()   # the one transfer of the interval
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
        self.cpu = s.get("cpu", 0.0)   # checkpoints from before the CPU clock


def checkpoint_path(config):
    return config.run_path.with_name(f"{config.name}_checkpoint.pt")


def load_checkpoint(path, remedy, map_location=None):
    """A checkpoint read as data only (tensors, numbers, strings, lists, dicts: torch's
    weights_only), so that opening a run folder from elsewhere cannot run code. A damaged file, or
    one that carries other objects, is an InputError that names it and says what to do."""
    import pickle
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" in str(e).lower():
            raise InputError(f"checkpoint {str(path)!r} is refused: it carries pickled objects other than "
                             f"tensors and plain data, which could run code; {remedy}") from None
        reason = e
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as e:
        reason = e
    raise InputError(f"checkpoint {str(path)!r} is damaged ({str(reason).splitlines()[0][:80]}); {remedy}")


def progress_bar(name, total, initial, progress):
    """A progress bar on a terminal; in a log (stdout or stderr not a terminal) one plain line per
    check instead of thousands of overwritten bar states."""
    if progress and not (sys.stdout.isatty() and sys.stderr.isatty()):
        return CheckLines(name, total, initial)
    return tqdm(total=total, initial=initial, disable=not progress, unit="it", desc=name, dynamic_ncols=True,
                leave=True)


class CheckLines:
    """What the loop asks of a progress bar, written as one line per check on stdout:
    `NAME iter I/N | loss … | gnorm … | valid …, …% | R it/s | ETA h:mm:ss`."""

    def __init__(self, name, total, initial):
        self.name, self.total, self.n, self.start = name, total, initial, initial
        self.t0 = time.perf_counter()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        self.n += n

    def set_postfix_str(self, text, refresh=True):
        rate = (self.n - self.start) / max(time.perf_counter() - self.t0, 1e-9)
        left = int((self.total - self.n) / rate) if rate > 0 else None
        eta = "?" if left is None else f"{left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}"
        print(f"{self.name} iter {self.n}/{self.total} | {text} | {rate:.1f} it/s | ETA {eta}", flush=True)


class Stop(Exception):
    """A stop was asked for (SIGINT, SIGTERM): the run closes as interrupted."""


class StopSignals:
    """SIGINT and SIGTERM set a flag that the loop reads between updates, so that a signal
    never lands between writing a check and saving its checkpoint."""

    def __init__(self):
        self.requested, self.previous = False, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self.request)
        return self

    def request(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def train(config, command="", force=False, resume=False, progress=True, after_check=None):
    """Run `config` to the end and return the run file's path. The file is never overwritten
    without `force`; `resume` continues from the last checkpoint. Only one process at a time
    writes a run file: another one that is writing it makes this one an InputError."""
    with exclusive(config.run_path):
        return train_alone(config, command, force, resume, progress, after_check)


def train_alone(config, command, force, resume, progress, after_check):
    path, ckpt = config.run_path, checkpoint_path(config)
    if force and resume:
        raise InputError("--force and --resume are not allowed together: choose one")
    if path.exists() and not (force or resume):
        raise InputError(f"run file {str(path)!r} exists: use --resume to continue it or --force to overwrite it")
    run = Run(config)
    if resume and path.exists():
        if not ckpt.exists():
            raise InputError(f"--resume: no checkpoint {str(ckpt)!r} beside {str(path)!r}")
        check_same_config(path, config)
        state = load_checkpoint(ckpt, "--resume cannot continue from it, --force starts the run again "
                                      "(nothing was changed)")
        run.load_state_dict(state)
        run.source.after_resume(run.model)
        if run_status(path) == "solved" or run.iters >= config.max_iters or 0 < config.cpu_budget <= run.cpu:
            return path   # nothing left to do; a larger max_iters or cpu_budget continues a finished run
        recorder = RunFile.resume(path, state["iters"], state["checks"], run.columns())
    else:
        recorder = RunFile(path, config, command, run.edges, run.model.weights(), run.source, run.columns(),
                           run.datasets())
        if ckpt.exists():
            ckpt.unlink()

    status, error = "interrupted", ""
    bar = progress_bar(config.name, config.max_iters, run.iters, progress)
    t_start, c_start = time.perf_counter(), time.process_time()
    with StopSignals() as signals, bar:
        try:
            status = "finished"
            while run.iters < config.max_iters:
                if signals.requested:
                    raise Stop()
                run.step()
                bar.update(1)
                if run.iters % config.check_freq == 0 or run.iters == config.max_iters:
                    columns, row, parts = run.check(t_start, c_start)
                    recorder.append_iters(columns)
                    recorder.append_check(row, parts)
                    run.elapsed += time.perf_counter() - t_start
                    run.cpu += time.process_time() - c_start
                    t_start, c_start = time.perf_counter(), time.process_time()
                    save_atomic(run.state_dict(), ckpt)
                    bar.set_postfix_str(f"loss {row['train_loss']:.4g} | gnorm {np.nanmax(columns['grad_norm']):.2e}"
                                        f" | valid {row['valid_loss']:.4g}, {row['valid_error']:.3g}%", refresh=False)
                    if after_check is not None:
                        after_check(run, row)
                    if row["valid_error"] < SOLVED_ERROR and np.isfinite(row["valid_loss"]):
                        status = "solved"
                        break
                    if 0 < config.cpu_budget <= run.cpu:
                        break   # "finished": the budget, like max_iters, is part of the config
        except (KeyboardInterrupt, Stop):
            status = "interrupted"
        except Exception as e:
            status, error = "failed", f"{type(e).__name__}: {e}"
            raise
        finally:
            # rows of an unfinished interval are dropped: the file ends at the last checkpoint
            final = run.model.weights() if status in ("finished", "solved") else None
            recorder.close(status, error, final, run.sample if final is not None else None)
            if final is not None:
                write_npz(path)
    return path


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


def check_same_config(path, config):
    import json
    recorded, _ = read_recorded(path)
    now = json.loads(config.to_json())
    changed = [k for k in now if k not in ("max_iters", "cpu_budget", "device", "threads", "backend") and recorded.get(k) != now[k]]
    if changed:
        k = changed[0]
        raise InputError(f"--resume: {k}={now[k]!r} differs from the run file's {k}={recorded.get(k)!r}")


def write_npz(path):
    """runs/<name>_final_state.npz with the reference code's keys, read back from the run file."""
    with h5py.File(path, "r") as f:
        out = {"train_nll": f["check/train_loss"][:], "valid_error": f["check/valid_error"][:],
               "gradient_norm": f["iter/grad_norm"][:], "gradient_norm_clipped": f["iter/grad_norm_clipped"][:],
               "rho_Whh": f["check/rho"][:], "Omega": f["iter/omega"][:]}
        out.update({k: v[:] for k, v in f["final/weights"].items()})
        if "grad_time" in f["check"] and f["check/grad_time"].shape[0]:
            out["g_t"] = f["check/grad_time"][-1]
        sample = f.get("final/sample")
        if sample is not None:
            if "h" in sample and f.attrs["cell"] != "transformer":   # a residual stream has no saturation
                h = sample["h"][:]
                activation = __import__("json").loads(f.attrs["config"])["activation"]
                out["saturation"] = np.minimum(h, 1 - h) if activation == "sigmoid" else 1 - np.abs(h)
            out.update({f"gate_{k}": v[:] for k, v in sample.items() if k not in ("g", "h")})
    np.savez(path.with_name(f"{path.stem}_final_state.npz"), **out)
