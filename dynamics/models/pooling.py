"""Pooling: a padded batch of per-step vectors -> one vector per sequence, padding ignored.

    pooled, weights = pool(hidden, lengths, "attention", query)

hidden (T, B, H) right-padded, lengths (B,) with 1 <= lengths <= T. Every kind reads only the
steps t < lengths[b], so ∂pooled/∂hidden is exactly 0 at padded steps:

    last       h_{len-1}                                  (the gradient reaches one step)
    mean       (1/len) Σ_t h_t                            (every step, equally)
    max        max_t h_t, per unit                        (the step of each unit's maximum)
    attention  Σ_t a_t h_t,  a = softmax_t(h_t · q)       (a learned query q (H,); the weights a
                                                           (T, B), 0 at padded steps, are returned)

Plain torch ops: autograd differentiates them.
"""
import torch

POOLINGS = ("last", "mean", "max", "attention")


def valid_mask(lengths, T):
    """(T, B) bool: step t lies within sequence b."""
    return torch.arange(T, device=lengths.device)[:, None] < lengths[None, :]


def last_step(hidden, lengths):
    """(B, H): each sequence's vector at its own last step."""
    index = (lengths - 1).view(1, -1, 1).expand(1, -1, hidden.shape[2])
    return hidden.gather(0, index)[0]


def pool(hidden, lengths, kind, query=None):
    """(pooled (B, H), attention weights (T, B) or None)."""
    valid = valid_mask(lengths, hidden.shape[0])
    if kind == "last":
        return last_step(hidden, lengths), None
    if kind == "mean":
        total = (hidden * valid[..., None].to(hidden.dtype)).sum(dim=0)
        return total / lengths[:, None].to(hidden.dtype), None
    if kind == "max":
        return hidden.masked_fill(~valid[..., None], float("-inf")).amax(dim=0), None
    if kind == "attention":
        scores = (hidden @ query).masked_fill(~valid, float("-inf"))   # (T, B)
        weights = torch.softmax(scores, dim=0)
        return (weights[..., None] * hidden).sum(dim=0), weights
    raise ValueError(f"pooling={kind!r} is not allowed: {', '.join(POOLINGS)}")
