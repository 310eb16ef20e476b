"""Learning-rate schedules: the rate of every update, set on the optimiser before its step.

    constant   lr
    step       lr · gamma^⌊t / lr_step⌋
    cosine     lr · ½(1 + cos(π t / max_iters))
    plateau    lr · gamma^k, k the number of times the validation loss went `lr_patience`
               checks without improving on its best
each times a linear warm-up min(1, t / warmup) over the first `warmup` updates (t counts updates
from 1). The applied rate is recorded per update (/iter/lr); the state travels in checkpoints.
"""
import math

SCHEDULES = ("constant", "step", "cosine", "plateau")


class Schedule:
    def __init__(self, config):
        self.c = config
        self.factor = 1.0                 # plateau: gamma^k
        self.best, self.bad_checks = math.inf, 0

    def rate(self, t):
        """The learning rate of update t (1-based)."""
        c = self.c
        warm = min(1.0, t / c.warmup) if c.warmup > 0 else 1.0
        if c.lr_schedule == "step":
            decay = c.lr_gamma ** (t // c.lr_step)
        elif c.lr_schedule == "cosine":
            decay = 0.5 * (1.0 + math.cos(math.pi * min(t, c.max_iters) / c.max_iters))
        elif c.lr_schedule == "plateau":
            decay = self.factor
        else:
            decay = 1.0
        return c.lr * warm * decay

    def apply(self, optimizer, t):
        lr = self.rate(t)
        for group in optimizer.param_groups:
            group["lr"] = lr

    def after_check(self, valid_loss):
        """plateau: count checks without a new best; after lr_patience of them, decay."""
        if self.c.lr_schedule != "plateau" or not math.isfinite(valid_loss):
            return
        if valid_loss < self.best:
            self.best, self.bad_checks = valid_loss, 0
        else:
            self.bad_checks += 1
            if self.bad_checks >= self.c.lr_patience:
                self.factor *= self.c.lr_gamma
                self.bad_checks = 0

    def state_dict(self):
        return {"factor": self.factor, "best": self.best, "bad_checks": self.bad_checks}

    def load_state_dict(self, state):
        self.factor, self.best, self.bad_checks = state["factor"], state["best"], state["bad_checks"]
