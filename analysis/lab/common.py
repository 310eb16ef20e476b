"""What the lab's questions share: the answer they return, how a question finds its runs, the
numbers over seeds, a run's columns, the labels that name a run in a sentence, and one row per
language-model run (questions 1 and 2 read the same rows).

Runs are found by their configs, not their names: a question's runs are the largest group that
agrees on every key but the ones the question varies (`series`), so the same code reads the quick
grid and the full one. Over seeds a number is an `Estimate` (analysis/intervals.py): the mean, a
95 % bootstrap interval and n; two of them are compared only in the words `intervals.sentence`
allows. Each answer keeps its per-seed numbers in `values`, one row per (setting, seed, metric).
"""
import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..intervals import estimate
from ..stats import fmt_num

#: keys that never make two runs different settings
IGNORED = {"name", "out_dir", "seed", "device", "threads", "backend"}
#: cells of the reference architectures: compared on the keys outside their architecture
ARCHITECTURE = ("cell", "n_layers", "n_hidden", "embedding", "dropout", "init", "activation", "d_model",
                "n_heads", "positions", "tie_weights", "forget_bias", "bidirectional", "window")
CELL_NAMES = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM", "lnlstm": "LN-LSTM", "transformer": "Transformer",
              "mlp": "MLP"}
SEQ2SEQ_TASKS = ("copy", "reverse", "date")
CLASSIFY_TASKS = ("names", "sentiment")
#: a validation loss this much (relative) above its best at the end: "validation turned up"
OVERFIT_RISE = 0.01
PROMPT_CHARS = 24                      # dynamics/sources/text.py PROMPT_TOKENS["char"]
SNIPPET_CHARS = 60


@dataclass
class Answer:
    number: int
    title: str
    text: list                         # sentences, each with its number
    table: pd.DataFrame
    draw: object = None                # draw(fig): the figure into a (sub)figure; None: no figure
    notes: list = field(default_factory=list)
    values: pd.DataFrame = None        # the numbers behind the words: setting, seed, metric, value


def per_seed(rows, setting, metrics):
    """The long table of `rows` (one per run): setting, seed, metric, value for each of `metrics`."""
    if not len(rows):
        return pd.DataFrame(columns=["setting", "seed", "metric", "value"])
    long = rows.rename(columns={setting: "setting"}).melt(id_vars=["setting", "seed"], value_vars=list(metrics),
                                                          var_name="metric", value_name="value")
    long["value"] = long["value"].astype(float)
    return long


# ------------------------------------------------------------------- which runs a question reads

def _value(v):
    return json.dumps(v, sort_keys=True)


def setting(s, free=()):
    """The run's config without `free` and the keys that never matter: runs with equal settings
    differ only in what a question varies (and the seed)."""
    return tuple(sorted((k, _value(v)) for k, v in s.config.items() if k not in IGNORED and k not in free))


def _order(values):
    """Sort key of a tuple of config values: numbers and strings in order, None after them."""
    return tuple((v is None, v if v is not None else 0) if not isinstance(v, str) else (False, v) for v in values)


def _frozen(v):
    """A config value as a dict key: lists (a class prior) as tuples."""
    return tuple(_frozen(x) for x in v) if isinstance(v, list) else v


def series(snaps, free):
    """{values of `free`: [runs]} of the largest group of runs that agree on everything but `free`
    (and the seed) and take at least two values of it; {} if there is none."""
    groups = {}
    for s in snaps:
        groups.setdefault(setting(s, free), []).append(s)
    best = {}
    for runs in groups.values():
        by = {}
        for s in runs:
            by.setdefault(tuple(_frozen(s.config.get(k)) for k in free), []).append(s)
        if len(by) >= 2 and (len(runs), len(by)) > (sum(map(len, best.values())), len(best)):
            best = by
    return dict(sorted(best.items(), key=lambda kv: _order(kv[0])))


def cells(snaps):
    """{cell: [runs]}: the largest group of runs equal but for the cell, plus the runs of other
    architectures (a Transformer) that agree with it on every key outside the architecture."""
    by = series(snaps, ("cell",))
    if not by:
        return {}
    group = next(iter(by.values()))[0]
    outside = setting(group, ARCHITECTURE)
    out = {k[0]: v for k, v in by.items()}
    others = {}
    for s in snaps:
        c = s.config.get("cell")
        if c not in out and setting(s, ARCHITECTURE) == outside:
            others.setdefault(c, []).append(s)
    return {**out, **others}


# ------------------------------------------------------------------------- numbers over seeds

def over_seeds(rows, by, col):
    """{value of `by`: Estimate of `col` over that value's rows (its seeds)}."""
    return {k: estimate(g[col]) for k, g in rows.groupby(by, sort=False)}


# ------------------------------------------------------------------------- drawing an Estimate

def draw_estimate(ax, at, e, color, across=False):
    """One Estimate at position `at` of a dot plot: each seed a dot, the mean a tick, the 95 %
    interval a band. The values run along x (rows of settings), or along y with `across`."""
    if e.n == 0:
        return
    spot = [at] * e.n
    band, tick, dots = (([at, at], [e.low, e.high]), ([at], [e.mean]), (spot, e.values)) if across else \
        (([e.low, e.high], [at, at]), ([e.mean], [at]), (e.values, spot))
    if e.n > 1:
        ax.plot(*band, color=color, lw=5, alpha=0.45, solid_capstyle="butt")
    ax.plot(*tick, "_" if across else "|", color=color, ms=14, mew=2)
    ax.plot(*dots, "k.", ms=4)


def error_bars(estimates):
    """(means, [below, above]) of Estimates for errorbar: the distance to each interval's ends (0
    for a single seed)."""
    mean = np.array([e.mean for e in estimates])
    low = np.array([e.low if e.n > 1 else e.mean for e in estimates])
    high = np.array([e.high if e.n > 1 else e.mean for e in estimates])
    return mean, [mean - low, high - mean]


# ------------------------------------------------------------------------------ a run's columns

def column(s, key):
    """The run's /check column `key` as floats (empty if it has none)."""
    v = s.check.get(key)
    return np.asarray(v, dtype=float) if v is not None else np.zeros(0)


def last_finite(a):
    a = a[np.isfinite(a)]
    return float(a[-1]) if len(a) else math.nan


def min_finite(a):
    a = a[np.isfinite(a)]
    return float(a.min()) if len(a) else math.nan


# ------------------------------------------------------------------------------------- labels

def cell_name(s):
    c = s.config.get("cell", s.cell)
    return f"MLP W={s.config.get('window')}" if c == "mlp" else CELL_NAMES.get(c, str(c).upper())


def clipping(s):
    clip = s.config.get("clip", "none")
    return "off" if clip in (None, "none", "") else f"{fmt_num(float(s.config.get('cutoff', math.nan)))}"


def lm_label(s):
    """A language-model run's setting in a few words: GRU 128×1 · T 64 · clip 1 · lr 0.003."""
    c = s.config
    if c.get("cell") == "transformer":
        arch = f"Transformer d{c.get('d_model')}×{c.get('n_layers')}"
    elif c.get("cell") == "mlp":
        arch = f"MLP W={c.get('window')} H{c.get('n_hidden')}"
    else:
        arch = f"{cell_name(s)} {c.get('n_hidden')}×{c.get('n_layers', 1)}"
        if c.get("dropout"):
            arch += f" drop {fmt_num(c['dropout'])}"
        if c.get("tie_weights"):
            arch += " tied"
    return f"{arch} · T {c.get('min_length')} · clip {clipping(s)} · lr {fmt_num(float(c.get('lr', math.nan)))}"


def setup_label(s):
    """The task and length of training of a run (and its attention, for seq2seq): a figure's title."""
    c = s.config
    return (f"{s.task}, {c.get('max_iters')} updates"
            + (f", attention {c['attention']}" if s.family == "seq2seq" and c.get("attention") else ""))


def one_line(text, n=SNIPPET_CHARS):
    """`text` on one line (line breaks shown as ⏎), cut to `n` characters."""
    text = text.replace("\n", " ⏎ ")
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n - 1] + "…"


# ------------------------------------------------------------------ one row per language-model run

def snippet(s):
    """(prompt, continuation) of the first fixed prompt at the run's last check."""
    if s.samples is None or not s.samples.size:
        return "", ""
    text = str(s.samples[-1][0])
    return text[:PROMPT_CHARS], text[PROMPT_CHARS:]


def lm_row(s):
    """A language-model run's setting, best and final validation numbers, the gap, its sample."""
    valid, train = column(s, "valid_loss"), column(s, "train_loss")
    best = min_finite(valid)
    k = int(np.nanargmin(valid)) if np.isfinite(valid).any() else 0
    final = last_finite(valid)
    prompt, cont = snippet(s)
    return {"run": s.name, "setting": lm_label(s), "cell": s.config.get("cell"),
            "n_hidden": s.config.get("n_hidden"), "n_layers": s.config.get("n_layers", 1),
            "window": s.config.get("min_length"), "clip": clipping(s), "lr": s.config.get("lr"),
            "seed": s.config.get("seed"), "updates": s.iterations_done,
            "best_valid_loss": best, "best_valid_ppl": math.exp(best) if math.isfinite(best) else math.nan,
            "best_valid_bpc": best / math.log(2), "best_at": int(s.check_x[k]) if len(s.check_x) else 0,
            "final_valid_loss": final, "final_train_loss": last_finite(train),
            "gap": final - last_finite(train),
            "turned_up": bool(final > best * (1 + OVERFIT_RISE)),
            "prompt": prompt, "sample": one_line(cont)}


@functools.lru_cache(maxsize=None)
def _count(checkpoint, unused=()):
    import torch
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    shared = {(v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape)): v.numel()
              for k, v in state.items() if k not in unused}            # tied weights counted once
    return sum(shared.values())


def has_model(s):
    """Whether the run kept a model beside its file: its best checkpoint or its last."""
    p = Path(s.path)
    return p.with_name(f"{s.name}_best.pt").is_file() or p.with_name(f"{s.name}_checkpoint.pt").is_file()


def parameters(s):
    """The run's number of trained parameters, counted in its checkpoint; NaN without one. A
    tied language model keeps its output matrix W_hy but reads the embedding's transpose instead
    (dynamics/models/recurrent.py): W_hy is not counted."""
    checkpoint = Path(s.path).with_name(f"{s.config.get('name', s.name)}_checkpoint.pt")
    unused = ("W_hy",) if s.config.get("tie_weights") and s.config.get("cell") != "transformer" else ()
    return float(_count(str(checkpoint), unused)) if checkpoint.is_file() else math.nan


def lm_rows(snaps):
    """One row per language-model run (`lm_row`); runs of other families are left out."""
    return pd.DataFrame([lm_row(s) for s in snaps if s.family == "text"])
