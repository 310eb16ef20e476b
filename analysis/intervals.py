"""Numbers over seeds, and the words a comparison of two of them may use.

A value measured over seeds is an `Estimate`: the per-seed values, their mean and a 95 % percentile
bootstrap interval of the mean (`scipy.stats.bootstrap`, a fixed generator, so that a chapter is
the same every time it is written). With three seeds the interval is the range of the seeds:
a difference counts only when every seed of one side is beyond every seed of the other.

`compare` decides what may be said of two estimates, in the manner of rliable (Agarwal et al.,
2021: intervals, not single-seed wins):
  - "missing"       one side has no value;
  - "one seed"      one side has a single seed: no interval, not compared;
  - "tie"           the means are equal;
  - "within noise"  the intervals overlap;
  - "a" or "b"      the intervals are disjoint: that side is better (lower or higher, as asked).
`sentence` turns a comparison into words with n and both intervals beside it.
"""
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .stats import fmt_num

CONFIDENCE = 0.95
RESAMPLES = 9999
SEED = 0                               # the bootstrap's generator: the same interval every time

VERDICTS = ("missing", "one seed", "tie", "within noise", "a", "b")


@dataclass(frozen=True)
class Estimate:
    values: tuple                      # the finite per-seed values, in the order given
    mean: float
    low: float                         # the interval; NaN with fewer than two values
    high: float

    @property
    def n(self):
        return len(self.values)

    def text(self, digits=3):
        """"2.55 [2.54, 2.56] (n = 3)", "7.06 (one seed)" or "n/a"."""
        if self.n == 0:
            return "n/a"
        if self.n == 1:
            return f"{fmt_num(self.mean, digits)} (one seed)"
        return f"{fmt_num(self.mean, digits)} [{fmt_num(self.low, digits)}, {fmt_num(self.high, digits)}] (n = {self.n})"


def estimate(values):
    """The Estimate of the finite values among `values` (None and NaN are left out)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return Estimate((), math.nan, math.nan, math.nan)
    if len(v) == 1 or np.all(v == v[0]):
        low = high = float(v[0]) if len(v) > 1 else math.nan
        return Estimate(tuple(map(float, v)), float(v.mean()), low, high)
    ci = stats.bootstrap((v,), np.mean, confidence_level=CONFIDENCE, n_resamples=RESAMPLES,
                         method="percentile", rng=np.random.default_rng(SEED)).confidence_interval
    return Estimate(tuple(map(float, v)), float(v.mean()), float(ci.low), float(ci.high))


def compare(a, b):
    """The verdict on two Estimates: "missing", "one seed", "tie", "within noise", or "a"/"b"
    for the side whose interval lies above the other's (the caller says whether higher is better)."""
    if a.n == 0 or b.n == 0:
        return "missing"
    if a.n == 1 or b.n == 1:
        return "one seed"
    if a.mean == b.mean:
        return "tie"
    if a.low > b.high:
        return "a"
    if b.low > a.high:
        return "b"
    return "within noise"


def better(a, b, lower_is_better):
    """compare(a, b), with "a"/"b" naming the better side rather than the higher one."""
    verdict = compare(a, b)
    if verdict in ("a", "b") and lower_is_better:
        return "b" if verdict == "a" else "a"
    return verdict


def against(e, level):
    """Where an Estimate lies against a fixed level: "below" or "above" where its interval (one
    seed: its value) is, "at" where the interval holds it; "n/a" without values."""
    if e.n == 0:
        return "n/a"
    low, high = (e.low, e.high) if e.n > 1 else (e.mean, e.mean)
    return "below" if high < level else "above" if low > level else "at"


def sentence(name_a, a, name_b, b, lower_is_better, digits=3, unit=""):
    """`name_a` against `name_b` in words that claim no more than the intervals:
    "GRU 2.55 [2.54, 2.56] (n = 3) against RNN 2.77 [2.76, 2.78] (n = 3): GRU lower",
    "…: within noise", "…: a tie", "…: one seed, not compared", "RNN: no finished run"."""
    unit = f" {unit}" if unit else ""
    if a.n == 0 or b.n == 0:
        gone = [n for n, e in ((name_a, a), (name_b, b)) if e.n == 0]
        return f"{' and '.join(gone)}: no finished run, not compared"
    verdict = better(a, b, lower_is_better)
    head = f"{name_a} {a.text(digits)}{unit} against {name_b} {b.text(digits)}{unit}"
    if verdict == "one seed":
        return f"{head}: one seed, not compared"
    if verdict == "tie":
        return f"{head}: a tie"
    if verdict == "within noise":
        return f"{head}: within noise"
    winner = name_a if verdict == "a" else name_b
    word = "lower" if lower_is_better else "higher"
    return f"{head}: {winner} {word}, the intervals apart"
