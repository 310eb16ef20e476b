"""The synthetic long-range tasks of Hochreiter & Schmidhuber (1997), in the form used by
Pascanu, Mikolov & Bengio, "On the difficulty of training recurrent neural networks" (ICML 2013).

Every generator takes `(batch, length, rng)` and returns `x` of shape (T, B, n_in), float32, and
a target; `rng` (a numpy Generator) is the only source of randomness, drawn in a fixed order, so
one seed fixes every batch. `rng.integers(n)` is the specification's `randint(n)`, uniform in
[0, n). Positions are 0-based time indices.
"""

import operator

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError, bad_value

HEADS = ("last_softmax", "softmax", "last_linear")
LINEAR_TOLERANCE = 0.04  # last_linear: a sequence is wrong when its squared error exceeds this


def one_hot(symbols, n):
    """Integer symbols of any shape -> float32 one-hot vectors along a new last axis."""
    return np.eye(n, dtype=np.float32)[symbols]


def _positive_int(key, value):
    """Validate an integer option or argument (>= 1); bools and floats are refused."""
    if isinstance(value, bool):
        raise bad_value(key, value, "a positive integer")
    try:
        value = operator.index(value)
    except TypeError:
        raise bad_value(key, value, "a positive integer") from None
    if value < 1:
        raise bad_value(key, value, "a positive integer")
    return value


class Task:
    """A synthetic task: its sizes, its output head, a batch generator, a loss and an error rate.

    head "last_softmax": logits (B, n_out) at the last step, y int64 (B,).
    head "softmax":      logits (T, B, n_out) at every step, y int64 (T, B).
    head "last_linear":  outputs (B, n_out) at the last step, y float32 (B, n_out).
    """

    name = None
    n_in = None
    n_out = None
    head = None
    min_length = 1
    options = ()  # the keyword options `get` accepts for this task

    def generate(self, batch, length, rng):
        """Return (x, y) for `batch` sequences of nominal length `length`, drawing only from rng."""
        batch = _positive_int("batch", batch)
        try:
            length = operator.index(length)
        except TypeError:
            raise bad_value("length", length, "an integer") from None
        if length < self.min_length:
            raise InputError(f"length={length} is too short for task {self.name}: "
                             f"need at least {self.min_length}")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, not {type(rng).__name__}")
        return self._generate(batch, length, rng)

    def _generate(self, batch, length, rng):
        raise NotImplementedError

    def _check(self, logits, y):
        want = {"last_softmax": 2, "softmax": 3, "last_linear": 2}[self.head]
        if logits.dim() != want or logits.shape[-1] != self.n_out:
            raise ValueError(f"task {self.name} ({self.head}) needs logits of {want} dims "
                             f"ending in {self.n_out}, got {tuple(logits.shape)}")
        target = logits.shape if self.head == "last_linear" else logits.shape[:-1]
        if tuple(y.shape) != tuple(target):
            raise ValueError(f"task {self.name} ({self.head}): target shape {tuple(y.shape)} does "
                             f"not match logits {tuple(logits.shape)}")

    def loss(self, logits, y):
        """Scalar, differentiable: mean CE at the last step (last_softmax), mean CE over all T*B
        predictions (softmax), or squared error summed over outputs, averaged over the batch."""
        self._check(logits, y)
        if self.head == "last_linear":
            return ((logits - y) ** 2).sum(-1).mean()
        return F.cross_entropy(logits.reshape(-1, self.n_out), y.reshape(-1))

    @torch.no_grad()
    def error(self, logits, y):
        """The share of wrong sequences, in [0, 1]: wrong argmax at the last step (last_softmax),
        any wrong step (softmax), or squared error above 0.04 (last_linear)."""
        self._check(logits, y)
        if self.head == "last_linear":
            wrong = ((logits - y) ** 2).sum(-1) > LINEAR_TOLERANCE
        elif self.head == "softmax":
            wrong = (logits.argmax(-1) != y).any(0)
        else:
            wrong = logits.argmax(-1) != y
        return wrong.float().mean()

    def constant_baseline(self, batch, length, rng):
        """(loss, error) of the best predictor that ignores the input, counted on a fresh batch:
        the mean target (last_linear) or the class frequencies as probabilities (at each step, for
        softmax). A network that learned nothing of its inputs ends here: chance, or the mean
        predictor."""
        _, y = self.generate(batch, length, rng)
        y = torch.as_tensor(y)
        if self.head == "last_linear":
            guess = y.mean(0, keepdim=True).expand_as(y)
        else:                                                     # log class frequencies over the batch
            counts = F.one_hot(y, self.n_out).sum(-2).double()
            logp = (counts / counts.sum(-1, keepdim=True)).clamp_min(1e-12).log()
            guess = logp.unsqueeze(-2).expand(*y.shape, self.n_out)
        return float(self.loss(guess, y)), float(self.error(guess, y))

    def __repr__(self):
        opts = "".join(f", {k}={getattr(self, k)}" for k in self.options)
        return f"{type(self).__name__}({self.name!r}{opts})"


class TemporalOrder(Task):
    """Temporal order (H&S 1997 problem 6a/6b; Pascanu et al. 2013): six one-hot symbols,
    0 = A, 1 = B, 2..5 = distractors. Every step holds a random distractor except the marked
    positions p_i = int(s_i L) + randint(int(0.1 L)), which hold v_i in {A, B}. The target class
    at the last step is sum_i 2^i v_i: 4 classes for `torder`, 8 for `torder3`.
    """

    n_in = 6
    head = "last_softmax"
    min_length = 10  # int(0.1 L) >= 1

    def __init__(self, name, starts):
        self.name = name
        self.starts = tuple(starts)  # s_i: (0.1, 0.5) for torder, (0.1, 0.3, 0.6) for torder3
        self.n_out = 2 ** len(self.starts)

    def _generate(self, B, L, rng):
        width = int(0.1 * L)
        symbols = rng.integers(2, 6, size=(L, B))                  # distractors c, d, e, f
        values = rng.integers(2, size=(len(self.starts), B))       # v_i in {A=0, B=1}
        seq = np.arange(B)
        for i, s in enumerate(self.starts):
            p = int(s * L) + rng.integers(width, size=B)           # p_i
            symbols[p, seq] = values[i]
        y = (values * 2 ** np.arange(len(self.starts))[:, None]).sum(0)  # v0 + 2 v1 (+ 4 v2)
        return one_hot(symbols, 6), y.astype(np.int64)


class Arithmetic(Task):
    """Addition and multiplication (H&S 1997 problems 4 and 5; Pascanu et al. 2013). Sequence
    length l = length + randint(int(0.1 length)), one draw per batch. Channel 1 holds uniform
    [0, 1) values; channel 0 marks (with 1) p0 = randint(int(0.1 l)) and
    p1 = int(0.1 l) + randint(int(0.4 l)). Target at the last step: (a + b) / 2 for `add`,
    a * b for `mul`, where a, b are the values at p0 and p1.
    """

    n_in = 2
    n_out = 1
    head = "last_linear"
    min_length = 10  # int(0.1 length) >= 1

    def __init__(self, name):
        if name not in ("add", "mul"):
            raise bad_value("task", name, "add, mul")
        self.name = name

    def _generate(self, B, length, rng):
        l = length + int(rng.integers(int(0.1 * length)))
        values = rng.random((l, B), dtype=np.float32)
        seq = np.arange(B)
        p0 = rng.integers(int(0.1 * l), size=B)
        p1 = int(0.1 * l) + rng.integers(int(0.4 * l), size=B)
        x = np.zeros((l, B, 2), dtype=np.float32)
        x[:, :, 1] = values
        x[p0, seq, 0] = 1.0
        x[p1, seq, 0] = 1.0
        a, b = values[p0, seq], values[p1, seq]
        y = (a + b) / 2 if self.name == "add" else a * b
        return x, y.astype(np.float32)[:, None]


class Memorization(Task):
    """Noiseless memorization (H&S 1997 problem 2 in the Pascanu et al. 2013 form). Channels
    0..n_values-1 carry values, n_values is "blank", n_values+1 is "go"; T = length + 2 n_pos.
    Steps 0..n_pos-1 show a random pattern, all later steps are blank except "go" at step
    length + n_pos. Targets are blank (class n_values) until the last n_pos steps, which must
    reproduce the pattern. The loss and error cover every step.
    """

    name = "mem"
    head = "softmax"
    min_length = 1
    options = ("n_values", "n_pos")

    def __init__(self, n_values=5, n_pos=10):
        self.n_values = _positive_int("n_values", n_values)
        self.n_pos = _positive_int("n_pos", n_pos)
        self.n_in = self.n_values + 2
        self.n_out = self.n_values + 1

    def _generate(self, B, length, rng):
        nv, npos = self.n_values, self.n_pos
        T = length + 2 * npos
        pattern = rng.integers(nv, size=(npos, B))
        symbols = np.full((T, B), nv)                              # blank
        symbols[:npos] = pattern
        symbols[length + npos] = nv + 1                            # go
        y = np.full((T, B), nv, dtype=np.int64)                    # blank ...
        y[T - npos:] = pattern                                     # ... then the pattern
        return one_hot(symbols, nv + 2), y


class Permutation(Task):
    """Random permutation (H&S 1997 problem 3c; Pascanu et al. 2013): 100 one-hot symbols.
    Step 0 holds v in {0, 1}, steps 1..length-1 uniform symbols from 2..99; the target at the
    last step is v, as a 100-way class.
    """

    name = "perm"
    n_in = 100
    n_out = 100
    head = "last_softmax"
    min_length = 1

    def _generate(self, B, L, rng):
        v = rng.integers(2, size=B)
        rest = rng.integers(2, 100, size=(L - 1, B))
        symbols = np.concatenate([v[None], rest])
        return one_hot(symbols, 100), v.astype(np.int64)


# name -> (class, fixed arguments); user options are added to the fixed ones
_SYNTHETIC = {
    "torder": (TemporalOrder, {"name": "torder", "starts": (0.1, 0.5)}),
    "torder3": (TemporalOrder, {"name": "torder3", "starts": (0.1, 0.3, 0.6)}),
    "add": (Arithmetic, {"name": "add"}),
    "mul": (Arithmetic, {"name": "mul"}),
    "mem": (Memorization, {}),
    "perm": (Permutation, {}),
}

NAMES = tuple(_SYNTHETIC)


def get(name, **options):
    """Build the task `name` with its options (only `mem` has any: n_values, n_pos)."""
    if name not in _SYNTHETIC:
        raise bad_value("task", name, ", ".join(NAMES))
    cls, fixed = _SYNTHETIC[name]
    for key, value in options.items():
        if key not in cls.options:
            takes = f"options {', '.join(cls.options)}" if cls.options else "no options"
            raise bad_value(key, value, f"task {name} takes {takes}")
    return cls(**fixed, **options)
