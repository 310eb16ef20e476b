"""Gradient clipping and the non-finite check, measured as they act: the global norm before and
after, whether the gradient was rescaled, whether the step was not trusted."""
import torch

from ..models import compiled

# What clip_gradients returns, in order: the names of its /iter columns (dynamics/schema.py)
CLIP_STATS = ("grad_norm", "grad_norm_clipped", "clipped", "nonfinite")


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
