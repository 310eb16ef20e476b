"""torch.nn.RNN, GRU and LSTM with exact ∂L/∂h_t: the same constructors, parameters, inputs and
outputs, and after each backward every layer and direction shows what BPTT computed.

Each class subclasses its torch.nn namesake and replaces only `forward`, so that the parameter
names, shapes and initialisation, `load_state_dict` both ways, `isinstance(m, torch.nn.LSTM)`
and the module's repr stay torch's. Each layer and direction runs one of the recurrences of
dynamics/models/recurrence.py, whose hand-written backward carries d_t = ∂L/∂h_t, the total
derivative through all later steps, for free. torch.nn's weights are column-vector
(weight_ih (k·H, n_in)); the recurrences are row-vector, so they take weight_ih.t() and
weight_hh.t(), views without a copy, and autograd maps the gradients back.

    lstm = dynamics.nn.LSTM(32, 64, num_layers=2, bidirectional=True)
    output, (h_n, c_n) = lstm(x)
    loss.backward()
    lstm.hidden_grad(layer=1, reverse=True)   # ∂L/∂h_t (T, B, H), the steps in input order
    lstm.gates(0)["f"]                        # the forget gate (T, B, H)
    lstm.rho(0)                               # spectral radius of the recurrent matrix

What a forward and its backward leave is kept for the last forward with gradients enabled: a
module called twice per update shows the second call; an evaluation under torch.no_grad() leaves
the training pass's alone.
"""
from collections.abc import Sequence

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from tasks.errors import InputError

from ..models.dropout import dropout
from ..models.part import Part
from ..models.recurrence import LSTMRecurrence, RNNRecurrence, TorchGRURecurrence
from ..models.recurrent import spectral_radius

CELL = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn", "RNN_RELU": "rnn"}
ACTIVATION = {"LSTM": "tanh", "GRU": "tanh", "RNN_TANH": "tanh", "RNN_RELU": "relu"}
# the block of weight_hh that carries the state: the candidate's (c̃ of the LSTM, n of the GRU)
STATE_BLOCK = {"LSTM": 2, "GRU": 2, "RNN_TANH": 0, "RNN_RELU": 0}


class Trace:
    """One layer and direction after a forward (and backward), in the direction's own order of
    steps (a reverse direction's step 0 is each sequence's last token): its input x_t (T, B, n_in),
    initial state, states h_t (T, B, H) (and the LSTM's c_t), gates {name: (T, B, H)} and, once
    backward has run, hidden_grad = ∂L/∂h_t (T, B, H)."""

    def __init__(self, input, initial):
        self.input, self.initial = input, initial
        self.hidden, self.cells, self.gates, self.hidden_grad = None, None, {}, None


def reverse_within(x, lengths):
    """x (T, B, ...) with each sequence's first `lengths[b]` steps in reverse order (the steps
    beyond them stay where they are); without lengths, all steps reversed. Its own inverse."""
    if lengths is None:
        return x.flip(0)
    T = x.shape[0]
    t = torch.arange(T, device=x.device)[:, None]
    index = torch.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)
    return x.gather(0, index.view(T, -1, *[1] * (x.dim() - 2)).expand_as(x))


def last_step(states, lengths):
    """The state after each sequence's last step: states (T, B, H) → (B, H)."""
    if lengths is None:
        return states[-1]
    return states[lengths - 1, torch.arange(states.shape[1], device=states.device)]


class DropIn:
    """The forward shared by RNN, GRU and LSTM: a stack of layers, each one or two directions, with
    dropout between layers as torch.nn applies it."""

    def _check_supported(self):
        if self.proj_size:
            raise InputError(f"dynamics.nn.LSTM: proj_size={self.proj_size} is not supported; "
                             f"use proj_size=0 (add a torch.nn.Linear after the LSTM for a projection)")

    def forward(self, input, hx=None):
        self._check_supported()
        x, lengths, packed = self._unpack(input)
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(1)
            hx = None if hx is None else tuple(h.unsqueeze(1) for h in _tuple(hx))
        elif self.batch_first and packed is None:
            x = x.transpose(0, 1)
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise InputError(f"{type(self).__name__}: input of shape {tuple(input.shape)} does not match "
                             f"input_size={self.input_size}; pass (T, B, {self.input_size}) "
                             f"({'(B, T, ...)' if self.batch_first else ''} with batch_first=True)")
        states = self._initial(x, hx)
        if lengths is not None:
            lengths = lengths.to(x.device)
        traces, finals = [], []
        directions = 2 if self.bidirectional else 1
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(directions):
                k = layer * directions + direction
                seq = x if direction == 0 else reverse_within(x, lengths)
                hs, final, trace = self._direction(seq, [s[k] for s in states], self.layer_weights(layer, direction),
                                                   lengths)
                traces.append(trace)
                outputs.append(hs if direction == 0 else reverse_within(hs, lengths))
                finals.append(final)
            x = torch.cat(outputs, dim=2) if directions == 2 else outputs[0]
            if lengths is not None:   # the steps beyond a sequence's end are zeros, as torch.nn pads them
                x = x * (torch.arange(x.shape[0], device=x.device)[:, None] < lengths[None, :]).unsqueeze(2)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = dropout(x, self.dropout)
        if torch.is_grad_enabled():   # an evaluation without gradients leaves the training pass's diagnostics
            self._traces, self._lengths = traces, lengths
        h_n = tuple(torch.stack(f) for f in zip(*finals))
        if packed is not None:   # packed in the input's own order of sequences, so output.data lines up with it
            order = packed.sorted_indices            # None: the sequences came sorted by length
            data = pack_padded_sequence(x if order is None else x[:, order],
                                        (lengths if order is None else lengths[order]).cpu()).data
            output = PackedSequence(data, packed.batch_sizes, order, packed.unsorted_indices)
        else:
            output = x.transpose(0, 1) if self.batch_first else x
        if unbatched:
            output, h_n = output.squeeze(1), tuple(h.squeeze(1) for h in h_n)
        return output, (h_n if self.mode == "LSTM" else h_n[0])

    def _unpack(self, input):
        """The padded input (T, B, n_in), the lengths (B,) or None, and the PackedSequence or None."""
        if isinstance(input, PackedSequence):
            x, lengths = pad_packed_sequence(input)
            return x, lengths, input
        return input, None, None

    def _initial(self, x, hx):
        """The initial states as a tuple (h0,) or (h0, c0), each (layers·directions, B, H)."""
        n = self.num_layers * (2 if self.bidirectional else 1)
        if hx is None:
            zero = x.new_zeros(n, x.shape[1], self.hidden_size)
            return (zero, zero) if self.mode == "LSTM" else (zero,)
        hx = _tuple(hx)
        want = (n, x.shape[1], self.hidden_size)
        for h in hx:
            if tuple(h.shape) != want:
                raise InputError(f"{type(self).__name__}: initial state of shape {tuple(h.shape)}; expected {want} "
                                 f"(layers·directions, batch, hidden_size)")
        return hx

    def layer_weights(self, layer, direction=0):
        """weight_ih, weight_hh, bias_ih, bias_hh of one layer and direction (the biases None without bias)."""
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        w_ih, w_hh = getattr(self, f"weight_ih{suffix}"), getattr(self, f"weight_hh{suffix}")
        b_ih = getattr(self, f"bias_ih{suffix}") if self.bias else None
        b_hh = getattr(self, f"bias_hh{suffix}") if self.bias else None
        return w_ih, w_hh, b_ih, b_hh

    def _direction(self, x, state, weights, lengths):
        """One layer and direction over x (T, B, n_in): h_t (T, B, H) and the final state."""
        w_ih, w_hh, b_ih, b_hh = weights
        T, B, _ = x.shape
        H = self.hidden_size
        sink = Trace(x, tuple(state))
        if self.mode == "LSTM":
            b = b_ih + b_hh if self.bias else x.new_zeros(4 * H)
            hs, cs, g = LSTMRecurrence.apply(x, state[0], state[1], w_ih.t(), b, w_hh.t(), sink)
            sink.gates = {name: g[..., j * H:(j + 1) * H] for j, name in enumerate("ifco") if name != "c"}
            final = (last_step(hs, lengths), last_step(cs, lengths))
            sink.cells = cs
        else:
            xp = x.reshape(T * B, -1) @ w_ih.t()
            if self.mode == "GRU":
                xp = (xp if b_ih is None else xp + b_ih).view(T, B, 3 * H)
                b_h = b_hh if b_hh is not None else x.new_zeros(3 * H)
                hs, rz = TorchGRURecurrence.apply(xp, state[0], w_hh.t(), b_h, sink)
                sink.gates = {"r": rz[..., :H], "z": rz[..., H:]}
            else:
                xp = (xp if b_ih is None else xp + (b_ih + b_hh)).view(T, B, H)
                hs = RNNRecurrence.apply(xp, state[0], w_hh.t(), ACTIVATION[self.mode], sink)
            final = (last_step(hs, lengths),)
        sink.hidden = hs
        return hs, final, sink

    # -- what the last forward and backward left ---------------------------------------------
    def _trace(self, layer, reverse):
        traces = getattr(self, "_traces", None)
        if not traces:
            raise InputError(f"{type(self).__name__}: nothing recorded yet; call the module (and backward) first")
        if reverse and not self.bidirectional:
            raise InputError(f"{type(self).__name__}: reverse=True, but the module is not bidirectional")
        if not 0 <= layer < self.num_layers:
            raise InputError(f"{type(self).__name__}: layer {layer} does not exist (num_layers={self.num_layers})")
        return traces[layer * (2 if self.bidirectional else 1) + int(reverse)]

    def _in_input_order(self, v, reverse):
        return reverse_within(v, self._lengths) if reverse else v

    def hidden_grad(self, layer=0, reverse=False):
        """∂L/∂h_t (T, B, H) of one layer and direction after backward, the total derivative
        through all later steps, indexed by input position like `output`; None before backward."""
        g = self._trace(layer, reverse).hidden_grad
        return None if g is None else self._in_input_order(g, reverse)

    def gates(self, layer=0, reverse=False):
        """The gates of one layer and direction, {name: (T, B, H)}, indexed by input position;
        LSTM i, f, o; GRU r and z (z is the share of h_{t-1} kept, as torch.nn.GRU defines it)."""
        return {k: self._in_input_order(v, reverse) for k, v in self._trace(layer, reverse).gates.items()}

    def recurrent_matrix(self, layer=0, reverse=False):
        """The block of weight_hh that carries the state (H, H): the RNN's whole matrix, the
        candidate block of the GRU (n) and the LSTM (c̃), in the row-vector form h_{t-1} W."""
        w_hh = getattr(self, f"weight_hh_l{layer}" + ("_reverse" if reverse else ""))
        H, j = self.hidden_size, STATE_BLOCK[self.mode]
        return w_hh.detach()[j * H:(j + 1) * H].t()

    def rho(self, layer=0, reverse=False):
        """Spectral radius of the recurrent matrix (float64 eigenvalues)."""
        return spectral_radius(self.recurrent_matrix(layer, reverse))

    def step_jacobians(self, layer=0, reverse=False, batch=8):
        """J_t = ∂s_t/∂s_{t−1} of one layer and direction along the trajectory of the last forward,
        for its first `batch` sequences (T: the shortest of them), in float64, by autograd through
        torch.nn's own cell (torch.func.jacrev): s = h (n = H), for the LSTM the pair [h, c]
        (n = 2H), whose products are ∂s_T/∂s_{T−k}. Steps in the direction's order. A sequence of
        T (b, n, n) tensors, each computed when asked: all T at once may not fit in memory."""
        trace = self._trace(layer, reverse)
        lengths = self._lengths
        T = trace.hidden.shape[0] if lengths is None else int(lengths[:batch].min())
        states = [trace.hidden] + ([trace.cells] if self.mode == "LSTM" else [])
        # s_{t−1} for t = 1 … T: the initial state, then the states of the steps before
        prev = torch.cat([torch.cat([s0[None], s[:T - 1]]) for s0, s in zip(trace.initial, states)], dim=2)
        x, prev = trace.input[:T, :batch].detach().double(), prev[:, :batch].detach().double()
        extra = {"nonlinearity": "relu"} if self.mode == "RNN_RELU" else {}
        kind = {"LSTM": torch.nn.LSTMCell, "GRU": torch.nn.GRUCell}.get(self.mode, torch.nn.RNNCell)
        cell = kind(x.shape[2], self.hidden_size, bias=self.bias, device="meta", **extra)
        weights = dict(zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"),
                           (w.detach().double() for w in self.layer_weights(layer, int(reverse)) if w is not None)))
        H = self.hidden_size

        def step(x_t, s):   # one sequence: (n_in,), (n,) → (n,)
            out = torch.func.functional_call(cell, weights, (x_t, (s[:H], s[H:]) if self.mode == "LSTM" else s))
            return torch.cat(out) if self.mode == "LSTM" else out

        return StepJacobians(torch.func.vmap(torch.func.jacrev(step, argnums=1)), x, prev)

    def parts(self, prefix=""):
        """Every layer and direction as a probe part (dynamics.models.part.Part), named
        `<prefix>l<layer>[_reverse]`, in the direction's own order of steps."""
        traces = getattr(self, "_traces", None) or []
        return [Part(name, CELL[self.mode], ACTIVATION[self.mode], trace.hidden, trace.gates, trace.hidden_grad,
                     self._lengths) for name, trace in zip(self.part_names(prefix), traces)]

    def part_names(self, prefix=""):
        """{`<prefix>l<layer>[_reverse]`: (layer, reverse)} of every layer and direction, in order."""
        directions = 2 if self.bidirectional else 1
        return {f"{prefix}l{k // directions}" + ("_reverse" if k % directions else ""): divmod(k, directions)
                for k in range(self.num_layers * directions)}


class StepJacobians(Sequence):
    """J_1 … J_T, each (b, n, n), computed when indexed: a block of steps at a time (one
    vectorised call is many times faster than one per step), the block kept under CHUNK_BYTES."""

    CHUNK_BYTES = 64 * 2 ** 20

    def __init__(self, jacobian, x, prev):
        self.jacobian, self.x, self.prev = jacobian, x, prev
        b, n = prev.shape[1:]
        self.chunk = max(1, self.CHUNK_BYTES // (b * n * n * prev.element_size()))
        self.start, self.block = None, None

    def __len__(self):
        return self.x.shape[0]

    def __getitem__(self, t):
        if not 0 <= t < len(self):
            raise IndexError(t)
        start = t - t % self.chunk
        if start != self.start:
            end = start + self.chunk
            self.start, self.block = start, torch.func.vmap(self.jacobian)(self.x[start:end], self.prev[start:end])
        return self.block[t - start]


def _tuple(hx):
    return tuple(hx) if isinstance(hx, (tuple, list)) else (hx,)


class RNN(DropIn, torch.nn.RNN):
    """torch.nn.RNN (tanh or relu) with exact ∂L/∂h_t per layer and direction."""


class GRU(DropIn, torch.nn.GRU):
    """torch.nn.GRU, in its form (the reset gate after the recurrent matmul, with b_hn), with exact
    ∂L/∂h_t per layer and direction."""


class LSTM(DropIn, torch.nn.LSTM):
    """torch.nn.LSTM (proj_size = 0) with exact ∂L/∂h_t per layer and direction."""


MODULES = {torch.nn.RNN: RNN, torch.nn.GRU: GRU, torch.nn.LSTM: LSTM}
