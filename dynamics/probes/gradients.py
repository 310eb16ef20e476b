"""g_t through time and the histograms of one part per check: the batch-mean g_t = ‖∂L/∂h_t‖₂
at each step, and histograms of log10 g_t, of the saturation d(h) of its units and of its gates.
All reductions stay on the device; a check moves one small set of tensors to the host.

d(h) = 1 − |h| for tanh units, min(h, 1 − h) for sigmoid units and gates (0 means saturated).
"""
import torch

from ..schema import GATES, LOG10_EDGES, SIGMOID_EDGES, TANH_EDGES
from .histograms import histogram


def hist_edges(part):
    """The fixed bin edges of every histogram recorded for one part (a dynamics.models.part.Part):
    saturation for tanh units (and the h of gated cells) or sigmoid units, one per gate."""
    edges = {"log10_grad": LOG10_EDGES}
    if part.activation == "tanh":
        edges["saturation"] = TANH_EDGES
    elif part.activation == "sigmoid":
        edges["saturation"] = SIGMOID_EDGES
    for gate in GATES.get(part.cell, ""):
        edges[f"gate_{gate}"] = SIGMOID_EDGES
    return edges


def valid_steps(lengths, T):
    """(T, B) bool: step t of sequence b lies within its length."""
    return torch.arange(T, device=lengths.device)[:, None] < lengths[None, :]


def end_aligned(g, lengths):
    """g (T, B) re-indexed by steps before each sequence's last token: row j is step len_b − 1 − j
    (0 beyond the sequence's start), so sequences of different lengths share one axis."""
    T = g.shape[0]
    back = (lengths[None, :] - 1 - torch.arange(T, device=g.device)[:, None]).clamp_min(0)
    return torch.gather(g, 0, back) * valid_steps(lengths, T)


def layer_diagnostics(part, edges):
    """Per-check diagnostics of one part, as device tensors: the batch-mean g_t through time (over
    the sequences that reach step t; by steps before the last token where the part is aligned on
    the end) and histograms over the valid steps only."""
    g = part.grad.norm(dim=2)                         # (T, B)
    if part.lengths is None:
        grad_time, pick = g.mean(dim=1), lambda v: v
    else:
        valid = valid_steps(part.lengths, g.shape[0])
        count = valid.sum(dim=1).to(g.dtype)
        rows = end_aligned(g, part.lengths) if part.align == "end" else g * valid
        grad_time = rows.sum(dim=1) / count.where(count > 0, torch.nan)
        pick = lambda v: v[valid]                     # noqa: E731 - (T, B, ...) → the valid steps
    out = {"grad_time": grad_time, "g": g,
           "hist": {"log10_grad": histogram(torch.log10(pick(g).clamp_min(1e-30)), edges["log10_grad"])}}
    if "saturation" in edges:
        out["hist"]["saturation"] = histogram(pick(part.hidden), edges["saturation"], part.activation)
    for name, v in part.gates.items():
        out["hist"][f"gate_{name}"] = histogram(pick(v), edges[f"gate_{name}"], "sigmoid")
    return out
