"""Initialisations by name. Biases start at zero, except the LSTM forget bias b_f (forget_bias);
the LN-LSTM's layer-norm gains start at 1 and their biases at 0 (set where they are made).

- sigmoid:    all weights N(0, 0.01²) (Pascanu et al. 2013, with sigmoid units)
- basic_tanh: all weights N(0, 0.1²)
- smart_tanh: input and output weights N(0, 0.01²); each recurrent block N(0, 0.01²) with all
              but 15 random entries per row set to zero, rescaled to spectral radius 0.95
- orthogonal: recurrent blocks random orthogonal; input and output weights uniform ±1/√H
- identity:   recurrent blocks the identity (IRNN, Le et al. 2015); other weights N(0, 0.001²)
- uniform:    all weights uniform ±1/√H (the usual default of torch.nn.RNN)
"""
import math

import torch

from .errors import bad_value

INITS = ("sigmoid", "basic_tanh", "smart_tanh", "orthogonal", "identity", "uniform")
SMART_NONZEROS, SMART_RHO = 15, 0.95


def normal(shape, std, g):
    return torch.randn(shape, generator=g, dtype=torch.float64) * std


def uniform(shape, bound, g):
    return (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * bound


def sparse_with_radius(n, g, nonzeros=SMART_NONZEROS, rho=SMART_RHO):
    """N(0, 0.01²) with all but `nonzeros` random entries of each row zeroed, scaled to radius rho."""
    W = normal((n, n), 0.01, g)
    if nonzeros < n:
        keep = torch.rand((n, n), generator=g).argsort(dim=1)[:, :nonzeros]
        W = W * torch.zeros(n, n, dtype=torch.float64).scatter_(1, keep, 1.0)
    radius = torch.linalg.eigvals(W).abs().max()
    return W * (rho / radius)


def orthogonal(n, g):
    q, r = torch.linalg.qr(normal((n, n), 1.0, g))
    return q * torch.sign(torch.diagonal(r))  # Haar-distributed


def initialise(model, name, forget_bias=1.0, generator=None):
    if name not in INITS:
        raise bad_value("init", name, ", ".join(INITS))
    g = generator
    H = model.layers[0].n_hidden
    outer = {"sigmoid": lambda s: normal(s, 0.01, g), "basic_tanh": lambda s: normal(s, 0.1, g),
             "smart_tanh": lambda s: normal(s, 0.01, g), "identity": lambda s: normal(s, 0.001, g),
             "orthogonal": lambda s: uniform(s, 1 / math.sqrt(H), g),
             "uniform": lambda s: uniform(s, 1 / math.sqrt(H), g)}[name]
    recurrent = {"sigmoid": lambda: normal((H, H), 0.01, g), "basic_tanh": lambda: normal((H, H), 0.1, g),
                 "smart_tanh": lambda: sparse_with_radius(H, g), "orthogonal": lambda: orthogonal(H, g),
                 "identity": lambda: torch.eye(H, dtype=torch.float64),
                 "uniform": lambda: uniform((H, H), 1 / math.sqrt(H), g)}[name]
    with torch.no_grad():
        for layer in model.layers:
            k = layer.W_h.shape[1] // H
            layer.W_x.copy_(outer(layer.W_x.shape))
            layer.W_h.copy_(torch.cat([recurrent() for _ in range(k)], dim=1))
            layer.b.zero_()
            if layer.cell in ("lstm", "lnlstm"):
                layer.weights()["b_f"].fill_(forget_bias)
        model.W_hy.copy_(outer(model.W_hy.shape))
        model.b_y.zero_()
        if model.embedding is not None:
            model.embedding.weight.copy_(normal(model.embedding.weight.shape, 1.0, g))
