"""The recipe of docs/architecture.md for a new task family holds: in a copy of the packages, one
new module in dynamics/sources/ and one entry in FAMILIES give a task that trains end to end, whose
keys the config checks through the family, with nothing else changed."""
import shutil
import subprocess
import sys
from pathlib import Path

import h5py

ROOT = Path(__file__).resolve().parent.parent

PARITY = '''"""Parity: the last target is the parity of the sequence's bits (a family of one task)."""
import numpy as np
import torch
import torch.nn.functional as F

from tasks.errors import bad_value

from . import Source


class Parity(Source):
    family = "parity"
    keys = ("n_values",)                 # borrowed from mem, to show a key shared by two families
    cells = ("rnn", "gru", "lstm")

    @staticmethod
    def validate(c):
        if c.min_length != c.max_length:
            raise bad_value("max_length", c.max_length, "min_length for parity (one length)")

    def __init__(self, config, device, dtype):
        self.c, self.device, self.dtype = config, device, dtype
        self.n_in, self.n_out, self.head = 1, 2, "last_softmax"
        self.rng, self.eval_rng = np.random.default_rng(config.seed), np.random.default_rng([config.seed, 1])

    def draw(self, n, rng):
        bits = rng.integers(2, size=(self.c.min_length, n, 1))
        x = torch.from_numpy(bits).to(self.device, self.dtype)
        return x, torch.from_numpy(bits.sum(axis=(0, 2)) % 2).to(self.device)

    def batch(self):
        return self.draw(self.c.batch_size, self.rng)

    def loss(self, logits, y):
        return F.cross_entropy(logits, y)

    @torch.no_grad()
    def evaluate(self, model):
        x, y = self.draw(self.c.eval_batch_size, self.eval_rng)
        logits = model(x).logits
        error = (logits.argmax(-1) != y).float().mean().item()
        return {"valid_loss": self.loss(logits, y).item(), "valid_error": 100 * error}

    def state_dict(self):
        return {"rng": self.rng.bit_generator.state, "eval_rng": self.eval_rng.bit_generator.state}

    def load_state_dict(self, state):
        self.rng.bit_generator.state, self.eval_rng.bit_generator.state = state["rng"], state["eval_rng"]


SOURCE = Parity
'''


def test_a_new_family_is_one_module_and_one_registration(tmp_path):
    for package in ("tasks", "dynamics", "analysis"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "dynamics" / "sources" / "parity.py").write_text(PARITY)
    registry = tmp_path / "dynamics" / "sources" / "__init__.py"
    text = registry.read_text()
    assert text.count('    "text": ("text",),\n') == 1
    registry.write_text(text.replace('    "text": ("text",),\n', '    "text": ("text",),\n    "parity": ("parity",),\n'))

    def dynamics(*args):
        code = "import sys; from dynamics.cli import main; main(sys.argv[1:])"
        return subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300, env={"PYTHONPATH": str(tmp_path), "DYNAMICS_BACKEND": "python",
                                                "PATH": str(Path(sys.executable).parent)})
    sizes = ["--n-hidden", "8", "--batch-size", "8", "--eval-batch-size", "32", "--min-length", "12",
             "--max-length", "12", "--check-freq", "5", "--max-iters", "10", "--quiet"]
    out = dynamics("train", "--task", "parity", *sizes, "--name", "p")
    assert out.returncode == 0, out.stderr
    with h5py.File(tmp_path / "runs" / "p.h5", "r") as f:
        assert f.attrs["family"] == "parity" and f.attrs["status"] == "finished"
        assert len(f["check/valid_loss"]) == 2 and len(f["check/horizon_1e3"]) == 2
    refused = {"--pooling": "mean", "--cell": "transformer", "--max-length": "13"}
    errors = {}
    for flag, value in refused.items():
        out = dynamics("train", "--task", "parity", *sizes, flag, value, "--name", "q")
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, (flag, out.stderr)
        errors[flag] = out.stderr
    assert "it applies to classify tasks, and task parity is a parity task" in errors["--pooling"]
    out = dynamics("train", "--task", "parity", *sizes, "--n-values", "3", "--name", "r")
    assert out.returncode == 0, out.stderr         # a key of mem that the family declares it takes
