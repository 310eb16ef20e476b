"""Diagnostics read off a training step: gradient norms, clipping, Ω, and per-check g_t,
saturation and gate histograms, ρ(W_rec). All reductions stay on the device; a check moves
one small set of tensors to the host.

g_t = ‖∂L/∂h_t‖₂ per sequence; d(h) = 1 − |h| for tanh units, min(h, 1 − h) for sigmoid units
and gates (0 means saturated).
"""
import numpy as np
import torch

from .models import compiled

LOG10_EDGES = np.arange(-20.0, 10.0 + 1e-9, 0.25)
TANH_EDGES = np.linspace(0.0, 1.0, 51)
SIGMOID_EDGES = np.linspace(0.0, 0.5, 51)
VANISHING_FLOOR = 1e-20   # ‖d_k‖² below this: the pair is left out of Ω


GATE_NAMES = {"rnn": "", "gru": "zr", "lstm": "ifo", "lnlstm": "ifo"}


def hist_edges(part):
    """The fixed bin edges of every histogram recorded for one part (a dynamics.sources.Part):
    saturation for tanh units (and the h of gated cells) or sigmoid units, one per gate."""
    edges = {"log10_grad": LOG10_EDGES}
    if part.activation == "tanh":
        edges["saturation"] = TANH_EDGES
    elif part.activation == "sigmoid":
        edges["saturation"] = SIGMOID_EDGES
    for gate in GATE_NAMES.get(part.cell, ""):
        edges[f"gate_{gate}"] = SIGMOID_EDGES
    return edges


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


def clip_gradients(params, W_rec, cutoff, clip):
    """Global-norm clipping, without a host sync. Rescale: g · c/‖g‖ when ‖g‖ > c. When ‖g‖ is
    not finite or above 1e10 the step is not trusted (the reference rule): the gradient of the
    recurrent matrix becomes 0.02 · W and every other gradient 0 (W_rec None, as for the gated
    cells, which the reference rule does not cover: all gradients 0). Returns one tensor of the
    gradients' dtype, (‖g‖, ‖g‖ after, clipped, nonfinite), the last two 0 or 1. On the CPU one
    compiled call (dynamics/models/compiled.py), where the host decides without a sync to wait for."""
    grads = [p.grad for p in params if p.grad is not None]
    ops = compiled.ops_for(grads[0])
    if ops is not None:
        return ops.clip_gradients(grads, None if W_rec is None else W_rec.detach(),
                                  None if W_rec is None else W_rec.grad, cutoff, clip == "rescale")
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    bad = ~torch.isfinite(norm) | (norm > 1e10)
    clipped = (norm > cutoff) & ~bad if clip == "rescale" else torch.zeros_like(bad)
    scale = torch.where(clipped, cutoff / norm, torch.ones_like(norm))
    torch._foreach_mul_(grads, scale)
    for g in grads:
        g.masked_fill_(bad, 0.0)
    if W_rec is not None:
        W_rec.grad.add_(W_rec.detach() * (0.02 * bad))
    after = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    return torch.stack([norm, after, clipped.to(norm.dtype), bad.to(norm.dtype)])


def omega(hidden, hidden_grad, W_hh, activation):
    """Pascanu's Ω and the share of kept (step, sequence) pairs ('steps in the past').
    d_k = ∂L/∂h_k, u_k = d_k ⊙ φ'(a_k), r_k = ‖u_k W_hhᵀ‖² / ‖d_k‖², for k = 1..T−1;
    Ω = Σ_k mean_b (r_k − 1)² / Σ_k share_k, pairs with ‖d_k‖² < 1e-20 counting 0.
    Differentiable in W_hh only (d and h are constants)."""
    from .models.recurrence import ACTIVATIONS
    _, dphi = ACTIVATIONS[activation]
    d = hidden_grad[1:].detach()
    u = d if dphi is None else d * dphi(hidden[1:].detach())
    dd = (d * d).sum(dim=2)                                   # (T−1, B)
    keep = dd >= VANISHING_FLOOR
    back = torch.matmul(u, W_hh.t())                          # u_k W_hhᵀ: d_k carried one step back
    r = (back * back).sum(dim=2) / torch.where(keep, dd, torch.ones_like(dd))
    term = torch.where(keep, (r - 1) ** 2, torch.zeros_like(r))
    share = keep.to(d.dtype).mean(dim=1)                      # (T−1,)
    total = share.sum()
    value = term.mean(dim=1).sum() / total.clamp_min(torch.finfo(d.dtype).tiny)
    return value, total / max(len(share), 1)


def singular_max(W):
    return torch.linalg.matrix_norm(W.detach().double().cpu(), ord=2).item()
