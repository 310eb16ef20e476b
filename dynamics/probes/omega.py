"""Pascanu's regulariser Ω: whether ∂L/∂h_k keeps its norm when carried one step back."""
import torch

from ..models.recurrence import ACTIVATIONS

VANISHING_FLOOR = 1e-20   # ‖d_k‖² below this: the pair is left out of Ω
# What omega returns, in order: the names of its /iter columns (dynamics/schema.py)
OMEGA_STATS = ("omega", "steps_in_past")


def omega(hidden, hidden_grad, W_hh, activation):
    """Pascanu's Ω and the share of kept (step, sequence) pairs ('steps in the past').
    d_k = ∂L/∂h_k, u_k = d_k ⊙ φ'(a_k), r_k = ‖u_k W_hhᵀ‖² / ‖d_k‖², for k = 1..T−1;
    Ω = Σ_k mean_b (r_k − 1)² / Σ_k share_k, pairs with ‖d_k‖² < 1e-20 counting 0.
    Differentiable in W_hh only (d and h are constants)."""
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
