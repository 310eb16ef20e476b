"""Hand-written RNN, GRU and LSTM layers, stacked under an optional embedding and a head.

Parameters are stored fused per layer: `W_x` (n_in, k·H) and `b` (k·H) for the input side and
`W_h` (H, k·H) for the recurrent side, with the k blocks in the order of `GATES` below; this
makes the input projection one matmul for all steps. `weights()` hands out the per-equation
views (W_xz, W_hz, b_z, ...) of DESIGN.md.
"""
from collections import namedtuple

import torch
from torch import nn

from tasks.errors import bad_value

from ..schema import RECURRENT_MATRIX
from .dropout import Dropout
from .init import initialise
from . import lnlstm
from .recurrence import ACTIVATIONS, GRURecurrence, LSTMRecurrence, RNNRecurrence
from .part import Part

Output = namedtuple("Output", "logits hidden gates")

# Column blocks of the fused parameters, and the name of each block's equation.
GATES = {"rnn": ("h",), "gru": ("z", "r", "h"), "lstm": ("i", "f", "c", "o"), "lnlstm": ("i", "f", "c", "o")}
HEADS = ("last_softmax", "softmax", "last_linear")


class Recurrent(nn.Module):
    """One recurrent layer. After backward, `hidden_grad` holds ∂L/∂h_t (T, B, H)."""

    def __init__(self, cell, n_in, n_hidden, activation="tanh"):
        super().__init__()
        if cell not in GATES:
            raise bad_value("cell", cell, ", ".join(GATES))
        if activation not in ACTIVATIONS:
            raise bad_value("activation", activation, ", ".join(ACTIVATIONS))
        if cell != "rnn" and activation != "tanh":
            raise bad_value("activation", activation, f"tanh (a {cell} has fixed nonlinearities)")
        k = len(GATES[cell])
        self.cell, self.activation, self.n_hidden = cell, activation, n_hidden
        self.W_x = nn.Parameter(torch.zeros(n_in, k * n_hidden))
        self.W_h = nn.Parameter(torch.zeros(n_hidden, k * n_hidden))
        self.b = nn.Parameter(torch.zeros(k * n_hidden))
        if cell == "lnlstm":
            lnlstm.add_layer_norms(self, n_hidden)
        self.hidden_grad = None

    def weights(self):
        """Per-equation views: W_x<g>, W_h<g>, b_<g> for each block g (writing into them writes the layer)."""
        H, out = self.n_hidden, {}
        for j, g in enumerate(GATES[self.cell]):
            cols = slice(j * H, (j + 1) * H)
            out[f"W_x{g}"] = self.W_x.detach()[:, cols]
            out[f"W_h{g}"] = self.W_h.detach()[:, cols]
            out[f"b_{g}"] = self.b.detach()[cols]
        if self.cell == "lnlstm":
            out.update(lnlstm.layer_norm_weights(self))
        return out

    def forward(self, x, state=None):
        """x (T, B, n_in) → hidden (T, B, H), gates {name: (T, B, H)}, final state (detached)."""
        states, gates = self.states(x, state)
        return states[0], gates, tuple(s[-1].detach() for s in states)

    def states(self, x, state=None):
        """x (T, B, n_in) → the state sequences (h,) or (LSTM) (h, c), each (T, B, H) and
        differentiable, and the gates {name: (T, B, H)}. `state`: (h0,) or (h0, c0), or None (zeros)."""
        if self.cell == "lnlstm":
            return lnlstm.states(self, x, state)
        T, B, _ = x.shape
        H = self.n_hidden
        if state is None:
            zero = x.new_zeros(B, H)
            state = (zero, zero) if self.cell == "lstm" else (zero,)
        if self.cell == "lstm":   # takes x itself: its forward runs torch's fused kernel
            hs, cs, g = LSTMRecurrence.apply(x, state[0], state[1], self.W_x, self.b, self.W_h, self)
            gates = {name: g[..., j * H:(j + 1) * H] for j, name in enumerate("ifco") if name != "c"}
            return (hs, cs), gates
        xp = torch.addmm(self.b, x.reshape(T * B, -1), self.W_x).view(T, B, -1)
        if self.cell == "rnn":
            return (RNNRecurrence.apply(xp, state[0], self.W_h, self.activation, self),), {}
        W_hzr, W_hh = self.W_h[:, :2 * H].contiguous(), self.W_h[:, 2 * H:].contiguous()
        hs, zr = GRURecurrence.apply(xp, state[0], W_hzr, W_hh, self)
        return (hs,), {"z": zr[..., :H], "r": zr[..., H:]}


class Model(nn.Module):
    """[embedding] → recurrent layers (dropout between) → head. Logits only: losses apply log-softmax."""

    def __init__(self, cell, n_in, n_hidden, n_out, head, activation="tanh", n_layers=1,
                 vocab_size=None, dropout=0.0, tie_weights=False):
        super().__init__()
        if head not in HEADS:
            raise bad_value("head", head, ", ".join(HEADS))
        for key, value in (("n_in", n_in), ("n_hidden", n_hidden), ("n_out", n_out), ("n_layers", n_layers)):
            if not isinstance(value, int) or value < 1:
                raise bad_value(key, value, "a positive integer")
        if not 0 <= dropout < 1:
            raise bad_value("dropout", dropout, "a number in [0, 1)")
        self.cell, self.head = cell, head
        self.embedding = nn.Embedding(vocab_size, n_in) if vocab_size else None
        self.layers = nn.ModuleList(
            Recurrent(cell, n_in if l == 0 else n_hidden, n_hidden, activation) for l in range(n_layers))
        self.drop = Dropout(dropout)
        self.W_hy = nn.Parameter(torch.zeros(n_hidden, n_out))
        self.b_y = nn.Parameter(torch.zeros(n_out))
        if tie_weights:
            if self.embedding is None or n_hidden != n_in or n_out != vocab_size:
                raise bad_value("tie_weights", True, "needs an embedding with n_in == n_hidden and n_out == vocab_size")
            self.tied = True
        else:
            self.tied = False
        self.final_state = None
        self.layer_outputs = []

    @property
    def hidden_grad(self):
        """∂L/∂h_t of the top layer, (T, B, H), after backward."""
        return self.layers[-1].hidden_grad

    def parts(self):
        """The layers as probe parts (dynamics.sources.Part), named by index, the top one last;
        their tensors are those of the last forward and backward (None before)."""
        outputs = self.layer_outputs or [(None, {})] * len(self.layers)
        return [Part(str(l), layer.cell, layer.activation, hs, gates, layer.hidden_grad)
                for l, (layer, (hs, gates)) in enumerate(zip(self.layers, outputs))]

    def output_weight(self):
        return self.embedding.weight.t() if self.tied else self.W_hy

    def forward(self, x, state=None):
        """x: (T, B, n_in) floats, or (T, B) token ids with an embedding. `state`: a list of
        per-layer tuples (h0,) or (h0, c0), e.g. the previous batch's `model.final_state`."""
        if self.embedding is not None:
            x = self.drop(self.embedding(x))
        finals, self.layer_outputs = [], []
        for l, layer in enumerate(self.layers):
            hs, gates, final = layer(x, None if state is None else state[l])
            self.layer_outputs.append((hs, gates))
            finals.append(final)
            x = self.drop(hs)
        self.final_state = finals
        top = x if self.head == "softmax" else x[-1]
        logits = torch.matmul(top, self.output_weight()) + self.b_y
        return Output(logits, hs, gates)

    def weights(self):
        """The per-equation tensors by name, views of the stored parameters (layer l > 0: suffix _l<l>)."""
        out = {}
        for l, layer in enumerate(self.layers):
            suffix = f"_l{l}" if l else ""
            out.update({k + suffix: v for k, v in layer.weights().items()})
        out["W_hy"] = self.output_weight().detach()
        out["b_y"] = self.b_y.detach()
        if self.embedding is not None:
            out["E"] = self.embedding.weight.detach()
        return out

    def recurrent_matrix(self, layer=0):
        """The matrix that carries the state: RNN W_hh, GRU candidate W_hh, (LN-)LSTM W_hc."""
        return self.layers[layer].weights()[RECURRENT_MATRIX[self.cell]]

    def rho(self, layer=0):
        """Spectral radius of the recurrent matrix (float64 eigenvalues on the CPU)."""
        return spectral_radius(self.recurrent_matrix(layer))


def spectral_radius(W):
    return torch.linalg.eigvals(W.detach().double().cpu()).abs().max().item()


def build_model(cell, n_in, n_hidden, n_out, head, activation="tanh", init="uniform",
                n_layers=1, vocab_size=None, dropout=0.0, tie_weights=False, forget_bias=1.0,
                seed=None, device=None, dtype=torch.float32, gate_init="default", chrono_max=None):
    """The model of DESIGN.md, initialised by name (see dynamics.models.init). `seed` draws the
    initial weights from a private generator, so they do not depend on the global RNG."""
    model = Model(cell, n_in, n_hidden, n_out, head, activation, n_layers, vocab_size, dropout, tie_weights)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    initialise(model, init, forget_bias=forget_bias, generator=generator, gate_init=gate_init,
               chrono_max=chrono_max)
    return model.to(device=device, dtype=dtype)
