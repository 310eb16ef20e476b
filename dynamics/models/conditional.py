"""A class-conditioned language model (one-to-many): a sequence generated given a class c.

    e_t = E x_t                                 token embedding; x_0 is the boundary token <s>
    condition "first":  h_0 = tanh(C_l[c])      per layer l, the class enters through the initial
                                                state only (an LSTM's c_0 stays 0)
    condition "every":  input_t = [e_t; C[c]]   the class embedding beside every input, h_0 = 0
    h_t = cell(input_t, h_{t−1})                the hand-written layers of dynamics/models/recurrent.py
    y_t = W_hy h_t + b_y                        logits of x_{t+1} (<s> again ends the sequence)

Trained with teacher forcing on right-padded batches; `lengths` make the probes count valid steps.
"""
import torch
from torch import nn

from tasks.errors import bad_value

from .init import initialise, normal
from .recurrent import Output, Recurrent
from .part import Part

CONDITIONS = ("first", "every")


class ConditionalLM(nn.Module):
    """Embedding (+ class) → recurrent layers → logits; see the module for the equations."""

    def __init__(self, cell, vocab_size, n_classes, n_embed, n_hidden, n_layers=1, condition="first",
                 activation="tanh"):
        super().__init__()
        if condition not in CONDITIONS:
            raise bad_value("condition", condition, ", ".join(CONDITIONS))
        self.cell, self.condition, self.n_classes = cell, condition, n_classes
        self.embedding = nn.Embedding(vocab_size, n_embed)
        width = n_layers * n_hidden if condition == "first" else n_embed
        self.classes = nn.Embedding(n_classes, width)
        n_in = n_embed + (n_embed if condition == "every" else 0)
        self.layers = nn.ModuleList(
            Recurrent(cell, n_in if l == 0 else n_hidden, n_hidden, activation) for l in range(n_layers))
        self.W_hy = nn.Parameter(torch.zeros(n_hidden, vocab_size))
        self.b_y = nn.Parameter(torch.zeros(vocab_size))
        self.final_state, self.layer_outputs, self.lengths = None, [], None

    def initial_state(self, labels):
        """Per layer (h_0,) or (h_0, c_0): tanh(C_l[c]) under "first", None (zeros) under "every"."""
        if self.condition != "first":
            return None
        h0 = torch.tanh(self.classes(labels)).chunk(len(self.layers), dim=-1)
        return [(h, torch.zeros_like(h)) if self.cell == "lstm" else (h,) for h in h0]

    def forward(self, ids, labels, state=None, lengths=None):
        """ids (T, B) token ids, labels (B,) classes; `state` continues a sequence (generation),
        None starts it from the class's initial state."""
        x = self.embedding(ids)
        if self.condition == "every":
            x = torch.cat([x, self.classes(labels).expand(ids.shape[0], -1, -1)], dim=-1)
        if state is None:
            state = self.initial_state(labels)
        finals, self.layer_outputs, self.lengths = [], [], lengths
        for l, layer in enumerate(self.layers):
            hs, gates, final = layer(x, None if state is None else state[l])
            self.layer_outputs.append((hs, gates))
            finals.append(final)
            x = hs
        self.final_state = finals
        return Output(torch.matmul(x, self.W_hy) + self.b_y, hs, gates)

    def parts(self):
        """The layers as probe parts "0" .. "L−1", the top one last, counting valid steps only."""
        outputs = self.layer_outputs or [(None, {})] * len(self.layers)
        return [Part(str(l), layer.cell, layer.activation, hs, gates, layer.hidden_grad, self.lengths)
                for l, (layer, (hs, gates)) in enumerate(zip(self.layers, outputs))]

    def weights(self):
        out = {}
        for l, layer in enumerate(self.layers):
            suffix = f"_l{l}" if l else ""
            out.update({k + suffix: v for k, v in layer.weights().items()})
        out.update(W_hy=self.W_hy.detach(), b_y=self.b_y.detach(), E=self.embedding.weight.detach(),
                   C=self.classes.weight.detach())
        return out

    def recurrent_matrix(self, layer=0):
        return self.layers[layer].weights()["W_hc" if self.cell == "lstm" else "W_hh"]


def build_conditional(cell, vocab_size, n_classes, n_embed, n_hidden, n_layers=1, condition="first",
                      activation="tanh", init="uniform", forget_bias=1.0, seed=None, device=None,
                      dtype=torch.float32):
    """A ConditionalLM initialised by name (dynamics.models.init); class embeddings N(0, 1)."""
    model = ConditionalLM(cell, vocab_size, n_classes, n_embed, n_hidden, n_layers, condition, activation)
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    initialise(model, init, forget_bias=forget_bias, generator=g)
    with torch.no_grad():
        model.classes.weight.copy_(normal(model.classes.weight.shape, 1.0, g))
    return model.to(device=device, dtype=dtype)
