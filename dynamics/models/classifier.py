"""Sequence classification: token embedding → recurrent layers, one or two directions each →
pooling over the valid steps → MLP head → K logits.

Input: a right-padded batch, ids (T, B) and lengths (B,). Nothing is computed from padding:

- forward direction: the recurrence runs over all T steps, but a sequence's steps past its end
  feed nothing that is used (pooling reads t < length, `last` gathers the state at the
  sequence's own last step), so ∂L/∂h_t is exactly 0 there;
- backward direction: each sequence is reversed within its own length (`flip`), run forward,
  and its outputs reversed back, so it starts at the sequence's own last token;
- layer l+1 reads the concatenated directions of layer l; its valid steps depend only on valid
  steps of layer l.

Parts (the probed layers) are named layer<l>_fwd / layer<l>_bwd; the main part, listed last, is
the top layer's forward direction. Their g_t is aligned on each sequence's last token.
"""
import math
from collections import namedtuple

import torch
from torch import nn

from ..schema import RECURRENT_MATRIX
from .dropout import Dropout
from .init import initialise, uniform
from .recurrent import Output, Recurrent
from .pooling import last_step, pool
from .part import Part


class Batch(namedtuple("Batch", "ids lengths")):
    """A right-padded batch: ids (T, B) int64 and lengths (B,) int64; `shape` is that of ids."""

    @property
    def shape(self):
        return self.ids.shape


def flip_index(lengths, T):
    """(T, B) time index that reverses each sequence within its own length (padding stays)."""
    t = torch.arange(T, device=lengths.device)[:, None]
    return torch.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)


def gather_time(x, index):
    """x (T, B, ...) re-indexed along time per sequence: out[t, b] = x[index[t, b], b]."""
    return x.gather(0, index.view(*index.shape, *(1,) * (x.dim() - 2)).expand_as(x))


class Classifier(nn.Module):
    def __init__(self, cell, vocab_size, n_embed, n_hidden, n_classes, n_layers=1, bidirectional=False,
                 pooling="last", activation="tanh", dropout=0.0):
        super().__init__()
        self.cell, self.pooling, self.n_hidden = cell, pooling, n_hidden
        self.directions = ("fwd", "bwd") if bidirectional else ("fwd",)
        D = len(self.directions)
        self.names = [f"layer{l}_{d}" for l in range(n_layers) for d in self.directions]
        self.embedding = nn.Embedding(vocab_size, n_embed)
        self.layers = nn.ModuleList(Recurrent(cell, n_embed if l == 0 else D * n_hidden, n_hidden, activation)
                                    for l in range(n_layers) for _ in self.directions)
        self.drop = Dropout(dropout)
        self.query = nn.Parameter(torch.zeros(D * n_hidden)) if pooling == "attention" else None
        self.W_1 = nn.Parameter(torch.zeros(D * n_hidden, n_hidden))   # head: tanh(p W_1 + b_1) W_hy + b_y
        self.b_1 = nn.Parameter(torch.zeros(n_hidden))
        self.W_hy = nn.Parameter(torch.zeros(n_hidden, n_classes))
        self.b_y = nn.Parameter(torch.zeros(n_classes))
        self.outputs = {}          # part name -> (hidden, gates, lengths, flip) of the last forward
        self.attention = None      # (T, B) weights of the last forward (attention pooling)

    def forward(self, x):
        """x: a batch with .ids (T, B) int64 and .lengths (B,) int64 → Output(logits (B, K), ...)."""
        ids, lengths = x.ids, x.lengths
        T, H = ids.shape[0], self.n_hidden
        flip = flip_index(lengths, T)
        inp = self.drop(self.embedding(ids))
        self.outputs = {}
        layers = iter(zip(self.names, self.layers))
        for _ in range(len(self.layers) // len(self.directions)):
            outs = []
            for direction in self.directions:
                name, layer = next(layers)
                if direction == "fwd":
                    hs, gates, _ = layer(inp)
                else:
                    hs, gates, _ = layer(gather_time(inp, flip))
                self.outputs[name] = (hs, gates, lengths, flip if direction == "bwd" else None)
                outs.append(hs if direction == "fwd" else gather_time(hs, flip))
            inp = self.drop(torch.cat(outs, dim=-1))
        if self.pooling == "last" and len(self.directions) == 2:
            # the forward direction ends at the last token, the backward one at the first
            pooled, weights = torch.cat([last_step(inp[..., :H], lengths), inp[0, :, H:]], dim=-1), None
        else:
            pooled, weights = pool(inp, lengths, self.pooling, self.query)
        self.attention = None if weights is None else weights.detach()
        logits = torch.tanh(pooled @ self.W_1 + self.b_1) @ self.W_hy + self.b_y
        hs, gates = self.outputs[self.main][:2]
        return Output(logits, hs, gates)

    @property
    def main(self):
        return f"layer{len(self.layers) // len(self.directions) - 1}_fwd"

    def parts(self):
        """Every layer and direction as a probe part in original time order, aligned on each
        sequence's last token; the main part (top forward direction) last."""
        out = []
        for name, layer in zip(self.names, self.layers):
            hs, gates, lengths, flip = self.outputs.get(name, (None, {}, None, None))
            grad = layer.hidden_grad if hs is not None else None
            if flip is not None:
                hs, grad = gather_time(hs, flip), None if grad is None else gather_time(grad, flip)
                gates = {k: gather_time(v, flip) for k, v in gates.items()}
            out.append(Part(name, layer.cell, layer.activation, hs, gates, grad, lengths, "end"))
        return sorted(out, key=lambda p: p.name == self.main)

    def weights(self):
        """Per-equation tensors (views); layers other than the main one carry the suffix _<part>."""
        out = {}
        for name, layer in zip(self.names, self.layers):
            suffix = "" if name == self.main else f"_{name}"
            out.update({k + suffix: v for k, v in layer.weights().items()})
        out.update(E=self.embedding.weight.detach(), W_1=self.W_1.detach(), b_1=self.b_1.detach(),
                   W_hy=self.W_hy.detach(), b_y=self.b_y.detach())
        if self.query is not None:
            out["q"] = self.query.detach()
        return out

    def recurrent_matrix(self):
        """The main part's matrix that carries the state (RNN W_hh, GRU candidate W_hh, LSTM W_hc)."""
        return self.layers[self.names.index(self.main)].weights()[RECURRENT_MATRIX[self.cell]]


def build_classifier(cell, vocab_size, n_embed, n_hidden, n_classes, n_layers=1, bidirectional=False,
                     pooling="last", activation="tanh", dropout=0.0, init="uniform", forget_bias=1.0,
                     seed=None, device=None, dtype=torch.float32):
    """A Classifier initialised by name (dynamics.models.init) for the recurrent layers, embedding and
    output layer; W_1 uniform ±1/√fan_in; the attention query starts at 0 (uniform weights)."""
    model = Classifier(cell, vocab_size, n_embed, n_hidden, n_classes, n_layers, bidirectional, pooling,
                       activation, dropout)
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    initialise(model, init, forget_bias=forget_bias, generator=g)
    with torch.no_grad():
        model.W_1.copy_(uniform(model.W_1.shape, 1 / math.sqrt(model.W_1.shape[0]), g))
    return model.to(device=device, dtype=dtype)
