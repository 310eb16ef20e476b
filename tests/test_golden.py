"""Known gradient norms of fixed-seed runs, stored in tests/golden (regenerated only by `make golden`).

The norms are computed in float64, so they hold for any torch version. The tolerance: the same
steps in float32 differ from float64 by up to 1.3e-6 relative, i.e. the 40 time steps and 10 updates
amplify a rounding error (float32: 6e-8) about 20 times; in float64 (1.1e-16) a different order of
summation in another torch's kernels therefore moves a norm by a few 1e-15. rel=1e-10 leaves a
factor of 1e4 for that and still catches any change of the recurrences (or a float32 computation)."""
import json

import pytest

from golden_steps import CELLS, GOLDEN, gradient_norms

TOLERANCE = 1e-10


@pytest.mark.parametrize("cell", CELLS)
def test_golden_gradient_norms(cell, backend):
    golden = json.loads((GOLDEN / f"{cell}.json").read_text())
    assert golden["dtype"] == "float64"
    norms = gradient_norms(cell)
    assert len(norms) == len(golden["grad_norms"]) == 10
    for ours, ref in zip(norms, golden["grad_norms"]):
        assert ours == pytest.approx(ref, rel=TOLERANCE)
    assert len(set(round(n, 6) for n in norms)) == 10   # the steps really move the weights


def test_the_tolerance_tells_float32_from_float64():
    """The tolerance is tight enough to notice the rounding of float32 kernels."""
    import torch
    golden = json.loads((GOLDEN / "rnn.json").read_text())["grad_norms"]
    float32 = gradient_norms("rnn", dtype=torch.float32)
    assert any(n != pytest.approx(ref, rel=TOLERANCE) for n, ref in zip(float32, golden))
