"""Question 5: how far useful context extends. Two readings: the window MLP's validation loss by
the width of its window, and each recurrent model's loss by position in its window from the zero
state, paired with the same characters read with the whole past (from its best checkpoint)."""
import numpy as np
import pandas as pd

from ..intervals import compare, estimate, sentence
from ..stats import fmt_num
from .common import CELL_NAMES, Answer, cells, column, error_bars, has_model, min_finite, over_seeds, per_seed, series

TITLE = "Sequence length: how far useful context extends"
#: positions (characters) whose loss is within this many nats of the window's end are "no better"
POSITION_TOL = 0.02


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


def position_curves(lm):
    """({model: its seeds' position_loss, (seeds, 2, T)}, {model: those seeds}) of the recurrent
    cells compared in question 4 whose runs kept a model (the Transformer has no state: nothing is
    carried past its window)."""
    curves, seeds = {}, {}
    for cell, runs in cells([s for s in lm if s.config.get("cell") != "mlp"]).items():
        if cell == "transformer":
            continue
        kept = [s for s in runs if has_model(s)]
        if kept:
            model = f"{CELL_NAMES.get(cell, cell)} (T {runs[0].config.get('min_length')})"
            curves[model] = np.stack([position_loss(s) for s in kept])
            seeds[model] = [s.config.get("seed") for s in kept]
    return curves, seeds


# ----------------------------------------------------------------------------- the answer

def window_rows(mlp):
    """One row per window MLP run: its window, seed and best validation loss."""
    return pd.DataFrame([{"model": f"MLP W={w}", "window": int(w), "seed": s.config.get("seed"),
                          "best_valid_loss": min_finite(column(s, "valid_loss"))}
                         for (w,), runs in mlp.items() for s in runs])


def window_sentences(windows):
    """The MLP's loss by window, the smallest window not apart from the best, and the widest."""
    est = dict(sorted(over_seeds(windows, "window", "best_valid_loss").items()))
    ws = list(est)
    best = min(ws, key=lambda w: est[w].mean)
    out = ["The window MLP's best validation loss (nats/char) by window: "
           + " → ".join(f"{est[w].text(4)} at W={w}" for w in ws) + "."]
    near = [w for w in ws if w == best or compare(est[w], est[best]) in ("tie", "within noise")]
    enough = near[0]
    if enough != best:
        out.append(f"The smallest window within noise of the best (W={best}): "
                   + sentence(f"W={enough}", est[enough], f"W={best}", est[best], True, 4) + ".")
    elif best != ws[0]:
        before = ws[ws.index(best) - 1]
        out.append(f"W={best} is the best, against the next narrower: "
                   + sentence(f"W={best}", est[best], f"W={before}", est[before], True, 4) + ".")
    if ws[-1] != best:
        out.append("The widest window against the best: "
                   + sentence(f"W={ws[-1]}", est[ws[-1]], f"W={best}", est[best], True, 4)
                   + f"; as a fixed window, about {enough} characters of context are useful.")
    elif enough != best:
        out[-1] = out[-1][:-1] + f"; as a fixed window, about {enough} characters of context are useful."
    else:
        out.append(f"The widest window is the best: context helps up to at least {best} characters.")
    return out


def seeds_of(curves):
    """A model's curves as (seeds, 2, T): one seed's (2, T) gets a leading axis."""
    c = np.asarray(curves, dtype=float)
    return c[None] if c.ndim == 2 else c


def position_sentence(model, curves):
    """A model's loss from the zero state over its window against the whole past (mean over seeds),
    and the position where it comes within POSITION_TOL of it, per seed."""
    per_seed = seeds_of(curves)
    c = per_seed.mean(axis=0)
    T = c.shape[1]
    reached = [useful_context(x) for x in per_seed]
    where = estimate([p for p in reached if p is not None])
    never = sum(p is None for p in reached)
    reach = (f"it comes within {POSITION_TOL:g} nats of that at position {where.text(3)} of {T}"
             if where.n else f"it stays more than {POSITION_TOL:g} nats above it over all {T} positions")
    if where.n and never:
        reach += f" (and never in {never} of {len(reached)} seeds)"
    seeds = f"{len(per_seed)} seeds" if len(per_seed) > 1 else "one seed"
    return (f"{model}, {seeds}: from the zero state its loss falls from {fmt_num(c[0, 0], 4)} nats/char at the first "
            f"character of a window to {fmt_num(c[0, -1], 4)} at the last; the same characters read with the whole "
            f"past cost {fmt_num(c[1].mean(), 4)}; {reach}"
            + (": more context than that gains it less." if where.n else ": context beyond the window still helps."))


def q5_text(windows, curves):
    """`windows`: window_rows; `curves`: {model: mean loss by position}."""
    out = window_sentences(windows) if len(windows) else []
    out += [position_sentence(model, curve) for model, curve in curves.items()]
    return out or ["No window MLP runs and no recurrent model to read by position."]


def context_table(windows, curves):
    """The MLP's windows over seeds, then one row per model read by position (mean over seeds)."""
    rows = []
    for w, e in sorted(over_seeds(windows, "window", "best_valid_loss").items()) if len(windows) else []:
        rows.append({"model": f"MLP W={w}", "window": w, "best_valid_loss": e.mean, "low": e.low, "high": e.high,
                     "seeds": e.n})
    for model, curve in curves.items():
        per_seed = seeds_of(curve)
        c = per_seed.mean(axis=0)
        reached = estimate([p for p in map(useful_context, per_seed) if p is not None])
        rows.append({"model": model, "seeds": len(per_seed), "useful_context": reached.mean,
                     "low": reached.low, "high": reached.high, "loss_first_position": c[0, 0],
                     "loss_last_position": c[0, -1], "loss_whole_past": c[1].mean()})
    return pd.DataFrame(rows)


def draw_windows(ax, windows):
    if len(windows):
        est = dict(sorted(over_seeds(windows, "window", "best_valid_loss").items()))
        W = np.array(list(est))
        mean, err = error_bars(est.values())
        ax.errorbar(W, mean, err, fmt="o-", color="black", capsize=3)
        for w, e in est.items():
            ax.plot([w] * e.n, e.values, ".", color="grey", ms=4)
        ax.set_xscale("log", base=2)
        ax.set_xticks(W, [str(x) for x in W])
        ax.minorticks_off()
    ax.set_xlabel("context length W (characters the MLP reads)")
    ax.set_ylabel("best validation loss (nats/char): mean, 95 % interval, seeds")
    ax.set_title("Fixed-window MLP", fontsize="small")


def draw_positions(ax, curves):
    for k, (model, curve) in enumerate(curves.items()):
        c = seeds_of(curve).mean(axis=0)
        color, marker = f"C{k}", "osd^v"[k % 5]
        p = useful_context(c)
        t = np.arange(1, c.shape[1] + 1)
        ax.plot(t, c[0], color=color, lw=1.4, marker=marker, ms=3, markevery=8,
                label=f"{model}: within {POSITION_TOL:g} at {p if p else '> ' + str(c.shape[1])} (seed mean)")
        ax.plot(t, c[1], color=color, lw=0.8, ls=":")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("position within the window (characters seen since a zero state)")
    ax.set_ylabel("validation loss (nats/char)")
    ax.set_title("By position from the zero state (solid); the same characters with the whole past (dotted)",
                 fontsize="small")
    if curves:
        ax.legend(fontsize=8)


def draw(fig, windows, curves):
    a1, a2 = fig.subplots(1, 2)
    draw_windows(a1, windows)
    draw_positions(a2, curves)
    fig.suptitle("How far useful context extends", fontsize="medium")


def q5(lm, curves=None):
    """`curves` {model: position_loss}: given (the tests), or None to read each model from its checkpoint."""
    windows = window_rows(series([s for s in lm if s.config.get("cell") == "mlp"], ("window",)))
    if curves is None:
        curves, seeds = position_curves(lm)
    else:                                  # given curves: their seeds in order
        seeds = {model: list(range(1, len(seeds_of(c)) + 1)) for model, c in curves.items()}
    table = context_table(windows, curves)
    reached = pd.DataFrame([{"setting": model, "seed": seed, "metric": "useful_context",
                             "value": float(useful_context(c) or np.nan)}
                            for model, curve in curves.items() for seed, c in zip(seeds[model], seeds_of(curve))])
    values = pd.concat([per_seed(windows, "model", ("best_valid_loss",)), reached], ignore_index=True)
    return Answer(5, TITLE, q5_text(windows, curves), table,
                  (lambda fig: draw(fig, windows, curves)) if len(windows) or curves else None, values=values)
