"""Dropout with torch's own masks, drawn faster on the CPU.

F.dropout, in training, multiplies by noise = mask / (1 − p) with the mask from bernoulli_ on the
default generator, which on the CPU spends about 7.5 ns a value in two out-of-line calls of its
MT19937: an eighth of the step of a 2×256 LSTM language model with dropout 0.2 in three places.
The compiled `dropout` (csrc/dropout.cpp) draws the same numbers from the same engine a block at
a time: the masks, the outputs, their gradients and the generator's state afterwards are torch's
bit for bit, so a run does not change by taking it. Elsewhere (CUDA, the Python path, half
precision, a tensor that is not contiguous, p = 0, evaluation) this is F.dropout itself.
"""
import torch
from torch import nn
from torch.nn import functional as F

from dynamics.models import compiled


class Masked(torch.autograd.Function):
    """out = x ⊙ noise; ∂L/∂x = ∂L/∂out ⊙ noise, as autograd differentiates F.dropout's x * noise."""

    @staticmethod
    def forward(ctx, x, p, ops):
        out, noise = ops.dropout(x, p)
        ctx.save_for_backward(noise)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (noise,) = ctx.saved_tensors
        return grad_out * noise, None, None


def dropout(x, p, training=True):
    """F.dropout(x, p, training), its masks drawn by the compiled loop where there is one."""
    if training and 0 < p < 1 and x.dtype in (torch.float32, torch.float64) and x.is_contiguous():
        ops = compiled.ops_for(x)
        if ops is not None:
            return Masked.apply(x, p, ops)
    return F.dropout(x, p, training)


class Dropout(nn.Dropout):
    """nn.Dropout through `dropout` (in place it stays torch's)."""

    def forward(self, x):
        if self.inplace:
            return super().forward(x)
        return dropout(x, self.p, self.training)
