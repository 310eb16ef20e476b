"""Known gradient norms of fixed-seed runs, stored in tests/golden (regenerated only by `make golden`)."""
import json

import pytest
import torch

from golden_steps import CELLS, GOLDEN, gradient_norms


@pytest.mark.parametrize("cell", CELLS)
def test_golden_gradient_norms(cell, backend):
    golden = json.loads((GOLDEN / f"{cell}.json").read_text())
    assert golden["torch"].split("+")[0] == torch.__version__.split("+")[0], "golden values of another torch version"
    norms = gradient_norms(cell)
    assert len(norms) == len(golden["grad_norms"]) == 10
    for ours, ref in zip(norms, golden["grad_norms"]):
        assert ours == pytest.approx(ref, rel=1e-5)
    assert len(set(round(n, 6) for n in norms)) == 10   # the steps really move the weights
