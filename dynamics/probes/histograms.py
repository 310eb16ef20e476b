"""Histograms on fixed bins, computed on the device: counts of a transform of the values (the
values themselves, or how far they lie from saturation)."""
import torch

from ..models import compiled

# What a histogram counts: the values, or how far they lie from saturation, d(h) = 1 − |h| for
# tanh units and min(h, 1 − h) for sigmoid units and gates (0 means saturated)
TRANSFORMS = {"identity": lambda v: v, "tanh": lambda v: 1 - v.abs(), "sigmoid": lambda v: torch.minimum(v, 1 - v)}


def histogram(values, edges, transform="identity"):
    """Counts of transform(`values`) in the bins of the evenly spaced `edges`, values outside (and
    NaN) clamped into the end bins. Each value's bin is computed, then moved by one where its own
    edges say otherwise, so a value on an edge lands where np.histogram puts it (at a tenth of the
    cost of a binary search per value; on the CPU one compiled pass that also applies the
    transform, reading a strided view in place, see dynamics/models/compiled.py)."""
    e = torch.as_tensor(edges, dtype=values.dtype, device=values.device)
    ops = compiled.ops_for(values)
    if ops is not None:
        return ops.histogram(values, e, list(TRANSFORMS).index(transform))
    n = len(edges) - 1
    v = TRANSFORMS[transform](values).reshape(-1).clamp(e[0], e[-1]).nan_to_num_(nan=edges[-1])
    idx = ((v - e[0]) * (n / (edges[-1] - edges[0]))).long().clamp_(0, n - 1)
    idx += (v >= e[idx + 1]) & (idx < n - 1)
    idx -= (v < e[idx]).long()
    return torch.bincount(idx, minlength=n)
