"""One SGD step (forward, loss, backward with ∂L/∂h_t, update) of our cells against torch.nn.

The LayerNorm LSTM is timed against our own LSTM (rows "lnlstm/lstm": ours_ms is the LN-LSTM,
torch_ms our LSTM).

Usage: python benchmarks/bench.py [--device cpu|cuda|all] [--threads N] [--repeats N] [--csv PATH]
                                  [--clock wall|cpu] [--probes-only] [--own-model] [--lm] [--scaling]
                                  [--startup]
Both sides run interleaved in one process, so the ratio is measured under the same load. Then
a 2×256 LSTM character language model on one thread and two (--lm: those lines alone, and where
its step's time goes), the cost of the diagnostics, and of diagnostics_level = full against
basic (one update, one check, one error surface). --scaling: time and peak memory of one step
against T, H and B (CPU, and CUDA where there is a GPU).
CPU threads default to 1, as in training (config key `threads`). On a machine shared with other
work, `--clock cpu` times the CPU steps by this process's CPU time, which leaves out the time the
process waits for a core (with one thread it equals the wall time of an idle machine).
It ends with the start-up time of `dynamics --help` and `dynamics info` (alone: --startup).
"""
import argparse
import copy
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import dynamics
import dynamics.nn as dnn
import tasks.synthetic as tasks
from dynamics import probes
from dynamics.allocator import keep_freed_memory

SHAPES = [(20, 50, 150), (1000, 50, 150), (64, 256, 128)]  # (B, H, T)
CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
N_IN, N_OUT = 8, 4


class TorchModel(nn.Module):
    """The same network on torch.nn's fused recurrence: rnn → linear head on the last step."""

    def __init__(self, cell, H):
        super().__init__()
        self.rnn = CELLS[cell](N_IN, H)
        self.head = nn.Linear(H, N_OUT)

    def forward(self, x):
        return self.head(self.rnn(x)[0][-1])


def step_fn(model, x, y, ours):
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(x).logits if ours else model(x)
        nn.functional.cross_entropy(logits, y).backward()
        if ours:
            assert model.hidden_grad is not None
        opt.step()
    return step


CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCK["wall"]


def timed(step, device):
    now = clock if device == "cpu" else time.perf_counter
    if device == "cuda":
        torch.cuda.synchronize()
    t = now()
    step()
    if device == "cuda":
        torch.cuda.synchronize()
    return now() - t


def bench(cell, B, H, T, device, repeats, warmup=3):
    torch.manual_seed(0)
    x = torch.randn(T, B, N_IN, device=device)
    y = torch.randint(N_OUT, (B,), device=device)
    ours = dynamics.build_model(cell, N_IN, H, N_OUT, "last_softmax", seed=0, device=device)
    ref = TorchModel(cell, H).to(device)
    steps = {"ours": step_fn(ours, x, y, True), "torch": step_fn(ref, x, y, False)}
    return side_by_side(steps, device, repeats, warmup)


def side_by_side(steps, device, repeats, warmup=3):
    """The median time of each named step after `warmup` calls of each, the steps interleaved in
    every repeat, so that all see the same machine load."""
    for s in steps.values():
        for _ in range(warmup):
            s()
    times = {k: [] for k in steps}
    for _ in range(repeats):
        for k, s in steps.items():
            times[k].append(timed(s, device))
    return {k: statistics.median(v) for k, v in times.items()}


class TorchLM(nn.Module):
    """A character language model on torch.nn.LSTM: embedding → stacked LSTM → linear head, with
    dropout where dynamics' Model has it: after the embedding, between the layers, before the head."""

    def __init__(self, vocab, H, layers, dropout=0.0):
        super().__init__()
        self.embed = nn.Embedding(vocab, H)
        self.rnn = nn.LSTM(H, H, layers, dropout=dropout)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(H, vocab)

    def forward(self, x):
        return self.head(self.drop(self.rnn(self.drop(self.embed(x)))[0]))


def to_host(pending):
    """What a check does with the updates' records (dynamics/train.py): one table, to the host."""
    losses, stats = zip(*pending)
    return torch.cat([torch.stack(losses)[:, None], torch.stack(stats)], 1).double().cpu()


def bench_lnlstm(B, H, T, device, repeats):
    """One SGD step of our LayerNorm LSTM against our plain LSTM, same shapes and head."""
    torch.manual_seed(0)
    x = torch.randn(T, B, N_IN, device=device)
    y = torch.randint(N_OUT, (B,), device=device)
    steps = {cell: step_fn(dynamics.build_model(cell, N_IN, H, N_OUT, "last_softmax", seed=0, device=device),
                           x, y, True) for cell in ("lnlstm", "lstm")}
    return side_by_side(steps, device, repeats)


# The language model of the LM lines: 2×256 LSTM, characters (65), B = 32 streams of T = 100, Adam,
# dropout 0.2 between the layers, clipping at 5 as the L presets, a check every 100 updates.
LM = dict(vocab=65, H=256, layers=2, B=32, T=100, dropout=0.2, cutoff=5.0, check_every=100)


class LMSteps:
    """One training step of the language model, ours (dynamics' Model, with what training records:
    the gradient norms and clipping of probes.clip_gradients per update and, every `check_every`
    updates, g_t and the histograms of both layers) and torch.nn's (clip_grad_norm_)."""

    def __init__(self, device, vocab, H, layers, B, T, dropout, cutoff, check_every):
        torch.manual_seed(0)
        self.x = torch.randint(vocab, (T, B), device=device)
        self.y = torch.randint(vocab, (T, B), device=device)
        self.vocab, self.cutoff, self.check_every, self.chars = vocab, cutoff, check_every, B * T
        self.ours = dynamics.build_model("lstm", H, H, vocab, "softmax", n_layers=layers, vocab_size=vocab,
                                         dropout=dropout, seed=0, device=device)
        self.ref = TorchLM(vocab, H, layers, dropout).to(device)
        self.params = list(self.ours.parameters())
        self.opt = {m: torch.optim.Adam(m.parameters(), lr=1e-3) for m in (self.ours, self.ref)}
        self.edges = {part.name: probes.hist_edges(part) for part in self.ours.parts()}
        self.pending = []

    def loss(self, logits):
        return nn.functional.cross_entropy(logits.reshape(-1, self.vocab), self.y.reshape(-1))

    def step_ours(self):
        model, opt = self.ours, self.opt[self.ours]
        opt.zero_grad(set_to_none=True)
        loss = self.loss(model(self.x).logits)
        loss.backward()
        self.pending.append((loss.detach(), probes.clip_gradients(self.params, None, self.cutoff, "rescale")))
        opt.step()

    def check_ours(self):
        """What a check reads of the last update: g_t and the histograms of every layer, to the host."""
        to_host(self.pending)
        self.pending = []
        for part in self.ours.parts():
            d = probes.layer_diagnostics(part, self.edges[part.name])
            d["grad_time"].cpu(), [v.cpu() for v in d["hist"].values()]

    def step_torch(self):
        opt = self.opt[self.ref]
        opt.zero_grad(set_to_none=True)
        self.loss(self.ref(self.x)).backward()
        nn.utils.clip_grad_norm_(self.ref.parameters(), self.cutoff)
        opt.step()


def bench_lm(device, repeats, threads=(1,), dropout=LM["dropout"]):
    """Characters per second of the language model's step, ours (a check's cost spread over
    `check_every` updates) and torch.nn's, at each thread count: all steps interleaved, so every
    number sees the same machine load."""
    lm, before = LMSteps(device, **{**LM, "dropout": dropout}), torch.get_num_threads()
    steps = {(k, n): s for n in threads for k, s in (("ours", lm.step_ours), ("torch", lm.step_torch))}
    times, checks = {k: [] for k in steps}, {n: [] for n in threads}
    for _ in range(5):   # warm-up, also of the heap: its free blocks settle after a few steps
        for (_, n), s in steps.items():
            torch.set_num_threads(n)
            s()
    for i in range(repeats):
        for (k, n), s in list(steps.items())[::(-1) ** i]:   # alternating order: neither side always first
            torch.set_num_threads(n)
            times[k, n].append(timed(s, device))
            if k == "ours":
                checks[n].append(timed(lm.check_ours, device))
    out = {}
    for (k, n), v in times.items():
        step = statistics.median(v) + (statistics.median(checks[n]) / lm.check_every if k == "ours" else 0)
        out[k, n] = lm.chars / step
    out["check_ms"] = {n: 1e3 * statistics.median(v) for n, v in checks.items()}
    torch.set_num_threads(before)
    return out


def profile_lm(device, repeats):
    """Where the language model's step goes: each part timed alone (forward and backward where it has
    one) on the shapes and tensors of the step, ours and torch.nn's, interleaved. `rest` is the step
    less the parts: the autograd engine, zero_grad, the reshapes."""
    lm = LMSteps(device, **LM)
    ours, ref = lm.ours, lm.ref
    T, B, H = lm.x.shape[0], lm.x.shape[1], LM["H"]
    h = torch.randn(T, B, H, device=device, requires_grad=True)
    upstream = torch.randn(T, B, H, device=device)

    def backward_of(f):
        return lambda: f().backward(upstream)

    def ours_stack():
        x = h
        for layer in ours.layers:
            x = layer(x)[0]
        return x

    def head_of(weight, bias):
        return lambda: lm.loss(torch.matmul(h, weight) + bias).backward()

    def drop3(module):   # after the embedding, between the layers, before the head
        return lambda: sum(module(h) for _ in range(3))

    def adam(model):
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        return lm.opt[model].step

    ref_stack = copy.deepcopy(ref.rnn)
    ref_stack.dropout = 0.0   # the dropout torch.nn.LSTM applies between its layers is a part of its own below
    ref_params = list(ref.parameters())
    lm.step_ours(), lm.step_torch()
    parts = {
        "recurrence (2 layers)": (backward_of(ours_stack), backward_of(lambda: ref_stack(h)[0])),
        "head and softmax": (head_of(ours.W_hy, ours.b_y), head_of(ref.head.weight.t(), ref.head.bias)),
        "embedding": (backward_of(lambda: ours.embedding(lm.x)), backward_of(lambda: ref.embed(lm.x))),
        "dropout (3 places)": (backward_of(drop3(ours.drop)), backward_of(drop3(ref.drop))),
        "optimiser (Adam)": (adam(ours), adam(ref)),
        "clipping and norms": (lambda: probes.clip_gradients(lm.params, None, lm.cutoff, "rescale"),
                               lambda: nn.utils.clip_grad_norm_(ref_params, lm.cutoff)),
        "g_t and histograms (a check / 100)": (lm.check_ours, None),
        "whole step": (lm.step_ours, lm.step_torch),
    }
    times = {(name, side): [] for name, pair in parts.items() for side, f in zip(("ours", "torch"), pair) if f}
    for i in range(repeats):
        for name, pair in parts.items():
            for side, f in list(zip(("ours", "torch"), pair))[::(-1) ** i]:
                if f:
                    lm.pending.append((torch.zeros(()), torch.zeros(4)))   # check_ours reads what the updates recorded
                    times[name, side].append(timed(f, device))
    out = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    out["g_t and histograms (a check / 100)", "ours"] /= lm.check_every
    for side in ("ours", "torch"):
        out["sum of the parts", side] = sum(v for (name, s), v in out.items() if s == side and name != "whole step")
    return out


def print_profile(device, repeats):
    rows, before = {}, torch.get_num_threads()
    for n in (1, 2):
        torch.set_num_threads(n)
        for (name, side), v in profile_lm(device, repeats).items():
            rows.setdefault(name, {})[side, n] = v
    print(f"{device:6} where the LM step's time goes (ms; each part alone, median of {repeats}), one and two threads:")
    print(f"  {'part':36} {'ours 1':>8} {'torch 1':>8} {'ours 2':>8} {'torch 2':>8}")
    for name, v in rows.items():
        cells = " ".join(f"{v[k]:8.1f}" if k in v else f"{'-':>8}" for k in (("ours", 1), ("torch", 1), ("ours", 2),
                                                                              ("torch", 2)))
        print(f"  {name:36} {cells}", flush=True)
    torch.set_num_threads(before)


def bench_probes(device, repeats, cell="lstm", B=20, H=50, T=150, cutoff=1e9):
    """The cost of what training records, on a small LSTM step (a large one only makes it smaller).
    Per update, the gradient norms and the clipping and non-finite checks (probes.clip_gradients)
    and the row they make: without clipping against nothing (the 5 presets that do not clip, where
    the norms are for the record only), and with clipping against torch's clip_grad_norm_ (the
    other 41, where training needs the norm anyway); each the median ratio of adjacent updates,
    in alternating order, so that a pair sees the same machine load. Per check, g_t and the
    histograms of every layer moved to the host, timed alone and spread over the updates between
    checks: a check every 100 updates (the presets' rate; some check every 200) and every 20
    (the `check_freq` default). `cutoff` is never reached, so that all variants take the same steps."""
    torch.manual_seed(0)
    x = torch.randn(T, B, N_IN, device=device)
    y = torch.randint(N_OUT, (B,), device=device)
    model = dynamics.build_model(cell, N_IN, H, N_OUT, "last_softmax", seed=0, device=device)
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=0.01)
    edges = {part.name: probes.hist_edges(part) for part in model.parts()}
    pending = []

    def record(clip):   # as the training loop keeps them: joined at the check
        return lambda loss: pending.append((loss.detach(), probes.clip_gradients(params, None, cutoff, clip)))
    variants = {"off": lambda loss: None, "records": record("none"), "records, clipping": record("rescale"),
                "clip_grad_norm_": lambda loss: nn.utils.clip_grad_norm_(params, cutoff)}

    def step(after_backward):
        opt.zero_grad(set_to_none=False)
        loss = nn.functional.cross_entropy(model(x).logits, y)
        loss.backward()
        after_backward(loss)
        opt.step()

    def check():
        to_host(pending)
        pending.clear()
        for part in model.parts():
            d = probes.layer_diagnostics(part, edges[part.name])
            d["grad_time"].cpu(), [v.cpu() for v in d["hist"].values()]

    for f in list(variants.values()) * 3:  # warm-up
        step(f)
    times, checks = {k: [] for k in variants}, []
    for i in range(40 * repeats):   # 600 pairs by default: one pair's ratio varies by a few %
        for k in list(variants)[::(-1) ** i]:
            times[k].append(timed(lambda: step(variants[k]), device))
        if i % 40 == 39:
            checks.append(timed(check, device))

    def extra(k, base):
        return statistics.median(a / b for a, b in zip(times[k], times[base])) - 1
    off, check_s = statistics.median(times["off"]), statistics.median(checks)
    out = {"step_ms": off * 1e3, "check_ms": check_s * 1e3, "update": extra("records", "off"),
           "update_clipping": extra("records, clipping", "clip_grad_norm_")}
    for every in (100, 20):
        out[every] = out["update"] + check_s / (every * off)
        out[every, "clipping"] = out["update_clipping"] + check_s / (every * off)
    return out


def bench_dropin(cell, B, H, T, device, repeats):
    """One SGD step of torch.nn's model with its recurrence swapped for dynamics.nn's (exact
    ∂L/∂h_t kept per layer) against the same model on torch.nn."""
    torch.manual_seed(0)
    x = torch.randn(T, B, N_IN, device=device)
    y = torch.randint(N_OUT, (B,), device=device)
    ref = TorchModel(cell, H).to(device)
    ours = dnn.convert(TorchModel(cell, H).to(device))
    steps = {"ours": step_fn(ours, x, y, False), "torch": step_fn(ref, x, y, False)}
    times = side_by_side(steps, device, repeats)
    assert ours.rnn.hidden_grad() is not None
    return times


def bench_recorder(device, repeats, check_every=100, vocab=65, H=256, layers=2, B=32, T=100):
    """The cost of dynamics.Recorder in a user's loop: a 2-layer LSTM language model (dynamics.nn,
    Adam, clip_grad_norm_) with rec.step(loss) after each update against without (the median
    ratio of adjacent pairs of updates), plus one check (g_t and histograms of every layer, ρ, written to the run
    file) per `check_every` updates, timed on its own and spread over them."""
    torch.manual_seed(0)
    x = torch.randint(vocab, (T, B), device=device)
    y = torch.randint(vocab, (T, B), device=device)
    model = dnn.convert(TorchLM(vocab, H, layers).to(device))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with tempfile.TemporaryDirectory() as tmp:
        rec = dynamics.Recorder(model, Path(tmp) / "bench.h5", check_every=10 ** 9, optimizer=opt)

        def step(record):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1))
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if record:
                rec.step(loss)
        for record in (True, False, True):
            step(record)
        times, checks = {True: [], False: []}, []
        for _ in range(repeats):
            for record in (True, False):
                times[record].append(timed(lambda: step(record), device))
        for _ in range(max(3, repeats // 3)):
            step(True)
            checks.append(timed(rec.check, device))
        rec.close()
    off, check = statistics.median(times[False]), statistics.median(checks)
    per_update = statistics.median(a / b for a, b in zip(times[True], times[False])) - 1   # paired, as above
    return {"step_ms": off * 1e3, "update": per_update, "check_ms": check * 1e3,
            "overhead": per_update + check / (check_every * off)}


# The scaling table: one layer of 8 inputs, a softmax head on the last step, one thread (CPU).
SCALING = {"T": [(100, 256, 32), (1000, 256, 32), (10000, 256, 32)],
           "H": [(100, H, 32) for H in (64, 128, 256, 512, 1024)],
           "B": [(100, 256, B) for B in (1, 8, 32, 128, 512)]}
CUDA_GOAL = (256, 1024, 128)   # (T, H, B) at which the CUDA path aims for at most 1.5x cuDNN's time


def peak_memory(side, T, H, B, device):
    """The peak memory of one step of one model above the model and data, in a fresh process (so
    that the high-water mark is the step's): CPU, the growth of the process's peak resident size
    (VmHWM: getrusage's maxrss would start from the parent's); CUDA, torch's peak allocation."""
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)   # as the timed steps (scaling)
    y = torch.randint(N_OUT, (B,), device=device)

    def model_step(T):
        x = torch.randn(T, B, N_IN, device=device)
        model = (dynamics.build_model("lstm", N_IN, H, N_OUT, "last_softmax", seed=0, device=device) if side == "ours"
                 else TorchModel("lstm", H).to(device))
        return step_fn(model, x, y, side == "ours")
    model_step(2)()   # the kernels loaded, outside the measurement
    step = model_step(T)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    def high_water():
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmHWM:")[1].split()[0]) * 1024
    base = high_water()
    step()
    return (high_water() - base) / 2 ** 20


def stored_mb(T, H, B):
    """What our LSTM keeps for its backward, in float32: h_t and c_t (T+1 each), tanh c_t and the four
    gates per step, i.e. 7·T·B·H values, and in the backward ∂L/∂h_t, ∂L/∂a_t (4) and the head's
    gradient, 6 more; ∂L/∂h_t of the step before is kept until this one's replaces it."""
    return 4 * (7 + 6 + 1) * T * B * H / 2 ** 20


def scaling(device):
    """The table: time and peak memory of one step against T, H and B, ours and torch.nn.LSTM: the
    times side by side in this process, the memory of each side in a process of its own (`--point`).
    Denormal floats are flushed to zero on both sides: a gradient that vanishes through a thousand
    steps reaches them, and x86 computes with them tens of times slower, on both sides alike."""
    if device == "cuda" and not torch.cuda.is_available():
        print("cuda   scaling: skipped (no CUDA device here: torch.cuda.is_available() is False)", flush=True)
        return []
    grid = {**SCALING, **({"goal": [CUDA_GOAL]} if device == "cuda" else {})}
    print(f"{device:6} scaling of one step (1 layer, softmax on the last step, one thread): time ms, side by "
          f"side; peak memory MB above the model and data, each side in a process of its own; what BPTT keeps "
          f"by count (14 values per step, unit and sequence)", flush=True)
    print(f"  {'varied':6} {'T':>6} {'H':>5} {'B':>4} {'ours ms':>9} {'torch ms':>9} {'ratio':>6} {'ours MB':>8} "
          f"{'torch MB':>8} {'count MB':>10}")
    rows = []
    torch.set_flush_denormal(True)
    try:
        for varied, points in grid.items():
            for T, H, B in points:
                t = bench("lstm", B, H, T, device, 3 if T * H * B > 10 ** 8 else 7, warmup=1)
                mb = {}
                for side in ("ours", "torch"):
                    out = subprocess.run([sys.executable, __file__, "--point", f"{side},{T},{H},{B},{device}"],
                                         capture_output=True, text=True)
                    mb[side] = float(out.stdout.split()[-1]) if out.returncode == 0 else float("nan")
                ratio = t["ours"] / t["torch"]
                rows.append((device, f"scaling-{varied}", B, H, T, t["ours"] * 1e3, t["torch"] * 1e3, ratio))
                print(f"  {varied:6} {T:6d} {H:5d} {B:4d} {t['ours'] * 1e3:9.1f} {t['torch'] * 1e3:9.1f} {ratio:5.2f}x "
                      f"{mb['ours']:8.0f} {mb['torch']:8.0f} {stored_mb(T, H, B):10.0f}", flush=True)
    finally:
        torch.set_flush_denormal(False)
    return rows


def bench_tasks(repeats, B=1000, T=200):
    """Milliseconds to generate one batch of each synthetic task (numpy, on the CPU)."""
    out = {}
    for name in tasks.NAMES:
        task, rng = tasks.get(name), np.random.default_rng(0)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            task.generate(B, T, rng)
            times.append(time.perf_counter() - t)
        out[name] = statistics.median(times) * 1e3
    return out


def startup(repeats):
    """Median wall seconds of whole commands, each a fresh process: the interpreter alone,
    `dynamics --help`, and `dynamics info` of a small finished run."""
    dynamics_cli = Path(sys.executable).with_name("dynamics")

    def wall(*args):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            subprocess.run(args, check=True, capture_output=True)
            times.append(time.perf_counter() - t)
        return statistics.median(times)
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([dynamics_cli, "train", "--quiet", "--n-hidden", "8", "--max-iters", "20", "--check-freq", "10",
                        "--eval-batch-size", "100", "--name", "s", "--out-dir", folder], check=True, capture_output=True)
        return {"python -c pass": wall(sys.executable, "-c", "pass"), "dynamics --help": wall(dynamics_cli, "--help"),
                "dynamics info RUN.h5": wall(dynamics_cli, "info", f"{folder}/s.h5")}


def print_startup(repeats):
    times = startup(repeats)
    print(f"start-up, median of {repeats}: " + ", ".join(f"{k} {v:.2f} s" for k, v in times.items()), flush=True)
def bench_levels(repeats):
    """Milliseconds of one update and one check of the A1 network (mem, tanh RNN, H=50, B=20,
    T 50-200) with diagnostics_level basic and full, interleaved; the check includes the
    validation of 1000 sequences. Also one error-surface slice (1-D and 2-D) of a training batch."""
    import tempfile

    from dynamics import config as cfg
    from dynamics.probes import theory
    from dynamics.train import Run
    base = dict(task="mem", init="basic_tanh", n_hidden=50, batch_size=20, min_length=50, max_length=200,
                eval_batch_size=1000, chunk_batch_size=500, check_freq=100, surface_every=0)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {level: Run(cfg.make({**base, "out_dir": tmp, "diagnostics_level": level})) for level in ("basic", "full")}
        steps, checks = {k: [] for k in runs}, {k: [] for k in runs}
        for _ in range(repeats):
            for level, run in runs.items():
                t = time.perf_counter()
                for _ in range(5):
                    run.step()
                steps[level].append((time.perf_counter() - t) / 5)
                t = time.perf_counter()
                run.check(t)
                checks[level].append(time.perf_counter() - t)
        run = runs["full"]
        x, y = run.source.batch()
        run.opt.zero_grad()
        run.source.loss(run.model(x).logits, y).backward()
        grads = [p.grad for p in run.params]
        surfaces = []
        for _ in range(max(1, repeats // 3)):
            t = time.perf_counter()
            with torch.no_grad():
                theory.loss_surface(lambda: run.source.loss(run.model(x).logits, y), run.params, grads, 0.1, 0.01)
            surfaces.append(time.perf_counter() - t)
    med = {k: 1e3 * statistics.median(v) for k, v in (("step_basic", steps["basic"]), ("step_full", steps["full"]),
                                                      ("check_basic", checks["basic"]), ("check_full", checks["full"]),
                                                      ("surface", surfaces))}
    med["T"] = x.shape[0]
    return med


def print_levels(repeats):
    p = bench_levels(max(3, repeats // 3))
    print(f"diagnostics_level full against basic (A1 network): update {p['step_full']:.2f} ms against "
          f"{p['step_basic']:.2f} ms ({p['step_full'] / p['step_basic']:.2f}x); check {p['check_full']:.0f} ms "
          f"against {p['check_basic']:.0f} ms ({p['check_full'] / p['check_basic']:.2f}x); one error-surface "
          f"slice (T={p['T']}) {p['surface']:.0f} ms", flush=True)


def print_diagnostics(device, args, rows):
    pr = bench_probes(device, args.repeats)
    rows.append((device, "probes-lstm", 20, 50, 150, pr["step_ms"] * (1 + pr[100]), pr["step_ms"], 1 + pr[100]))
    print(f"{device:6} diagnostics, LSTM B=20 H=50 T=150 (a step {pr['step_ms']:.2f} ms), per update (norms, "
          f"clipping checks; the median of paired updates) {100 * pr['update']:+.1f}% without clipping, "
          f"{100 * pr['update_clipping']:+.1f}% with it against clip_grad_norm_; {pr['check_ms']:.2f} ms per "
          f"check (g_t, histograms). In all, at a check every 100 updates (the presets): "
          f"{100 * pr[100]:+.1f}% / {100 * pr[100, 'clipping']:+.1f}%; every 20 (the default): "
          f"{100 * pr[20]:+.1f}% / {100 * pr[20, 'clipping']:+.1f}%", flush=True)


def lm_lines(device, args, rows):
    """The language model: ours against torch.nn in characters per second, with dropout 0.2 on one
    thread and (where the machine has them) two, and without dropout (the config's default) on one."""
    # CPU time counts every thread's, so a second thread is timed by the wall clock only
    more = args.threads == 1 and len(os.sched_getaffinity(0)) >= 2 and args.clock == "wall"
    counts = (args.threads, 2) if more else (args.threads,)
    one = counts[0]
    for dropout, threads in ((LM["dropout"], counts), (0.0, (one,))):
        lm = bench_lm(device, max(5, args.repeats // 3), threads, dropout)
        for n in threads:
            ratio = lm["ours", n] / lm["torch", n]
            step_ms = {k: 1e3 * LM["B"] * LM["T"] / lm[k, n] for k in ("ours", "torch")}
            rows.append((device, f"lm-lstm-dropout{dropout:g}-{n}t", LM["B"], LM["H"], LM["T"], step_ms["ours"],
                         step_ms["torch"], 1 / ratio))
            gain = "" if n == one else (f"; {lm['ours', n] / lm['ours', one]:.2f}x / "
                                        f"{lm['torch', n] / lm['torch', one]:.2f}x the speed of {one} thread")
            print(f"{device:6} char LM, 2x256 LSTM, B=32, T=100, dropout {dropout:g}, clipping, g_t every 100 updates, "
                  f"{n} thread{'s' * (n > 1)}: ours {lm['ours', n]:,.0f} chars/s, torch.nn {lm['torch', n]:,.0f} "
                  f"chars/s ({ratio:.2f}x its speed{gain})", flush=True)


def thread_gains(device, repeats, shapes=((20, 50, 150), (20, 128, 150), (64, 256, 128))):
    """Our LSTM's step on two threads against one, at small to large (B, H, T): the steps at each
    count interleaved, so both see the same load. Where `threads = auto` shares a step (B·H ≥ 2048)."""
    before, out = torch.get_num_threads(), {}
    for B, H, T in shapes:
        torch.manual_seed(0)
        x, y = torch.randn(T, B, N_IN, device=device), torch.randint(N_OUT, (B,), device=device)
        step = step_fn(dynamics.build_model("lstm", N_IN, H, N_OUT, "last_softmax", seed=0, device=device), x, y, True)
        times = {1: [], 2: []}
        for i in range(3 + repeats):
            for n in (1, 2) if i % 2 else (2, 1):
                torch.set_num_threads(n)
                t = timed(step, device)
                if i >= 3:
                    times[n].append(t)
        out[B, H, T] = statistics.median(times[1]) / statistics.median(times[2])
    torch.set_num_threads(before)
    print(f"{device:6} our LSTM's step on 2 threads against 1, at (B, H, T): " + ", ".join(
        f"({B}, {H}, {T}) {g:.2f}x" for (B, H, T), g in out.items()), flush=True)
    return out


def own_model(device, args, rows):
    """The lines of a model of one's own: the drop-in modules and the recorder."""
    for cell in args.cells.split(","):
        B, H, T = SHAPES[2]
        t = bench_dropin(cell, B, H, T, device, max(5, args.repeats // 3))
        ratio = t["ours"] / t["torch"]
        rows.append((device, f"dropin-{cell}", B, H, T, t["ours"] * 1e3, t["torch"] * 1e3, ratio))
        print(f"{device:6} dynamics.nn.{cell.upper()} in torch.nn's model, B={B} H={H} T={T}: "
              f"{t['ours'] * 1e3:.2f} ms against torch.nn {t['torch'] * 1e3:.2f} ms ({ratio:.2f}x the time)",
              flush=True)
    rc = bench_recorder(device, max(5, args.repeats // 3))
    rows.append((device, "recorder-lm", 32, 256, 100, rc["step_ms"] * (1 + rc["overhead"]), rc["step_ms"],
                 1 + rc["overhead"]))
    print(f"{device:6} dynamics.Recorder, 2x256 LSTM LM B=32 T=100, a check every 100 updates: step "
          f"{rc['step_ms']:.1f} ms, {100 * rc['update']:+.1f}% per update (the median of paired updates), "
          f"{rc['check_ms']:.1f} ms per check: {100 * rc['overhead']:+.1f}% of the step in all", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--csv", default="benchmarks/results.csv")
    p.add_argument("--cells", default="rnn,gru,lstm")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--startup", action="store_true", help="only the start-up times of the commands")
    p.add_argument("--clock", default="wall", choices=list(CLOCK), help="cpu: CPU time of the process (CPU steps)")
    p.add_argument("--probes-only", action="store_true", help="only the line on diagnostics_level full")
    p.add_argument("--diagnostics", action="store_true", help="only the line on the cost of the diagnostics")
    p.add_argument("--own-model", action="store_true", help="only the lines of dynamics.nn and dynamics.Recorder")
    p.add_argument("--lm", action="store_true", help="only the language model's lines and where its step goes")
    p.add_argument("--scaling", action="store_true", help="only the table of time and memory against T, H and B")
    p.add_argument("--malloc", default="kept", choices=["kept", "default"],
                   help="kept: freed memory kept for reuse, as training does (dynamics/allocator.py); "
                        "default: glibc's defaults, as a plain torch loop runs")
    p.add_argument("--point", help=argparse.SUPPRESS)   # one point of the scaling table: side,T,H,B,device
    args = p.parse_args()
    if args.malloc == "kept":
        keep_freed_memory()   # as training does (dynamics/allocator.py): both sides reuse freed memory
    if args.point:
        side, T, H, B, device = args.point.split(",")
        return print(peak_memory(side, int(T), int(H), int(B), device))
    if args.startup:
        return print_startup(args.repeats)
    global clock
    clock = CLOCK[args.clock]
    torch.set_num_threads(args.threads)
    if args.probes_only:
        return print_levels(args.repeats)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    if args.own_model:
        return [own_model(device, args, []) for device in devices]
    if args.diagnostics:
        return [print_diagnostics(device, args, []) for device in devices]
    if args.scaling:
        return [scaling(device) for device in ("cpu", "cuda")]
    if args.lm:
        for device in devices:
            lm_lines(device, args, [])
            print_profile(device, max(5, args.repeats // 3))
            if device == "cpu" and len(os.sched_getaffinity(0)) >= 2:
                thread_gains(device, max(5, args.repeats // 3))
        return
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads; median of {args.repeats} SGD steps, {args.clock} clock, freed memory "
          f"{'kept' if args.malloc == 'kept' else 'returned (glibc defaults)'}")
    print(f"{'device':6} {'cell':5} {'B':>5} {'H':>4} {'T':>4} {'ours ms':>9} {'torch.nn ms':>12} {'ratio':>6}")
    rows = []
    for device in devices:
        for cell in args.cells.split(","):
            for B, H, T in SHAPES:
                t = bench(cell, B, H, T, device, args.repeats)
                ratio = t["ours"] / t["torch"]
                rows.append((device, cell, B, H, T, t["ours"] * 1e3, t["torch"] * 1e3, ratio))
                print(f"{device:6} {cell:5} {B:5d} {H:4d} {T:4d} {t['ours'] * 1e3:9.2f} "
                      f"{t['torch'] * 1e3:12.2f} {ratio:5.2f}x", flush=True)
        for B, H, T in SHAPES[::2]:
            t = bench_lnlstm(B, H, T, device, max(5, args.repeats // 3))
            ratio = t["lnlstm"] / t["lstm"]
            rows.append((device, "lnlstm/lstm", B, H, T, t["lnlstm"] * 1e3, t["lstm"] * 1e3, ratio))
            print(f"{device:6} LN-LSTM against our LSTM, B={B} H={H} T={T}: {t['lnlstm'] * 1e3:.2f} ms against "
                  f"{t['lstm'] * 1e3:.2f} ms ({ratio:.2f}x the time)", flush=True)
        lm_lines(device, args, rows)
        print_diagnostics(device, args, rows)
        own_model(device, args, rows)
    print_levels(args.repeats)
    gen = bench_tasks(args.repeats)
    print("task batch (B=1000, T=200) generation ms: " + ", ".join(f"{k} {v:.1f}" for k, v in gen.items()))
    with open(args.csv, "w") as f:
        f.write("device,cell,B,H,T,ours_ms,torch_ms,ratio\n")
        for r in rows:
            f.write("%s,%s,%d,%d,%d,%.4f,%.4f,%.4f\n" % r)
    print(f"wrote {args.csv}")
    print_startup(args.repeats)


if __name__ == "__main__":
    main()
