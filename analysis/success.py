"""The success-rate figure of a sweep (Pascanu, Mikolov & Bengio 2013, Figure 7).

For every (init, method) and sequence length: the share of runs (seeds) that solved the task, with
a 95% Wilson score interval, and the iterations the solved runs needed. Values are read from the
run files of the sweep folder. `plot_success` draws the figure and returns the text table that
`dynamics success` prints (dynamics/commands/success.py).
"""
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.errors import InputError

Z95 = 1.959963984540054          # the 97.5% quantile of the standard normal
INIT_ORDER = ("sigmoid", "basic_tanh", "smart_tanh", "uniform", "orthogonal", "identity")
METHOD_COLORS = {"SGD": "#7f7f7f", "SGD + clip": "#1f77b4", "SGD + clip + Ω": "#d62728"}
OTHER_COLORS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#ff7f0e")


def wilson(k, n, z=Z95):
    """Wilson score interval for k successes in n trials, as (low, high).

        p = k / n
        centre = (p + z² / 2n) / (1 + z² / n)
        half   = z / (1 + z² / n) · sqrt(p (1 − p) / n + z² / 4n²)

    It stays inside [0, 1] and is not empty at k = 0 or k = n, unlike the normal approximation:
    at k = 0 it is [0, z² / (n + z²)]. NaN where n = 0."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z / denom * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)
    low, high = np.where(k == 0, 0.0, low), np.where(k == n, 1.0, high)   # exact ends, free of rounding
    low, high = np.where(n > 0, low, np.nan), np.where(n > 0, high, np.nan)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


# -- the runs of a sweep folder, grouped -----------------------------------------------------------
def method_label(config):
    """SGD, SGD + clip, SGD + clip + Ω (other optimisers by name; α shown when not 2)."""
    opt = {"sgd": "SGD", "momentum": "MSGD", "adam": "Adam", "adamw": "AdamW"}.get(config["optimizer"],
                                                                                   config["optimizer"])
    parts = [opt]
    if config["clip"] != "none":
        parts.append("clip")
    if config["alpha"] > 0:
        parts.append("Ω" if config["alpha"] == 2 else f"Ω α={config['alpha']:g}")
    return " + ".join(parts)


def init_label(config):
    """The init's name, with the activation where it is not the one the init is meant for; a gated
    cell's panel is named by the cell (and its gate initialisation where it is not the default)."""
    if config.get("cell", "rnn") != "rnn":
        gates = config.get("gate_init", "default")
        return f"{config['cell'].upper()} ({config['init']}{', ' + gates if gates != 'default' else ''})"
    natural = "sigmoid" if config["init"] == "sigmoid" else "tanh"
    return config["init"] if config["activation"] == natural else f"{config['init']} ({config['activation']})"


def collect(folder):
    """One record per run file of the folder: its config and its summary numbers."""
    from dynamics.runfile import read_only
    from dynamics.sweep import summarize
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"folder={str(folder)!r} is not allowed: no such folder")
    runs = []
    for path in sorted(folder.glob("*.h5")):
        try:
            with read_only(path) as f:
                config = json.loads(f.attrs["config"])
            runs.append({"path": path, "config": config, **summarize(path)})
        except (OSError, KeyError, ValueError):
            continue
    if not runs:
        raise InputError(f"folder={str(folder)!r} is not allowed: it holds no readable run files")
    return runs


def table(runs):
    """{(init, method): {length: {"k", "n", "iters"}}} over the runs that ended (solved or finished)."""
    out = {}
    for r in runs:
        if r["status"] not in ("solved", "finished"):
            continue
        c = r["config"]
        cell = out.setdefault((init_label(c), method_label(c)), {}).setdefault(
            c["min_length"], {"k": 0, "n": 0, "iters": [], "seeds": set()})
        cell["n"] += 1
        cell["seeds"].add(c["seed"])
        if r["solved"]:
            cell["k"] += 1
            cell["iters"].append(r["solve_iter"])
    return out


def ordered(keys, order):
    return sorted(keys, key=lambda k: (order.index(k) if k in order else len(order), k))


def text_table(data, inits, methods, lengths):
    """Success k/n per (init, method) row and length column."""
    rows = [["init", "method"] + [str(L) for L in lengths]]
    for init in inits:
        for m in methods:
            cells = data.get((init, m))
            if cells:
                rows.append([init, m] + [f"{cells[L]['k']}/{cells[L]['n']}" if L in cells else "-" for L in lengths])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]


# -- the figure -------------------------------------------------------------------------------------
@dataclass
class Layout:
    """What the figure shows: a column per init, a colour per method, the lengths on the x axis."""
    task: str
    fixed: bool                      # every run at one length (min_length = max_length)
    max_iters: list                  # the iteration budgets of the runs, sorted
    inits: list
    methods: list
    colors: dict                     # method -> colour
    lengths: list
    step: float                      # the smallest gap between lengths, to offset the methods' bars
    seeds: list                      # the numbers of runs per point, sorted
    not_ended: dict                  # status -> runs left out of the rates


def layout_of(runs, data):
    configs = [r["config"] for r in runs]
    methods = ordered({k[1] for k in data}, tuple(METHOD_COLORS))
    lengths = sorted({L for cells in data.values() for L in cells})
    not_ended = {}
    for r in runs:
        if r["status"] not in ("solved", "finished"):
            not_ended[r["status"]] = not_ended.get(r["status"], 0) + 1
    return Layout(task=configs[0]["task"], fixed=all(c["min_length"] == c["max_length"] for c in configs),
                  max_iters=sorted({c["max_iters"] for c in configs}),
                  inits=ordered({k[0] for k in data}, INIT_ORDER), methods=methods,
                  colors={m: METHOD_COLORS.get(m, OTHER_COLORS[i % len(OTHER_COLORS)]) for i, m in enumerate(methods)},
                  lengths=lengths, step=min(np.diff(lengths)) if len(lengths) > 1 else 1.0,
                  seeds=sorted({c["n"] for cells in data.values() for c in cells.values()}), not_ended=not_ended)


def plot_success(folder, output=None):
    """Draw the figure; return its path and the lines of a text table of the success rates."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    runs = collect(folder)
    data = table(runs)
    if not data:
        raise InputError(f"folder={str(folder)!r} is not allowed: none of its runs has ended yet")
    lay = layout_of(runs, data)
    ncol = len(lay.inits)
    fig, axes = plt.subplots(2, ncol, figsize=(4.2 * ncol + 0.6, 7.4), squeeze=False, sharex=True,
                             gridspec_kw={"height_ratios": [1.15, 1]})
    for j, init in enumerate(lay.inits):
        draw_column(axes[0, j], axes[1, j], init, data, lay, first=j == 0)
    add_legend(fig, axes[0])
    width = 4.2 * ncol + 0.6
    chars = int(width * 8.5)   # what a line of the 11-point title holds
    fig.suptitle("\n".join(textwrap.fill(line, chars) for line in title(folder.name, lay).split("\n")), fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    output = Path(output) if output else folder / "success.png"
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=120)
    plt.close(fig)
    return output, text_table(data, lay.inits, lay.methods, lay.lengths)


def draw_column(top, bottom, init, data, lay, first):
    """One init: the success rates with their intervals on top, the iterations to solve below."""
    present = [m for m in lay.methods if (init, m) in data]
    for i, m in enumerate(present):
        shift = (i - (len(present) - 1) / 2) * 0.08 * lay.step     # keep the error bars apart
        draw_rate(top, data[(init, m)], shift, lay.colors[m], m)
        draw_iterations(bottom, data[(init, m)], shift, lay.colors[m], m)
    if not any(cells[L]["iters"] for m in present for cells in [data[(init, m)]] for L in cells):
        bottom.text(0.5, 0.5, "no run solved", transform=bottom.transAxes, ha="center", va="center", color="0.4")
    top.set_title(init if init[:3] in ("GRU", "LST", "LNL") else f"init: {init}")
    top.set_ylim(0, 100)             # a share: the markers at 0 or 100 % drawn whole over the frame
    top.grid(alpha=0.3)
    bottom.grid(alpha=0.3)
    if len(lay.max_iters) == 1:
        bottom.axhline(lay.max_iters[0], color="k", ls="--", lw=0.8)
        bottom.text(lay.lengths[0], lay.max_iters[0], " update budget", va="bottom", ha="left", fontsize=8)
        bottom.set_ylim(0, lay.max_iters[0] * 1.12)
    else:
        bottom.set_ylim(bottom=0)
    bottom.set_xlabel("sequence length (fixed per run)" if lay.fixed else "min_length (lengths up to max_length)")
    bottom.set_xticks(lay.lengths)
    # half a step beside the outer lengths: the methods' offsets stay inside, and one length is not
    # an axis of a tenth of a step
    bottom.set_xlim(lay.lengths[0] - lay.step / 2, lay.lengths[-1] + lay.step / 2)
    if first:
        top.set_ylabel("success rate (% of seeds solved)")
        bottom.set_ylabel("updates to solve\n(median and quartiles; dots: runs)")


def draw_rate(ax, cells, shift, color, label):
    """Success rate (%) against length, with its 95% Wilson interval."""
    xs = np.array(sorted(cells), dtype=float)
    k = np.array([cells[L]["k"] for L in sorted(cells)])
    n = np.array([cells[L]["n"] for L in sorted(cells)])
    low, high = wilson(k, n)
    rate = k / n
    bars = ax.errorbar(xs + shift, 100 * rate, yerr=[100 * (rate - low), 100 * (high - rate)], color=color,
                       marker="o", ms=5, lw=1.6, capsize=3, elinewidth=1, label=label)
    for artist in bars.get_children():      # a rate of 0 or 100 % sits on the frame: draw it whole
        artist.set_clip_on(False)


def draw_iterations(ax, cells, shift, color, label):
    """The iterations of each solved run (dots), and their median and quartiles per length."""
    med, lo, hi, xs_med = [], [], [], []
    for L in sorted(cells):
        it = np.asarray(cells[L]["iters"], dtype=float)
        if it.size:
            ax.scatter(np.full(it.size, L + shift), it, s=10, color=color, alpha=0.35, lw=0)
            q25, q50, q75 = np.percentile(it, [25, 50, 75])
            xs_med.append(L + shift), med.append(q50), lo.append(q50 - q25), hi.append(q75 - q50)
    if med:
        ax.errorbar(xs_med, med, yerr=[lo, hi], color=color, marker="s", ms=5, lw=1.6, capsize=3,
                    elinewidth=1, label=label)


def add_legend(fig, top_axes):
    """One legend for the figure: each method once, in the order the panels first show it."""
    handles, labels = [], []
    for ax in top_axes:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h), labels.append(l)
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, bbox_to_anchor=(0.5, 0.0))


def title(name, lay):
    per_point = f"{lay.seeds[0]}" if len(lay.seeds) == 1 else f"{lay.seeds[0]}–{lay.seeds[-1]}"
    seeds = "seed" if per_point == "1" else "seeds"
    text = f"{name}: {lay.task} solved within {lay.max_iters[-1]} updates ({per_point} {seeds} per point, " \
           f"95% Wilson intervals)"
    if lay.not_ended:
        text += "\nleft out, not ended: " + ", ".join(f"{v} {k}" for k, v in sorted(lay.not_ended.items()))
    return text
