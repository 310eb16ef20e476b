"""One SGD step (forward, loss, backward with ∂L/∂h_t, update) of our cells against torch.nn.

The LayerNorm LSTM is timed against our own LSTM (rows "lnlstm/lstm": ours_ms is the LN-LSTM,
torch_ms our LSTM).

Usage: python benchmarks/bench.py [--device cpu|cuda|all] [--threads N] [--repeats N] [--csv PATH]
                                  [--clock wall|cpu] [--probes-only] [--own-model] [--startup]
Both sides run interleaved in one process, so the ratio is measured under the same load. Then
the cost of diagnostics_level = full against basic (one update, one check, one error surface).
CPU threads default to 1, as in training (config key `threads`). On a machine shared with other
work, `--clock cpu` times the CPU steps by this process's CPU time, which leaves out the time the
process waits for a core (with one thread it equals the wall time of an idle machine).
It ends with the start-up time of `dynamics --help` and `dynamics info` (alone: --startup).
"""
import argparse
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


def bench(cell, B, H, T, device, repeats):
    torch.manual_seed(0)
    x = torch.randn(T, B, N_IN, device=device)
    y = torch.randint(N_OUT, (B,), device=device)
    ours = dynamics.build_model(cell, N_IN, H, N_OUT, "last_softmax", seed=0, device=device)
    ref = TorchModel(cell, H).to(device)
    steps = {"ours": step_fn(ours, x, y, True), "torch": step_fn(ref, x, y, False)}
    for s in steps.values():  # warm-up
        for _ in range(3):
            s()
    times = {k: [] for k in steps}
    for _ in range(repeats):  # interleaved: both see the same machine load
        for k, s in steps.items():
            times[k].append(timed(s, device))
    return {k: statistics.median(v) for k, v in times.items()}


class TorchLM(nn.Module):
    """A character language model on torch.nn.LSTM: embedding → stacked LSTM → linear head."""

    def __init__(self, vocab, H, layers):
        super().__init__()
        self.embed = nn.Embedding(vocab, H)
        self.rnn = nn.LSTM(H, H, layers)
        self.head = nn.Linear(H, vocab)

    def forward(self, x):
        return self.head(self.rnn(self.embed(x))[0])


def bench_lnlstm(B, H, T, device, repeats):
    """One SGD step of our LayerNorm LSTM against our plain LSTM, same shapes and head."""
    torch.manual_seed(0)
    x = torch.randn(T, B, N_IN, device=device)
    y = torch.randint(N_OUT, (B,), device=device)
    steps = {cell: step_fn(dynamics.build_model(cell, N_IN, H, N_OUT, "last_softmax", seed=0, device=device),
                           x, y, True) for cell in ("lnlstm", "lstm")}
    for s in steps.values():
        for _ in range(3):
            s()
    times = {k: [] for k in steps}
    for _ in range(repeats):
        for k, s in steps.items():
            times[k].append(timed(s, device))
    return {k: statistics.median(v) for k, v in times.items()}


def bench_lm(device, repeats, vocab=65, H=256, layers=2, B=32, T=100):
    """Characters per second of one Adam step of a 2-layer LSTM language model."""
    torch.manual_seed(0)
    x = torch.randint(vocab, (T, B), device=device)
    y = torch.randint(vocab, (T, B), device=device)
    ours = dynamics.build_model("lstm", H, H, vocab, "softmax", n_layers=layers, vocab_size=vocab, seed=0,
                                device=device)
    ref = TorchLM(vocab, H, layers).to(device)

    def step_fn(model, is_ours):
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step():
            opt.zero_grad(set_to_none=True)
            logits = model(x).logits if is_ours else model(x)
            nn.functional.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1)).backward()
            opt.step()
        return step
    steps = {"ours": step_fn(ours, True), "torch": step_fn(ref, False)}
    for s in steps.values():
        for _ in range(2):
            s()
    times = {k: [] for k in steps}
    for _ in range(repeats):
        for k, s in steps.items():
            times[k].append(timed(s, device))
    return {k: B * T / statistics.median(v) for k, v in times.items()}


def bench_probes(device, repeats, cell="lstm", B=20, H=50, T=150, check_freq=20):
    """Milliseconds per SGD step of one model with the probes on against off, in alternating blocks
    of `check_freq` updates. On: what training records, i.e. per update the gradient norms and the
    clipping and non-finite checks, and per block one check's g_t and histograms of every layer,
    moved to the host. Off: forward, loss, backward (∂L/∂h_t falls out of BPTT either way), update.
    The overhead is the median over adjacent (on, off) pairs of their ratio: on a shared machine
    a pair sees the same load, while the medians of each side may come from different moments."""
    torch.manual_seed(0)
    x = torch.randn(T, B, N_IN, device=device)
    y = torch.randint(N_OUT, (B,), device=device)
    model = dynamics.build_model(cell, N_IN, H, N_OUT, "last_softmax", seed=0, device=device)
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=0.01)
    edges = {part.name: probes.hist_edges(part) for part in model.parts()}

    def block(on):
        pending = []
        for _ in range(check_freq):
            opt.zero_grad(set_to_none=False)
            out = model(x)
            loss = nn.functional.cross_entropy(out.logits, y)
            loss.backward()
            if on:
                pending.append(torch.cat([loss.detach().view(1), probes.clip_gradients(params, None, 1.0, "none")]))
            opt.step()
        if on:
            torch.stack(pending).cpu()
            for part in model.parts():
                d = probes.layer_diagnostics(part, edges[part.name])
                d["grad_time"].cpu(), [v.cpu() for v in d["hist"].values()]

    block(True), block(False)  # warm-up
    times = {True: [], False: []}
    for _ in range(max(5, repeats // 2)):
        for on in (True, False):
            times[on].append(timed(lambda: block(on), device) / check_freq)
    out = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    out["overhead"] = statistics.median(a / b for a, b in zip(times[True], times[False])) - 1
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
    for s in steps.values():
        for _ in range(3):
            s()
    assert ours.rnn.hidden_grad() is not None
    times = {k: [] for k in steps}
    for _ in range(repeats):
        for k, s in steps.items():
            times[k].append(timed(s, device))
    return {k: statistics.median(v) for k, v in times.items()}


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
    p.add_argument("--own-model", action="store_true", help="only the lines of dynamics.nn and dynamics.Recorder")
    args = p.parse_args()
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
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads; median of {args.repeats} SGD steps, {args.clock} clock")
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
        lm = bench_lm(device, max(5, args.repeats // 3))
        ratio = lm["torch"] / lm["ours"]
        rows.append((device, "lm-lstm", 32, 256, 100, 1e3 * 3200 / lm["ours"], 1e3 * 3200 / lm["torch"], ratio))
        print(f"{device:6} char LM, 2x256 LSTM, B=32, T=100: ours {lm['ours']:,.0f} chars/s, "
              f"torch.nn {lm['torch']:,.0f} chars/s ({ratio:.2f}x the time)", flush=True)
        pr = bench_probes(device, args.repeats)
        rows.append((device, "probes-lstm", 20, 50, 150, pr[True], pr[False], 1 + pr["overhead"]))
        print(f"{device:6} diagnostics, LSTM B=20 H=50 T=150, a check every 20 updates: probes on "
              f"{pr[True]:.2f} ms/step, off {pr[False]:.2f} ms/step ({100 * pr['overhead']:+.1f}%, the median "
              f"of paired blocks)", flush=True)
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
