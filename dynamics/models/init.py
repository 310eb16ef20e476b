"""Initialisations by name. Biases start at zero, except the LSTM forget bias b_f (forget_bias);
the LN-LSTM's layer-norm gains start at 1 and their biases at 0 (set where they are made).

Gate biases (`gate_init`): `default` as above; `chrono` is the chrono initialisation of Tallec &
Ollivier (2018), which sets each unit's time scale to a random τ ~ U(1, T_max − 1) steps:
- LSTM: forget bias b_f = log τ (σ(b_f) = 1 − 1/(1 + τ)), input bias b_i = −b_f;
- GRU (h_t = (1 − z) ⊙ h_{t-1} + z ⊙ h̃): update bias b_z = −log τ, so that 1 − z, the share
  kept, plays the LSTM's forget gate. The other biases stay at zero.

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

from tasks.errors import bad_value

GATE_INITS = ("default", "chrono")
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


def chrono_bias(n, t_max, g):
    """log τ per unit, τ ~ U(1, t_max − 1): the chrono initialisation's time scales."""
    return torch.log(1 + torch.rand(n, generator=g, dtype=torch.float64) * (t_max - 2))


def initialise(model, name, forget_bias=1.0, generator=None, gate_init="default", chrono_max=None):
    if name not in INITS:
        raise bad_value("init", name, ", ".join(INITS))
    if gate_init not in GATE_INITS:
        raise bad_value("gate_init", gate_init, ", ".join(GATE_INITS))
    if gate_init == "chrono" and (not isinstance(chrono_max, (int, float)) or not chrono_max > 2):
        raise bad_value("chrono_max", chrono_max, "a number > 2 (the longest time scale, in steps)")
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
            if gate_init == "chrono":
                log_tau = chrono_bias(H, chrono_max, g)
                if layer.cell == "gru":
                    layer.weights()["b_z"].copy_(-log_tau)
                elif layer.cell in ("lstm", "lnlstm"):
                    layer.weights()["b_f"].copy_(log_tau)
                    layer.weights()["b_i"].copy_(-log_tau)
                else:
                    raise bad_value("gate_init", gate_init, f"default for a {layer.cell} (chrono sets gate biases)")
        model.W_hy.copy_(outer(model.W_hy.shape))
        model.b_y.zero_()
        if model.embedding is not None:
            model.embedding.weight.copy_(normal(model.embedding.weight.shape, 1.0, g))
