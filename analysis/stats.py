"""The numbers behind the figures and the verdicts, computed from a `Snapshot` in one place so
that a figure and a verdict never disagree."""
import math
import warnings

import numpy as np


# ------------------------------------------------------------------------------ histograms

def share_between(counts, edges, lo=-np.inf, hi=np.inf):
    """Share (0..1) of the histogram mass in [lo, hi). A bin cut by lo or hi counts in
    proportion to the part of it inside (mass taken as uniform within a bin); where lo and hi
    are bin edges the share is exact. NaN for an empty histogram."""
    counts = np.asarray(counts, dtype=float)
    edges = np.asarray(edges, dtype=float)
    total = counts.sum()
    if not total > 0:
        return math.nan
    left, right = edges[:-1], edges[1:]
    width = right - left
    inside = np.clip(np.minimum(right, hi) - np.maximum(left, lo), 0, None)
    frac = np.where(width > 0, inside / np.where(width > 0, width, 1), 0.0)
    return float((counts * frac).sum() / total)


def share_below(counts, edges, x):
    return share_between(counts, edges, -np.inf, x)


def share_above(counts, edges, x):
    return share_between(counts, edges, x, np.inf)


def last_row(rows):
    """Index of the last row of a (K, n) array with any data (a finite, non-zero entry), or None."""
    if rows is None or rows.ndim != 2 or rows.shape[0] == 0:
        return None
    ok = np.any(np.isfinite(rows) & (rows != 0), axis=1)
    idx = np.flatnonzero(ok)
    return int(idx[-1]) if len(idx) else None


def last_horizon(snap):
    """(horizon at 10⁻³, at 10⁻⁶, steps counted) at the last check that has one, or None
    (dynamics/probes/horizon.py: a horizon equal to the steps reaches the whole batch)."""
    h3, h6, steps = (snap.check.get(k) for k in ("horizon_1e3", "horizon_1e6", "horizon_steps"))
    if h3 is None or h6 is None or steps is None or not np.isfinite(h3).any():
        return None
    k = np.flatnonzero(np.isfinite(h3))[-1]
    return h3[k], h6[k], steps[k]


def final_hist(snap, q, layer=0):
    """(counts, edges, check index) of histogram `q` at the last check that has one, or None."""
    lay = snap.layers.get(layer)
    if lay is None or q not in lay.hists:
        return None
    k = last_row(lay.hists[q])
    if k is None:
        return None
    return lay.hists[q][k], lay.edges[q], k


def rows_with_data(rows):
    """Indices of the rows of a (K, n) array that hold data."""
    if rows is None or rows.ndim != 2:
        return np.array([], dtype=int)
    return np.flatnonzero(np.any(np.isfinite(rows) & (rows != 0), axis=1))


# ----------------------------------------------------------------------- gradient in time

def decay_fit(g):
    """Least-squares fit log10 g_t = a + b t over the finite, positive g_t.

    Returns (b, a): b is the change of log10 g_t per time step (positive when the gradient
    shrinks going back in time); None with fewer than 3 usable points."""
    g = np.asarray(g, dtype=float)
    t = np.arange(len(g))
    ok = np.isfinite(g) & (g > 0)
    if ok.sum() < 3:
        return None
    b, a = np.polyfit(t[ok], np.log10(g[ok]), 1)
    return float(b), float(a)


# ------------------------------------------------------------------------ gradient norms

def grad_norm_stats(snap):
    """max/median of the finite global gradient norms before clipping, share of clipped steps,
    the count of non-finite steps. Entries are NaN/0 where the run has no such column."""
    it = snap.iter
    out = {"max": math.nan, "median": math.nan, "share_clipped": math.nan, "n_clipped": 0,
           "n_nonfinite": 0, "n": snap.n_iter}
    g = it.get("grad_norm")
    if g is not None and len(g):
        finite = g[np.isfinite(g)]
        if len(finite):
            out["max"] = float(finite.max())
            out["median"] = float(np.median(finite))
    nonfinite = it.get("nonfinite")
    if nonfinite is not None and len(nonfinite):
        out["n_nonfinite"] = int(np.sum(nonfinite > 0.5))
    elif g is not None:
        out["n_nonfinite"] = int(np.sum(~np.isfinite(g)))
    clipped = it.get("clipped")
    if clipped is not None and len(clipped):
        out["n_clipped"] = int(np.sum(clipped > 0.5))
        out["share_clipped"] = out["n_clipped"] / len(clipped)
    return out


# --------------------------------------------------------------------------- recurrent matrix

def eigenvalues(W):
    W = np.asarray(W, dtype=float)
    if W.ndim != 2 or W.shape[0] != W.shape[1] or not np.all(np.isfinite(W)):
        return None
    return np.linalg.eigvals(W)


def last_finite(values):
    """The last finite value of `values` (None: none), or NaN."""
    values = np.asarray(values if values is not None else [], dtype=float)
    values = values[np.isfinite(values)]
    return float(values[-1]) if len(values) else math.nan


def rho_start_end(snap):
    """(ρ at the start, ρ at the end) of the recurrent matrix: from the saved start/final weights
    where present, else from the first/last check. NaN where unknown."""
    name = snap.recurrent_matrix
    rho = snap.check.get("rho")
    finite = rho[np.isfinite(rho)] if rho is not None else np.array([])

    def from_weights(weights):
        ev = eigenvalues(weights[name]) if name in weights else None
        return float(np.abs(ev).max()) if ev is not None and len(ev) else math.nan

    start = from_weights(snap.start_weights)
    if math.isnan(start) and len(finite):
        start = float(finite[0])
    end = from_weights(snap.final_weights)
    if math.isnan(end) and len(finite):
        end = float(finite[-1])
    return start, end


# ------------------------------------------------------------------------------- summary

def summary(snap):
    """The final figures of a run, as a flat dict of numbers (NaN where not recorded)."""
    ch = snap.check

    def last(key):
        v = ch.get(key)
        if v is None:
            return math.nan
        v = v[np.isfinite(v)]
        return float(v[-1]) if len(v) else math.nan

    err = ch.get("valid_error")
    best = math.nan
    best_iter = math.nan
    if err is not None and np.any(np.isfinite(err)):
        i = int(np.nanargmin(err))
        best, best_iter = float(err[i]), float(snap.check_x[i])
    gn = grad_norm_stats(snap)
    rho0, rho1 = rho_start_end(snap)
    return {
        "iterations": snap.iterations_done,
        "checks": snap.n_check,
        "final_valid_error": last("valid_error"),
        "best_valid_error": best,
        "best_valid_error_iter": best_iter,
        "final_valid_loss": last("valid_loss"),
        "final_train_loss": last("train_loss"),
        "max_grad_norm": gn["max"],
        "median_grad_norm": gn["median"],
        "share_clipped": gn["share_clipped"],
        "n_nonfinite": gn["n_nonfinite"],
        "rho_start": rho0,
        "rho_end": rho1,
        "wall_time": last("wall_time"),
        "valid_bpc": last("valid_bpc"),
        "valid_ppl": last("valid_ppl"),
        "chars_per_sec": last("chars_per_sec"),
    }


# ------------------------------------------------------------------------------ smoothing

def smooth(y, window):
    """Centred running mean over the finite values (NaN/inf ignored); window >= 1 points."""
    y = np.asarray(y, dtype=float)
    window = int(max(1, window))
    if window == 1 or len(y) < 3:
        return y
    ok = np.isfinite(y)
    kernel = np.ones(window)
    num = np.convolve(np.where(ok, y, 0.0), kernel, mode="same")
    den = np.convolve(ok.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def envelope(x, y, max_points=8000):
    """(x, y) thinned to about `max_points` for a raw trace: per bucket the minimum and the
    maximum, so spikes survive. Unchanged when short enough."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(y)
    if n <= max_points:
        return x, y
    size = int(math.ceil(n / (max_points // 2)))
    m = n // size * size
    yb = y[:m].reshape(-1, size)
    xb = x[:m].reshape(-1, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)    # all-NaN buckets give NaN
        lo, hi = np.nanmin(yb, axis=1), np.nanmax(yb, axis=1)
    xs = np.repeat(xb[:, 0], 2)
    ys = np.column_stack([lo, hi]).ravel()
    return np.concatenate([xs, x[m:]]), np.concatenate([ys, y[m:]])


def smooth_log(y, window):
    """Running geometric mean (the mean of log10 y) for positive quantities on a log axis."""
    y = np.asarray(y, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ly = np.where(np.isfinite(y) & (y > 0), np.log10(np.where(y > 0, y, 1)), np.nan)
    return 10 ** smooth(ly, window)


# ----------------------------------------------------------------------------- formatting

def fmt_num(x, digits=3):
    """A number for a label: 3 significant digits, scientific outside [1e-3, 1e4)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if not math.isfinite(x):
        return str(x)
    ax = abs(x)
    if ax != 0 and (ax < 1e-3 or ax >= 1e4):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


def fmt_pct(share, digits=0):
    if share is None or (isinstance(share, float) and math.isnan(share)):
        return "n/a"
    p = 100 * share
    if digits == 0 and 0 < p < 1:
        return f"{p:.1g}%"
    return f"{p:.{digits}f}%"


def fmt_duration(seconds):
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
