"""Numbers over seeds and the words a comparison may use (analysis/intervals.py): the interval
against an independent resampling, and every verdict from values built to produce it."""
import math

import numpy as np
import pytest

from analysis.intervals import CONFIDENCE, against, better, compare, estimate, sentence


def test_three_seeds_give_their_range():
    # a mean of three draws equals the smallest value with probability 1/27 > 2.5 %: the percentile
    # interval's ends are the smallest and the largest value
    e = estimate([2.56, 2.54, 2.55])
    assert (e.low, e.high, e.n) == (2.54, 2.56, 3)
    assert e.mean == pytest.approx(2.55)
    assert e.values == (2.56, 2.54, 2.55)


def test_interval_matches_a_resampling_written_out():
    values = np.array([3.1, 2.7, 3.4, 2.9, 3.0, 3.8, 2.5, 3.3])
    rng = np.random.default_rng(1)
    means = values[rng.integers(len(values), size=(200_000, len(values)))].mean(axis=1)
    alpha = (1 - CONFIDENCE) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    e = estimate(values)
    assert e.low == pytest.approx(low, abs=0.02) and e.high == pytest.approx(high, abs=0.02)
    assert e.low < e.mean < e.high


def test_missing_values_are_left_out_and_one_value_has_no_interval():
    e = estimate([1.0, None, math.nan])
    assert e.n == 1 and e.mean == 1.0 and math.isnan(e.low) and math.isnan(e.high)
    assert e.text() == "1 (one seed)"
    assert estimate([]).n == 0 and estimate([]).text() == "n/a"
    same = estimate([4.0, 4.0, 4.0])
    assert (same.low, same.high) == (4.0, 4.0)


def test_the_text_states_the_interval_and_n():
    assert estimate([1.0, 2.0, 3.0]).text() == "2 [1, 3] (n = 3)"


@pytest.mark.parametrize("a, b, verdict", [
    ([1.0, 1.1, 1.2], [2.0, 2.1, 2.2], "b"),           # apart: b higher
    ([2.0, 2.1, 2.2], [1.0, 1.1, 1.2], "a"),
    ([1.0, 1.5, 2.0], [1.4, 1.6, 2.2], "within noise"),
    ([1.0, 2.0, 3.0], [3.0, 2.0, 1.0], "tie"),          # equal means
    ([1.0], [2.0, 2.1, 2.2], "one seed"),
    ([1.0, 1.1], [], "missing"),
])
def test_compare(a, b, verdict):
    assert compare(estimate(a), estimate(b)) == verdict


def test_better_turns_with_the_direction():
    lo, hi = estimate([1.0, 1.1, 1.2]), estimate([2.0, 2.1, 2.2])
    assert better(lo, hi, lower_is_better=True) == "a"
    assert better(lo, hi, lower_is_better=False) == "b"
    assert better(lo, estimate([1.05, 1.1, 1.15]), lower_is_better=True) == "within noise"


def test_sentences_claim_no_more_than_the_intervals():
    apart = sentence("GRU", estimate([2.0, 2.05, 2.1]), "RNN", estimate([2.4, 2.5, 2.6]), lower_is_better=True)
    assert apart == "GRU 2.05 [2, 2.1] (n = 3) against RNN 2.5 [2.4, 2.6] (n = 3): GRU lower, the intervals apart"
    noise = sentence("GRU", estimate([2.0, 2.2, 2.4]), "RNN", estimate([2.3, 2.5, 2.6]), lower_is_better=True)
    assert noise.endswith(": within noise") and "lower" not in noise and "[2, 2.4]" in noise
    tie = sentence("A", estimate([34.2, 34.2]), "B", estimate([34.1, 34.3]), lower_is_better=False)
    assert tie.endswith(": a tie") and "higher" not in tie
    one = sentence("2 layers", estimate([7.06]), "1 layer", estimate([6.7, 6.8, 6.9]), lower_is_better=True)
    assert one == "2 layers 7.06 (one seed) against 1 layer 6.8 [6.7, 6.9] (n = 3): one seed, not compared"
    gone = sentence("LSTM", estimate([]), "GRU", estimate([1.0, 2.0]), lower_is_better=True)
    assert gone == "LSTM: no finished run, not compared"
    higher = sentence("A", estimate([90.0, 91.0, 92.0]), "B", estimate([80.0, 81.0, 82.0]), lower_is_better=False)
    assert higher.endswith(": A higher, the intervals apart")


def test_against_a_fixed_level():
    assert against(estimate([1.0, 1.1, 1.2]), 2.0) == "below"
    assert against(estimate([1.0, 1.1, 1.2]), 0.5) == "above"
    assert against(estimate([1.0, 1.1, 1.2]), 1.1) == "at"
    assert against(estimate([3.0]), 2.0) == "above" and against(estimate([]), 2.0) == "n/a"
