"""The synthetic long-range tasks (tasks/synthetic.py, docs/tasks.md) as a source for the trainer."""
import numpy as np
import torch

from tasks.errors import InputError, bad_value

from . import Source


def task_options(c):
    """The options of the synthetic task (only mem has any)."""
    return {"n_values": c.n_values, "n_pos": c.n_pos} if c.task == "mem" else {}


class Synthetic(Source):
    """Batches of a synthetic task, and validation on fresh sequences in chunks."""

    family = "synthetic"
    keys = ("n_values", "n_pos", "alpha", "gate_init", "chrono_max")
    full_diagnostics = True

    @staticmethod
    def validate(c):
        from tasks.synthetic import get as get_task
        if c.n_layers > 1 and c.cell != "transformer":
            raise bad_value("n_layers", c.n_layers, "1 for the synthetic tasks (a transformer may have more)")
        task = get_task(c.task, **task_options(c))
        if c.min_length < task.min_length:
            raise InputError(f"min_length={c.min_length} is too short for task {c.task}: "
                             f"need at least {task.min_length}")

    def __init__(self, config, device, dtype):
        from tasks.synthetic import get as get_task
        self.c, self.device, self.dtype = config, device, dtype
        self.task = get_task(config.task, **task_options(config))
        self.n_in, self.n_out, self.head = self.task.n_in, self.task.n_out, self.task.head
        self.rng = np.random.default_rng(config.seed)            # training batches
        self.eval_rng = np.random.default_rng([config.seed, 1])  # validation sequences

    def length(self, rng):
        lo, hi = self.c.min_length, self.c.max_length
        return lo if lo == hi else lo + int(rng.integers(hi - lo))

    def tensors(self, x, y):
        x = torch.from_numpy(x).to(self.device, self.dtype)
        y = torch.from_numpy(y).to(self.device)
        return x, (y.to(self.dtype) if y.is_floating_point() else y)

    def batch(self):
        return self.tensors(*self.task.generate(self.c.batch_size, self.length(self.rng), self.rng))

    def example(self):
        """One fixed sequence of min_length steps, from its own generator (the same at every check)."""
        x, _ = self.task.generate(1, self.c.min_length, np.random.default_rng([self.c.seed, 3]))
        return torch.from_numpy(x).to(self.device, self.dtype)

    def loss(self, logits, y):
        return self.task.loss(logits, y)

    @torch.no_grad()
    def evaluate(self, model):
        """Mean loss and error (percent) over eval_batch_size fresh sequences."""
        total, loss, wrong = 0, 0.0, 0.0
        while total < self.c.eval_batch_size:
            n = min(self.c.chunk_batch_size, self.c.eval_batch_size - total)
            x, y = self.tensors(*self.task.generate(n, self.length(self.eval_rng), self.eval_rng))
            logits = model(x).logits
            loss += self.task.loss(logits, y).item() * n
            wrong += self.task.error(logits, y).item() * n
            total += n
        return {"valid_loss": loss / total, "valid_error": 100.0 * wrong / total}

    def state_dict(self):
        return {"rng": self.rng.bit_generator.state, "eval_rng": self.eval_rng.bit_generator.state}

    def load_state_dict(self, state):
        self.rng.bit_generator.state = state["rng"]
        self.eval_rng.bit_generator.state = state["eval_rng"]


SOURCE = Synthetic
