"""What the sequence-classification generators share: a batch of labelled token sequences, its
padding, and the checks of their options. Pure numpy; errors are ValueError with one line
`key=value is not allowed: what is allowed`."""
from collections import namedtuple

import numpy as np

# tokens: a list of N int64 arrays of token ids (each its own length); labels: int64 (N,)
Examples = namedtuple("Examples", "tokens labels")


def refuse(key, value, allowed):
    return ValueError(f"{key}={value!r} is not allowed: {allowed}")


def pad(tokens, pad_id=0):
    """A list of N token arrays -> (ids (T, N) int64 right-padded with `pad_id`, lengths (N,))."""
    lengths = np.array([len(t) for t in tokens], dtype=np.int64)
    ids = np.full((int(lengths.max()), len(tokens)), pad_id, dtype=np.int64)
    for b, t in enumerate(tokens):
        ids[:len(t), b] = t
    return ids, lengths


def check_balance(class_balance, n_classes):
    """`class_balance` (a list of K probabilities summing to 1, or None for uniform) as an array."""
    if class_balance is None:
        return np.full(n_classes, 1.0 / n_classes)
    try:
        p = np.asarray(class_balance, dtype=float)
    except (TypeError, ValueError):
        raise refuse("class_balance", class_balance, f"a list of {n_classes} numbers") from None
    if p.ndim != 1 or len(p) != n_classes:
        raise refuse("class_balance", class_balance, f"a list of {n_classes} numbers (one per class)")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise refuse("class_balance", class_balance, "numbers >= 0")
    if abs(p.sum() - 1) > 1e-6:
        raise refuse("class_balance", class_balance, f"numbers summing to 1 (these sum to {p.sum():.6g})")
    return p / p.sum()


def check_int(key, value, low):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
        raise refuse(key, value, f"an integer >= {low}")
    return int(value)


def check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, not {type(rng).__name__}")
