"""The run file's format (schema dynamics-run/1, docs/run-file.md), declared once: the writer
(dynamics/runfile.py, the trainer and the probes) and the reader (analysis/read.py) import it.

What a probe or a task family adds to a run file it declares itself (dynamics/probes/,
dynamics/sources/); this module holds what every run file has.
"""
import numpy as np

SCHEMA = "dynamics-run/1"
# the files beside a run file <name>.h5: <name> + the suffix
CHECKPOINT_SUFFIX = "_checkpoint.pt"
STATUSES = ("running", "finished", "solved", "interrupted", "failed")

# /iter/<name>: one float64 row per update
ITER_COLUMNS = {
    "loss": "training loss of the update's batch",
    "grad_norm": "global gradient norm before clipping",
    "grad_norm_clipped": "global gradient norm after clipping",
    "clipped": "1 where the gradient was rescaled",
    "nonfinite": "1 where the gradient norm was not finite or above 1e10 (the step was not trusted)",
    "omega": "Pascanu's regulariser Ω (NaN when alpha = 0)",
    "steps_in_past": "share of (step, sequence) pairs that Ω kept (NaN when alpha = 0)",
    "seq_len": "steps of the update's batch",
    "lr": "learning rate applied",
    "step_time": "seconds of the update (wall clock)",
}

# /check/<name>: one float64 row per check
CHECK_COLUMNS = {
    "iter": "the update of the check",
    "train_loss": "mean training loss since the previous check",
    "valid_loss": "validation loss",
    "valid_error": "validation error (percent)",
    "wall_time": "seconds since the run started (wall clock)",
    "cpu_time": "seconds of the process's CPU since the run started",
}

# The root attribute recurrent_matrix: the weight that carries the state ("" for the Transformer)
RECURRENT_MATRIX = {"rnn": "W_hh", "gru": "W_hh", "lstm": "W_hc", "lnlstm": "W_hc", "transformer": ""}

# The gates of each cell, each recorded as /check/hist/gate_<name>; GATE_ORDER is the order of
# figures and tables.
GATES = {"rnn": "", "gru": "zr", "lstm": "ifo", "lnlstm": "ifo"}
GATE_ORDER = ("z", "r", "i", "f", "o")

# The fixed bin edges of the per-check histograms (each file also stores its own, /.../<q>_edges):
# log10 g_t in quarter decades; d(h) = 1 − |h| of tanh units on [0, 1]; d(v) = min(v, 1 − v) of
# sigmoid units and gates on [0, 0.5].
LOG10_EDGES = np.arange(-20.0, 10.0 + 1e-9, 0.25)
TANH_EDGES = np.linspace(0.0, 1.0, 51)
SIGMOID_EDGES = np.linspace(0.0, 0.5, 51)
