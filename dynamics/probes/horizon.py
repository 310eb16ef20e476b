"""The gradient horizon: how many steps back from the loss the gradient still reaches.

Per check, from the batch-mean g_t of the main part (the row of /check/grad_time), counted back
from the loss step: the last step of the sequence, or of each sequence's last token where the
part is aligned on the end. With g_k the batch-mean g_t k steps before the loss (g_0 at the loss
step), the horizon at ratio r is the smallest k with g_k < r · g_0: the first step back where the
gradient has fallen below that share of its value at the loss. When it never falls that far, the
horizon is the number of steps the row holds, `horizon_steps`. It is recorded at r = 10⁻³ and
10⁻⁶; NaN when g_0 is 0 or not finite. With a loss at every step (a language model) g_t sums
the losses from t on and seldom falls: the horizon is then the window.
"""
import math

import numpy as np

RATIOS = {"horizon_1e3": 1e-3, "horizon_1e6": 1e-6}


def steps_back(grad_time, align="start"):
    """The batch-mean g_t by steps back from the loss step: g_0, g_1, ... A row is NaN beyond the
    batch's steps; its last finite step is the loss step, or, aligned on the end, its first."""
    g = np.asarray(grad_time, dtype=float)
    finite = np.flatnonzero(np.isfinite(g))
    g = g[:finite[-1] + 1] if len(finite) else g[:0]
    return g if align == "end" else g[::-1]


def horizon(back, ratio):
    """The smallest k with back[k] < ratio · back[0]; len(back) when there is none."""
    if len(back) == 0 or not (math.isfinite(back[0]) and back[0] > 0):
        return math.nan
    below = np.flatnonzero(back < ratio * back[0])
    return float(below[0]) if len(below) else float(len(back))


class Horizon:
    """Per check: the gradient horizon at 10⁻³ and 10⁻⁶, and the steps it was counted over."""

    columns = {"horizon_1e3": "steps back from the loss to the first step where g_t < 10⁻³ of its value at "
                              "the loss (horizon_steps: it never falls that far)",
               "horizon_1e6": "the same at 10⁻⁶",
               "horizon_steps": "steps of the batch-mean g_t the horizon was counted over"}
    panels = ("horizon",)

    @staticmethod
    def applies(config):
        return config.diagnostics

    def __init__(self, run):
        pass    # it keeps nothing: each check's g_t is all it reads

    def check(self, parts):
        """parts: the check's {part name: {"grad_time": (T,), "align": ...}}, the main part last."""
        if not parts:
            return {}, {name: math.nan for name in (*RATIOS, "horizon_steps")}
        main = parts[list(parts)[-1]]
        back = steps_back(main["grad_time"], main["align"])
        return {}, {**{name: horizon(back, r) for name, r in RATIOS.items()}, "horizon_steps": float(len(back))}
