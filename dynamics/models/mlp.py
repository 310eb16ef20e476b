"""The fixed-window MLP language model of Bengio et al. (2003): the next token from the previous W.

    e_t = [E x_{t−W+1}; …; E x_t]              the W embeddings, concatenated (oldest first)
    h_t = tanh(W_xh e_t + b_h)                 one or more hidden layers
    y_t = W_hy h_t + b_y                       logits of x_{t+1}

Every position is computed independently: there is no recurrence, so no ρ and no gradient through
time. To read a stream in consecutive windows it carries the last W − 1 tokens instead of a
state (`final_state`), so position t of a window sees the same context as it would in one long
sequence; before the first token of a stream the context is padded with a token of its own
(id vocab_size, an extra embedding row).

Probes: each hidden layer is one part, cell "mlp", whose hidden is (1, T·B, H): one step, every
position a sample, so the gradient and saturation histograms are those of all positions and the
g_t-through-time panels (which need two steps or more) are left out.
"""
import math

import torch
from torch import nn

from tasks.errors import bad_value

from .dropout import Dropout
from .recurrent import Output
from .part import Part


def windows(x, window, past):
    """The contexts of a (T, B) id sequence: (T, B, W) ids, row t = x_{t−W+1..t} (oldest first),
    reaching back into `past` (W − 1, B) for the first W − 1 positions."""
    seq = torch.cat([past, x])                      # (W − 1 + T, B)
    return seq.unfold(0, window, 1)                 # (T, B, W)


class WindowMLP(nn.Module):
    """Embedding of the W previous tokens → tanh hidden layer(s) → logits (see the module)."""

    cell = "mlp"

    def __init__(self, vocab_size, window, n_embed, n_hidden, n_layers=1, dropout=0.0):
        super().__init__()
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise bad_value("window", window, "an integer >= 1")
        self.window, self.pad = window, vocab_size
        self.embedding = nn.Embedding(vocab_size + 1, n_embed)      # + the padding token
        sizes = [window * n_embed] + [n_hidden] * n_layers
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Linear(n_hidden, vocab_size)
        self.drop = Dropout(dropout)
        self.final_state = None
        self.layer_outputs = []       # (h, grad holder) of the last forward, per hidden layer
        self.hidden_grads = [None] * n_layers

    @property
    def hidden_grad(self):
        return self.hidden_grads[-1]

    def forward(self, x, state=None):
        """x (T, B) ids; state: [(past,)] with past (W − 1, B), e.g. the previous window's
        `final_state`, or None at the start of a stream."""
        T, B = x.shape
        past = x.new_full((self.window - 1, B), self.pad) if state is None else state[0][0].to(x.device, x.dtype)
        e = self.drop(self.embedding(windows(x, self.window, past)).reshape(T, B, -1))
        self.layer_outputs = []
        h = e
        for l, layer in enumerate(self.layers):
            h = torch.tanh(layer(h))
            if h.requires_grad:
                h.register_hook(self._keep_grad(l))
            self.layer_outputs.append((h, {}))
            h = self.drop(h)
        self.final_state = [(torch.cat([past, x])[T:],)]   # the last W − 1 tokens: the next past
        top = self.layer_outputs[-1][0]
        return Output(self.head(h), top, {})

    def _keep_grad(self, l):
        def keep(grad):
            self.hidden_grads[l] = grad
        return keep

    def parts(self):
        """Each hidden layer as a probe part "0" .. "L−1" (top last), hidden and grad (1, T·B, H)."""
        flat = lambda v: None if v is None else v.reshape(1, -1, v.shape[-1])   # noqa: E731
        outputs = self.layer_outputs or [(None, {})] * len(self.layers)
        return [Part(str(l), "mlp", "tanh", flat(h), {}, flat(g))
                for l, ((h, _), g) in enumerate(zip(outputs, self.hidden_grads))]

    def weights(self):
        """E (embeddings, the padding row last), W_xh and b_h per layer (suffix _l<l> above the
        first), W_hy, b_y; stored as (in, out) like the recurrent model's."""
        out = {"E": self.embedding.weight.detach()}
        for l, layer in enumerate(self.layers):
            suffix = f"_l{l}" if l else ""
            out["W_xh" + suffix] = layer.weight.detach().t()
            out["b_h" + suffix] = layer.bias.detach()
        out["W_hy"] = self.head.weight.detach().t()
        out["b_y"] = self.head.bias.detach()
        return out


def build_mlp(vocab_size, window, n_embed, n_hidden, n_layers=1, dropout=0.0, seed=None, device=None,
              dtype=torch.float32):
    """A WindowMLP with seeded weights: embeddings N(0, 1), layers U(±1/√fan_in), biases 0."""
    model = WindowMLP(vocab_size, window, n_embed, n_hidden, n_layers, dropout)
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    with torch.no_grad():
        model.embedding.weight.normal_(0.0, 1.0, generator=g)
        for layer in [*model.layers, model.head]:
            bound = 1.0 / math.sqrt(layer.in_features)
            layer.weight.uniform_(-bound, bound, generator=g)
            layer.bias.zero_()
    return model.to(device=device, dtype=dtype)
