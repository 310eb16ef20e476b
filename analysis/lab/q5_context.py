"""Question 5: how far useful context extends. Two readings: the window MLP's validation loss by
the width of its window, and each recurrent model's loss by position in its window from the zero
state, paired with the same characters read with the whole past (from its best checkpoint)."""
from pathlib import Path

import numpy as np
import pandas as pd

from ..stats import fmt_num
from .common import CELL_NAMES, Answer, cells, column, min_finite, series, spread

TITLE = "Sequence length: how far useful context extends"
#: positions (characters) whose loss is within this many nats of the window's end are "no better"
POSITION_TOL = 0.02
#: an MLP window within this many nats of the best window gains nothing more
WINDOW_TOL = 0.01


# ------------------------------------------------------------------- the loss by position

def _whole_past_loss(model, ids, n, T):
    """(n,): the loss of ids[i + 1] given ids[:i + 1], the text read in windows of T, the state carried."""
    import torch
    import torch.nn.functional as F
    full = torch.zeros(n, dtype=torch.float64)
    state = None
    for i in range(0, n, T):
        logits = model(ids[i:min(i + T, n)][:, None], state=state).logits
        state = model.final_state
        full[i:i + len(logits)] = F.cross_entropy(logits[:, 0], ids[i + 1:i + 1 + len(logits)], reduction="none").double()
    return full


def _zero_state_loss(model, ids, starts, T):
    """(T,): the loss by position summed over the windows starting at `starts`, each from the zero state."""
    import torch
    import torch.nn.functional as F
    zero = torch.zeros(T, dtype=torch.float64)
    for b in range(0, len(starts), 512):
        part = starts[b:b + 512]
        x = torch.stack([ids[i:i + T] for i in part], dim=1)             # (T, windows)
        y = torch.stack([ids[i + 1:i + T + 1] for i in part], dim=1)
        logits = model(x, state=None).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
        zero += loss.view(T, -1).double().sum(dim=1)
    return zero


def position_loss(s, chars=20000, stride=16, warm=256):
    """(2, T): the validation loss (nats/char) by position within the training window, row 0
    from the zero state (position t has seen t characters), row 1 for the same characters read
    with the whole past (the state carried from the start of the text). Windows start every
    `stride` characters after the first `warm` of the validation text, up to `chars`; the pair
    differs only in the context, not in the text. From the run's best model."""
    import torch
    from dynamics.sample import load_model, read_config
    from dynamics.sources.text import load_corpus
    config = read_config(s.path)
    model, _, _ = load_model(config, s.path)
    valid = load_corpus(config).valid
    T = int(config.min_length)
    n = min(chars, len(valid) - 1)
    ids = torch.from_numpy(valid[:n + 1].astype(np.int64))
    starts = np.arange(min(warm, n - T), n - T + 1, stride)
    with torch.no_grad():
        full = _whole_past_loss(model, ids, n, T)      # full[i]: loss of ids[i + 1] given ids[:i + 1]
        zero = _zero_state_loss(model, ids, starts, T)
    paired = torch.stack([full[i:i + T] for i in starts]).mean(dim=0)
    return np.stack([(zero / len(starts)).numpy(), paired.numpy()])


def useful_context(curve, tol=POSITION_TOL):
    """The first position (characters of context, from 1) at which the zero-state loss comes within
    `tol` nats of the same characters' loss with the whole past (`curve`: position_loss's (2, T))."""
    curve = np.asarray(curve, dtype=float)
    near = np.flatnonzero(curve[0] <= curve[1] + tol)
    return int(near[0]) + 1 if len(near) else None


def _has_model(s):
    p = Path(s.path)
    return p.with_name(f"{s.name}_best.pt").is_file() or p.with_name(f"{s.name}_checkpoint.pt").is_file()


def position_curves(lm):
    """{model: mean position_loss over its seeds} of the recurrent cells compared in question 4
    whose runs kept a model (the Transformer has no state: nothing is carried past its window)."""
    curves = {}
    for cell, runs in cells([s for s in lm if s.config.get("cell") != "mlp"]).items():
        if cell == "transformer":
            continue
        found = [position_loss(s) for s in runs if _has_model(s)]
        if found:
            n = min(len(c) for c in found)
            curves[f"{CELL_NAMES.get(cell, cell)} (T {runs[0].config.get('min_length')}, {len(found)} seeds)"] = \
                np.mean([c[:n] for c in found], axis=0)
    return curves


# ----------------------------------------------------------------------------- the answer

def window_rows(mlp):
    rows = []
    for (w,), runs in mlp.items():
        m, sd, n = spread([min_finite(column(s, "valid_loss")) for s in runs])
        rows.append({"model": f"MLP W={w}", "window": int(w), "best_valid_loss": m, "sd": sd, "seeds": n})
    return pd.DataFrame(rows)


def window_sentence(windows):
    """How the MLP's loss falls with its window, and the window beyond which it gains nothing."""
    w = windows.sort_values("window")
    best = w["best_valid_loss"].min()
    enough = int(w[w["best_valid_loss"] <= best + WINDOW_TOL]["window"].iloc[0])
    at = w.set_index("window")["best_valid_loss"]
    widest = int(w["window"].iloc[-1])
    head = (f"The window MLP's validation loss falls from {fmt_num(at.iloc[0], 4)} nats/char at "
            f"W={int(w['window'].iloc[0])} to {fmt_num(at[enough], 4)} at W={enough}")
    if enough == widest:
        return f"{head}, the widest window run: context helps up to at least {enough} characters."
    tail = (f"wider windows gain less than {WINDOW_TOL:g} nats" if at[widest] <= best + WINDOW_TOL
            else f"the widest, W={widest}, is worse again ({fmt_num(at[widest], 4)})")
    return f"{head}; {tail}: as a fixed window, about {enough} characters of context are useful."


def position_sentence(model, curve):
    """A model's loss from the zero state over its window against the whole past, and where it meets it."""
    c = np.asarray(curve, dtype=float)
    p = useful_context(c)
    T = c.shape[1]
    reach = (f"comes within {POSITION_TOL:g} nats of that at position {p} of {T}: more context than about {p} "
             f"characters gains it less" if p else f"stays more than {POSITION_TOL:g} nats above it over all "
             f"{T} positions: context beyond the window still helps")
    return (f"{model}: from the zero state its loss falls from {fmt_num(c[0, 0], 4)} nats/char at the first "
            f"character of a window to {fmt_num(c[0, -1], 4)} at the last; the same characters read with the whole "
            f"past cost {fmt_num(c[1].mean(), 4)}; it {reach}.")


def q5_text(windows, curves):
    """`windows`: window_rows; `curves`: {model: mean loss by position}."""
    out = [window_sentence(windows)] if len(windows) else []
    out += [position_sentence(model, curve) for model, curve in curves.items()]
    return out or ["No window MLP runs and no recurrent model to read by position."]


def context_table(windows, curves):
    """The MLP's rows, then one row per model read by position."""
    table = windows.copy()
    for model, c in curves.items():
        c = np.asarray(c, dtype=float)
        table = pd.concat([table, pd.DataFrame([{"model": model, "useful_context": useful_context(c),
                                                  "loss_first_position": c[0, 0], "loss_last_position": c[0, -1],
                                                  "loss_whole_past": c[1].mean()}])])
    return table


def draw_windows(ax, windows):
    if len(windows):
        w = windows.sort_values("window")
        ax.errorbar(w["window"], w["best_valid_loss"], w["sd"], fmt="o-", color="black", capsize=3)
        ax.set_xscale("log", base=2)
        ax.set_xticks(w["window"], [str(x) for x in w["window"]])
        ax.minorticks_off()
    ax.set_xlabel("context length W (characters the MLP reads)")
    ax.set_ylabel("best validation loss (nats/char), mean ± sd")
    ax.set_title("Fixed-window MLP", fontsize="small")


def draw_positions(ax, curves):
    for k, (model, c) in enumerate(curves.items()):
        c = np.asarray(c, dtype=float)
        color = f"C{k}"
        p = useful_context(c)
        ax.plot(np.arange(1, c.shape[1] + 1), c[0], color=color, lw=1.4,
                label=f"{model}: within {POSITION_TOL:g} at {p if p else '> ' + str(c.shape[1])}")
        ax.plot(np.arange(1, c.shape[1] + 1), c[1], color=color, lw=0.8, ls=":")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("position within the window (characters seen since a zero state)")
    ax.set_ylabel("validation loss (nats/char)")
    ax.set_title("By position from the zero state (solid); the same characters with the whole past (dotted)",
                 fontsize="small")
    if curves:
        ax.legend(fontsize="x-small")


def draw(fig, windows, curves):
    a1, a2 = fig.subplots(1, 2)
    draw_windows(a1, windows)
    draw_positions(a2, curves)
    fig.suptitle("How far useful context extends", fontsize="medium")


def q5(lm, curves=None):
    """`curves` {model: position_loss}: given (the tests), or None to read each model from its checkpoint."""
    windows = window_rows(series([s for s in lm if s.config.get("cell") == "mlp"], ("window",)))
    if curves is None:
        curves = position_curves(lm)
    table = context_table(windows, curves)
    return Answer(5, TITLE, q5_text(windows, curves), table,
                  (lambda fig: draw(fig, windows, curves)) if len(windows) or curves else None)
