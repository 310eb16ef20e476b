"""Golden gradient norms: the first 10 SGD steps of each cell on one fixed batch (CPU).

They are computed in float64, so that they do not depend on one torch version's float32 kernels
(which may sum in another order and move a norm by 1e-7 relative). See test_golden.py for the
tolerance.

Regenerate (only when a change of numbers is intended, e.g. a change of the recurrences):
    make golden        # = python tests/golden_steps.py
"""
import json
from pathlib import Path

import torch

import dynamics

GOLDEN = Path(__file__).parent / "golden"
CELLS = ("rnn", "gru", "lstm")


def gradient_norms(cell, steps=10, dtype=torch.float64):
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(40, 8, 4, generator=g).to(dtype)
    y = torch.randint(3, (8,), generator=g)
    model = dynamics.build_model(cell, 4, 16, 3, "last_softmax", init="uniform", seed=7, dtype=dtype)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    norms = []
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x).logits, y).backward()
        norms.append(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])).item())
        opt.step()
    return norms


if __name__ == "__main__":
    for cell in CELLS:
        path = GOLDEN / f"{cell}.json"
        path.write_text(json.dumps({"dtype": "float64", "made_with_torch": str(torch.__version__),
                                    "grad_norms": gradient_norms(cell)}, indent=1) + "\n")
        print(f"wrote {path}")
