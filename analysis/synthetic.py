"""Synthetic run files with known contents, written exactly to the `dynamics-run/1` schema
(docs/run-file.md). Used by the tests and to demonstrate the figures without training:

    python -m analysis.synthetic runs/demo.h5 --cell gru

The default run tells a typical story: g_t decays exponentially going back in time (faster as
training goes on), some steps are clipped, a few are non-finite, ρ rises from 0.95 to 1.2.
"""
import json
import math

import numpy as np

from dynamics.probes.horizon import RATIOS, horizon, steps_back
from dynamics.schema import GATES, RECURRENT_MATRIX, ITER_COLUMNS, LOG10_EDGES, SCHEMA, SIGMOID_EDGES, TANH_EDGES

CELL_WEIGHTS = {
    "rnn": ("W_xh", "W_hh", "b_h"),
    "gru": ("W_xz", "W_hz", "b_z", "W_xr", "W_hr", "b_r", "W_xh", "W_hh", "b_h"),
    "lstm": ("W_xi", "W_hi", "b_i", "W_xf", "W_hf", "b_f", "W_xo", "W_ho", "b_o",
             "W_xc", "W_hc", "b_c"),
}
TASK_SHAPE = {"torder": (6, 4), "torder3": (6, 8), "add": (2, 1), "mul": (2, 1), "mem": (7, 6),
              "perm": (100, 100), "text": (65, 65)}
# The centre of each gate's pre-activation; the spread of all pre-activations grows over training.
GATE_MEAN = {"z": -0.5, "r": 0.5, "i": 0.0, "f": 2.5, "o": 0.5}


def _matrix_with_rho(rng, n, rho):
    """A random n × n matrix scaled to spectral radius `rho`."""
    W = rng.normal(size=(n, n))
    return W * (rho / np.abs(np.linalg.eigvals(W)).max())


def _dataset(group, name, data, dtype=float):
    """A dataset resizable along its first axis, like the rows a running trainer appends."""
    data = np.asarray(data, dtype=dtype)
    maxshape = (None,) + data.shape[1:]
    chunks = (max(1, min(len(data), 256)),) + data.shape[1:] if data.ndim else None
    return group.create_dataset(name, data=data, maxshape=maxshape, chunks=chunks)


def write_run(path, *, name=None, cell="rnn", task="torder", n_iter=600, check_freq=20,
              n_hidden=16, n_layers=1, batch=8, min_length=50, max_length=100,
              activation="tanh", init="smart_tanh", lr=0.01, clip="rescale", cutoff=1.0,
              alpha=0.0, rho=(0.95, 1.2), decay=(0.02, 0.12), nonfinite_steps=(137, 301, 302),
              status="finished", error="", seed=0, swmr=False, top_layer_unprefixed=False):
    """Write a run file and return its path (or, with `swmr=True`, the h5py File still open
    for writing in SWMR mode; the caller closes it).

    `decay` is the per-step slope of log10 g_t going back in time at the first and at the last
    check; `rho` the spectral radius of the recurrent matrix at the start and at the end.
    `top_layer_unprefixed` writes a stacked model with /check/layers/0 .. L-2 and the top layer
    unprefixed instead of the documented layer 0 unprefixed and /check/layers/1 .. L-1."""
    import h5py
    # One generator for the whole file: the steps below draw from it in this order, so a seed
    # always gives the same file.
    rng = np.random.default_rng(seed)
    name = name or str(path).rsplit("/", 1)[-1].rsplit(".", 1)[0]
    n_in, n_out = TASK_SHAPE.get(task, (4, 4))
    K = n_iter // check_freq
    chance = math.log(max(n_out, 2))
    spread = 0.6 + 2.0 * np.arange(1, K + 1) / K
    config = {"task": task, "cell": cell, "activation": activation, "init": init,
              "n_hidden": n_hidden, "n_layers": n_layers, "optimizer": "sgd", "lr": lr,
              "clip": clip, "cutoff": cutoff, "alpha": alpha, "min_length": min_length,
              "max_length": max_length, "batch_size": batch, "check_freq": check_freq,
              "max_iters": n_iter, "seed": seed, "name": name}

    f = h5py.File(path, "w", libver="latest")
    _write_attributes(f, config, status, error)
    _write_iter(f.create_group("iter"), rng, n_iter=n_iter, chance=chance, lr=lr, clip=clip,
                cutoff=cutoff, alpha=alpha, nonfinite_steps=nonfinite_steps,
                clipped_fill=0.02 * rho[0] * math.sqrt(n_hidden),
                lengths=(min_length, max_length))
    ck = f.create_group("check")
    _write_check_columns(ck, rng, K=K, check_freq=check_freq, n_iter=n_iter, chance=chance,
                         rho=rho, task=task)
    _write_layers(ck, rng, n_layers=n_layers, decay=decay, top_unprefixed=top_layer_unprefixed,
                  K=K, batch=batch, lengths=(min_length, max_length))
    _write_horizon(ck)
    _write_saturation(ck["hist"], rng, spread)
    _write_gates(ck["hist"], rng, cell, spread)
    if task == "text":
        _write_samples(ck, K)
    for group_name, r in (("start/weights", rho[0]), ("final/weights", rho[1])):
        _write_weights(f.create_group(group_name), rng, cell=cell, n_layers=n_layers,
                       n_in=n_in, n_hidden=n_hidden, n_out=n_out, rho=r)
    _write_final_sample(f.create_group("final/sample"), rng, cell=cell, T=max_length,
                        batch=batch, n_hidden=n_hidden, rate=decay[1], spread=spread[-1])
    if swmr:
        f.swmr_mode = True
        f.flush()
        return f
    f.close()
    return path


def _write_attributes(f, config, status, error):
    """The root attributes: schema, identity, status and the config as JSON."""
    name, task, cell = config["name"], config["task"], config["cell"]
    a = f.attrs
    a["schema"] = SCHEMA
    a["name"] = name
    a["status"] = status
    a["config"] = json.dumps(config)
    a["command"] = f"dynamics train --task {task} --cell {cell} --name {name}"
    a["created"] = "2026-01-01T00:00:00"
    a["finished"] = "" if status == "running" else "2026-01-01T01:00:00"
    a["torch_version"] = "2.13.0"
    a["dynamics_version"] = "0.1.0"
    a["git_commit"] = "0" * 40
    a["device"] = "cpu"
    a["error"] = error
    a["cell"] = cell
    a["task"] = task
    a["recurrent_matrix"] = RECURRENT_MATRIX[cell]


def _write_iter(it, rng, *, n_iter, chance, lr, clip, cutoff, alpha, nonfinite_steps,
                clipped_fill, lengths):
    """The per-update columns: the loss falls from chance, the norm spikes now and then."""
    progress = np.arange(1, n_iter + 1) / n_iter
    loss = chance * (1 - 0.8 * progress ** 2) + 0.05 * rng.normal(size=n_iter)
    grad_norm, nonfinite = _grad_norms(rng, n_iter, nonfinite_steps)
    if clip == "rescale":
        clipped = (np.isfinite(grad_norm) & (grad_norm > cutoff)).astype(float)
        clipped_norm = np.minimum(grad_norm, cutoff)
    else:
        clipped = np.zeros(n_iter)
        clipped_norm = grad_norm.copy()
    clipped_norm[nonfinite > 0] = clipped_fill
    if alpha > 0:
        omega = 4.0 * np.exp(-3 * progress) + 0.05 * rng.random(n_iter)
        steps_in_past = np.clip(0.3 + 0.6 * progress + 0.03 * rng.normal(size=n_iter), 0, 1)
    else:
        omega = np.full(n_iter, np.nan)
        steps_in_past = np.full(n_iter, np.nan)
    seq_len = rng.integers(lengths[0], lengths[1] + 1, size=n_iter)
    for col, values in zip(ITER_COLUMNS, (loss, grad_norm, clipped_norm, clipped, nonfinite,
                                          omega, steps_in_past, seq_len, np.full(n_iter, lr),
                                          0.01 + 0.002 * rng.random(n_iter))):
        _dataset(it, col, values)


def _grad_norms(rng, n_iter, nonfinite_steps):
    """Log-normal gradient norms, rare spikes of 10² to 10⁴, inf or NaN at `nonfinite_steps`."""
    grad_norm = np.exp(rng.normal(np.log(0.4), 0.5, size=n_iter))
    spikes = rng.random(n_iter) < 0.03
    grad_norm[spikes] *= 10 ** rng.uniform(2, 4, size=spikes.sum())
    nonfinite = np.zeros(n_iter)
    for s in nonfinite_steps:
        if 1 <= s <= n_iter:
            nonfinite[s - 1] = 1
            grad_norm[s - 1] = np.inf if s % 2 else np.nan
    return grad_norm, nonfinite


def _write_check_columns(ck, rng, *, K, check_freq, n_iter, chance, rho, task):
    """The per-check columns: losses and error falling, ρ rising from rho[0] to rho[1]."""
    iters = check_freq * np.arange(1, K + 1)
    p = iters / n_iter
    valid_loss = chance * (1 - 0.8 * p ** 2) + 0.01 * rng.normal(size=K)
    cols = {
        "iter": iters,
        "train_loss": valid_loss + 0.02 * rng.normal(size=K),
        "valid_loss": valid_loss,
        "valid_error": np.clip(75 * (1 - p ** 2) + rng.normal(size=K), 0, 100),
        "rho": rho[0] + (rho[1] - rho[0]) * p + 0.005 * rng.normal(size=K),
        "sigma_max": 1.4 * (rho[0] + (rho[1] - rho[0]) * p),
        "wall_time": 0.012 * iters + 3 * np.arange(1, K + 1),
    }
    if task == "text":
        cols["valid_bpc"] = valid_loss / math.log(2)
        cols["valid_ppl"] = np.exp(valid_loss)
        cols["chars_per_sec"] = 2.0e4 + 500 * rng.normal(size=K)
    for col, values in cols.items():
        _dataset(ck, col, values)


def _write_horizon(ck):
    """The gradient horizon of each check, counted on the unprefixed g_t as the trainer does."""
    rows = ck["grad_time"][()]
    backs = [steps_back(row) for row in rows]
    for name, ratio in RATIOS.items():
        _dataset(ck, name, [horizon(back, ratio) for back in backs])
    _dataset(ck, "horizon_steps", [len(back) for back in backs])


def _write_layers(ck, rng, *, n_layers, decay, top_unprefixed, K, batch, lengths):
    """Every layer's g_t and histogram: the unprefixed one first, then /check/layers/<l>.
    Layer l decays at a slower rate and starts higher, so the per-layer curves differ."""
    def layer(group, l):
        _write_layer(group, rng, rates=(decay[0] / (1 + l), decay[1] / (1 + l)), offset=0.5 * l,
                     K=K, batch=batch, lengths=lengths)

    base = n_layers - 1 if top_unprefixed else 0
    layer(ck, base)
    for l in range(n_layers):
        if l != base:
            layer(ck.create_group(f"layers/{l}"), l)


def _write_layer(group, rng, *, rates, offset, K, batch, lengths):
    """One layer's g_t (K, T_max) and its log10 g_t histogram over the batch's sequences."""
    gt = np.full((K, lengths[1]), np.nan)
    hist = np.zeros((K, len(LOG10_EDGES) - 1), dtype=np.int64)
    for k in range(K):
        Tk = int(rng.integers(lengths[0], lengths[1] + 1))
        rate = rates[0] + (rates[1] - rates[0]) * (k + 1) / K
        steps = np.arange(Tk)
        log_g = -1.0 + offset - rate * (Tk - 1 - steps)
        gt[k, :Tk] = 10 ** (log_g + 0.05 * rng.normal(size=Tk))
        per_seq = log_g[None, :] + 0.3 * rng.normal(size=(batch, Tk))
        hist[k] = np.histogram(np.clip(per_seq, -20, 9.999), LOG10_EDGES)[0]
    _dataset(group, "grad_time", gt)
    h = group.require_group("hist")
    _dataset(h, "log10_grad", hist, np.int64)
    h.create_dataset("log10_grad_edges", data=LOG10_EDGES)


def _write_saturation(hist, rng, spread):
    """The histogram of d(h) = 1 − |h|: tanh units saturate more as the spread grows."""
    sat = np.zeros((len(spread), 50), dtype=np.int64)
    for k, s in enumerate(spread):
        sat[k] = np.histogram(1 - np.abs(np.tanh(rng.normal(0, s, 4000))), TANH_EDGES)[0]
    _dataset(hist, "saturation", sat, np.int64)
    hist.create_dataset("saturation_edges", data=TANH_EDGES)


def _write_gates(hist, rng, cell, spread):
    """The histogram of d(v) = min(v, 1 − v) of each gate of `cell`."""
    for g in GATES[cell]:
        counts = np.zeros((len(spread), 50), dtype=np.int64)
        for k, s in enumerate(spread):
            v = 1 / (1 + np.exp(-rng.normal(GATE_MEAN[g], s, 4000)))
            counts[k] = np.histogram(np.minimum(v, 1 - v), SIGMOID_EDGES)[0]
        _dataset(hist, f"gate_{g}", counts, np.int64)
        hist.create_dataset(f"gate_{g}_edges", data=SIGMOID_EDGES)


def _write_samples(ck, K):
    """A text run's generated samples: two prompts per check."""
    import h5py
    prompts = ["ROMEO:", "First Citizen:"]
    text = np.array([[f"{pr} the {('king ' * (k % 3 + 1)).strip()} is here at check {k}"
                      for pr in prompts] for k in range(K)], dtype=object)
    ck.create_dataset("samples", data=text, dtype=h5py.string_dtype(), maxshape=(None, 2),
                      chunks=(16, 2))


def _write_weights(g, rng, *, cell, n_layers, n_in, n_hidden, n_out, rho):
    """Every layer's weights (suffix _l<l> above layer 0), the recurrent matrix at radius `rho`."""
    for l in range(n_layers):
        suffix = f"_l{l}" if l else ""
        for w in CELL_WEIGHTS[cell]:
            if w.startswith("b_"):
                data = np.zeros(n_hidden)
            elif w == RECURRENT_MATRIX[cell]:
                data = _matrix_with_rho(rng, n_hidden, rho)
            elif w.startswith("W_x"):
                data = 0.1 * rng.normal(size=(n_in if l == 0 else n_hidden, n_hidden))
            else:
                data = 0.1 * rng.normal(size=(n_hidden, n_hidden))
            g.create_dataset(w + suffix, data=data.astype(np.float32))
    g.create_dataset("W_hy", data=0.1 * rng.normal(size=(n_hidden, n_out)).astype(np.float32))
    g.create_dataset("b_y", data=np.zeros(n_out, np.float32))


def _write_final_sample(s, rng, *, cell, T, batch, n_hidden, rate, spread):
    """The final sample: g_t per sequence, the hidden states and the gates at the last spread."""
    s.create_dataset("g", data=10 ** (-1 - rate * np.arange(T)[::-1, None]
                                     + 0.1 * rng.normal(size=(T, batch))))
    s.create_dataset("h", data=np.tanh(rng.normal(0, spread, size=(T, batch, n_hidden))))
    for g in GATES[cell]:
        s.create_dataset(g, data=1 / (1 + np.exp(-rng.normal(GATE_MEAN[g], spread,
                                                               size=(T, batch, n_hidden)))))


def write_npz(path, *, cell="rnn", K=20, T=60, n_hidden=8, seed=0):
    """A final-state NPZ with the keys of docs/run-file.md (one value per check)."""
    rng = np.random.default_rng(seed)
    data = {
        "train_nll": np.linspace(1.4, 0.3, K),
        "valid_error": np.linspace(70, 5, K),
        "gradient_norm": np.exp(rng.normal(0, 1, K)),
        "rho_Whh": np.linspace(0.95, 1.1, K),
        "Omega": np.full(K, np.nan),
        "g_t": 10 ** (-1 - 0.1 * np.arange(T)[::-1]),
        "saturation": 1 - np.abs(np.tanh(rng.normal(0, 1.5, size=(T, 4, n_hidden)))),
    }
    data["gradient_norm_clipped"] = np.minimum(data["gradient_norm"], 1.0)
    for w in CELL_WEIGHTS[cell]:
        data[w] = (_matrix_with_rho(rng, n_hidden, 1.1) if w == RECURRENT_MATRIX[cell]
                   else rng.normal(size=(n_hidden,) if w.startswith("b_") else (n_hidden, n_hidden)))
    for g in GATES[cell]:
        data[f"gate_{g}"] = 1 / (1 + np.exp(-rng.normal(0, 2, size=(T, 4, n_hidden))))
    np.savez(path, **data)
    return path


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description="Write a synthetic dynamics run file.")
    parser.add_argument("path")
    parser.add_argument("--cell", default="rnn", choices=("rnn", "gru", "lstm"))
    parser.add_argument("--task", default="torder")
    parser.add_argument("--alpha", type=float, default=0.0)
    parser.add_argument("--clip", default="rescale", choices=("rescale", "none"))
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_run(args.path, cell=args.cell, task=args.task, alpha=args.alpha, clip=args.clip, n_layers=args.layers,
              n_iter=args.iters, seed=args.seed)
    print(args.path)
