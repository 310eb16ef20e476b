"""One SGD step (forward, loss, backward with ∂L/∂h_t, update) of our cells against torch.nn.

The LayerNorm LSTM is timed against our own LSTM (rows "lnlstm/lstm": ours_ms is the LN-LSTM,
torch_ms our LSTM).

Usage: python benchmarks/bench.py [--device cpu|cuda|all] [--threads N] [--repeats N] [--csv PATH]
Both sides run interleaved in one process, so the ratio is measured under the same load.
CPU threads default to 1, as in training (config key `threads`).
"""
import argparse
import platform
import statistics
import time

import numpy as np
import torch
from torch import nn

import dynamics
import tasks

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


def timed(step, device):
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


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


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--csv", default="benchmarks/results.csv")
    p.add_argument("--cells", default="rnn,gru,lstm")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads; median of {args.repeats} SGD steps")
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
    gen = bench_tasks(args.repeats)
    print("task batch (B=1000, T=200) generation ms: " + ", ".join(f"{k} {v:.1f}" for k, v in gen.items()))
    with open(args.csv, "w") as f:
        f.write("device,cell,B,H,T,ours_ms,torch_ms,ratio\n")
        for r in rows:
            f.write("%s,%s,%d,%d,%d,%.4f,%.4f,%.4f\n" % r)
    print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
