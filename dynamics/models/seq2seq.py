"""Encoder–decoder with attention, built from the hand-written recurrent layers.

Encoder: embedding → n_layers of Recurrent, each optionally with a backward twin that reads every
sequence reversed within its own length (a gather), so that it starts at the sequence's last token.
The top layer's outputs h_j (T_s, B, E), E = H or 2H, are the attention memory.

Decoder: embedding → n_layers of Recurrent of the same cell, started from the encoder's final
states (at each sequence's own last step; through a learned bridge tanh(W_b [h→; h←] + b_b) when
bidirectional). An (LN-)LSTM decoder starts from the encoder's final (h, c), both with their
gradients; bidirectional, c has its own bridge of the same form, tanh(W_bc [c→; c←] + b_bc).
With s_t the top decoder state, y_{t-1} the previous output token and e(·) its embedding:

    none (Sutskever et al. 2014):
        s_t = cell(e(y_{t-1}), s_{t-1});                      logits_t = s_t W_y + b_y
    bahdanau (Bahdanau, Cho & Bengio 2015): the context comes first, from the PREVIOUS state,
        e_tj = vᵀ tanh(s_{t-1} W_q + h_j W_k),  a_t = softmax_j e_tj,  c_t = Σ_j a_tj h_j
        s_t = cell([e(y_{t-1}); c_t], s_{t-1});  h̃_t = tanh([s_t; c_t] W_c)
    luong_dot / luong_general (Luong, Pham & Manning 2015), with input feeding: the step first,
        s_t = cell([e(y_{t-1}); h̃_{t-1}], s_{t-1})            (h̃_0 = 0)
        e_tj = s_t · h_j  (dot)   or   s_t W_a h_jᵀ  (general),  a_t, c_t as above
        h̃_t = tanh([s_t; c_t] W_c)
    with attention: logits_t = h̃_t W_y + b_y. The softmax runs over valid source steps only
    (padding: e = −∞, a = 0). s is the top decoder layer's state; Bahdanau's first query s_0 is
    its initial state, from the encoder.

Without attention and with every input the target's (teacher forcing), the decoder's inputs are
known in advance: the whole sequence goes through each layer in one call (the fast fused
kernels). Otherwise (attention, scheduled sampling, inference) the decoder runs one step at a
time, carrying every layer's state with its gradient: RNN and GRU as T = 1 calls of their layers,
(LN-)LSTM as the cell's equations in plain PyTorch (`lstm_step`), whose c_t autograd carries;
∂L/∂s_t is read off each step's state tensor.

The interface greedy and beam search use (any encoder–decoder that provides it can be decoded):

    memory, initial = model.encode(src, src_len)   src (T_s, B) ids, src_len (B,); memory: a
        namedtuple of time-first tensors (T_s, B, ...) with a field `values`; initial: anything
    state = model.start(initial, B, like)           like: a tensor of the model's dtype and device
    logits, state, weights, outs = model.step(tokens, state, memory)
        tokens (B,) the previous outputs (SOS first) → logits (B, V), the new state, attention
        weights (B, T_s) or None, and the layers' outputs (ignored by decoding)

`state` is a nest of lists, tuples and None whose tensors have the batch row first: beam search
reorders it with `select` and repeats `memory` along its second axis. The trainer's source
(dynamics/sources/seq2seq.py) calls `model(src, src_len, tgt_in, tgt_len, teacher)` → Output, and
for the probes `parts()`, `weights()` and `recurrent_matrix()`; evaluation keeps whatever of
`enc_record`, `dec_record`, `src_len`, `tgt_len` the model has from its last training forward.
"""
import math
from collections import namedtuple

import torch
import torch.nn.functional as F
from torch import nn

from .init import orthogonal
from ..schema import RECURRENT_MATRIX
from .recurrent import GATES, Recurrent
from . import lnlstm
from .part import Part

PAD, SOS, EOS = 0, 1, 2
ATTENTIONS = ("none", "bahdanau", "luong_dot", "luong_general")
FEEDING = ("luong_dot", "luong_general")

Output = namedtuple("Output", "logits hidden gates attention")
Memory = namedtuple("Memory", "values keys mask")   # (T_s, B, E), projected keys, (T_s, B) bool valid


def reversal(lengths, T):
    """(T, B) time index reversing each sequence within its length (padding stays in place)."""
    t = torch.arange(T, device=lengths.device)[:, None]
    return torch.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)


def gather_time(x, index):
    """x (T, B, D) re-indexed in time per sequence: out[t, b] = x[index[t, b], b]."""
    return torch.gather(x, 0, index[..., None].expand(-1, -1, x.shape[-1]))


def at_last(hs, lengths):
    """Each sequence's state at its own last step, (B, H)."""
    return hs[lengths - 1, torch.arange(hs.shape[1], device=hs.device)]


def cell_step(layer, x, state):
    """One step of a decoder layer, differentiable in its whole state: x (B, n_in), state (h,) or
    (h, c) → the new state tuple and the gates {name: (B, H)}."""
    if layer.cell in ("lstm", "lnlstm"):
        return lstm_step(layer, x, *state)
    hs, gates, _ = layer(x[None], state)
    return (hs[0],), {k: v[0] for k, v in gates.items()}


def lstm_step(layer, x, h, c):
    """The (LN-)LSTM's equations for one step, as in dynamics/models/recurrence.py and models/lnlstm.py:
    a = x W_x + h W_h + b (LN-LSTM: LN_x(x W_x) + LN_h(h W_h) + b), columns i, f, c̃, o;
    c_t = σ(a_f) ⊙ c + σ(a_i) ⊙ tanh(a_c̃);  h_t = σ(a_o) ⊙ tanh(c_t) (LN-LSTM: tanh(LN_c(c_t)))."""
    H = layer.n_hidden
    if layer.cell == "lnlstm":
        a = (F.layer_norm(x @ layer.W_x, (4 * H,), layer.g_x, layer.beta_x, lnlstm.EPS)
             + F.layer_norm(h @ layer.W_h, (4 * H,), layer.g_h, layer.beta_h, lnlstm.EPS) + layer.b)
    else:
        a = torch.addmm(layer.b, x, layer.W_x) + h @ layer.W_h
    i, f, cand, o = a.split(H, dim=1)
    i, f, cand, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(cand), torch.sigmoid(o)
    c = f * c + i * cand
    squashed = F.layer_norm(c, (H,), layer.g_c, layer.beta_c, lnlstm.EPS) if layer.cell == "lnlstm" else c
    return (o * torch.tanh(squashed), c), {"i": i, "f": f, "o": o}


class Seq2Seq(nn.Module):
    def __init__(self, cell, src_vocab, tgt_vocab, n_in, n_hidden, n_layers=1, bidirectional=False,
                 attention="luong_general", activation="tanh"):
        super().__init__()
        H, dirs = n_hidden, 2 if bidirectional else 1
        E = dirs * H
        self.cell, self.activation, self.n_hidden, self.n_layers = cell, activation, H, n_layers
        self.bidirectional, self.attention = bidirectional, attention
        self.feeding = attention in FEEDING
        self.src_embedding = nn.Embedding(src_vocab, n_in)
        self.tgt_embedding = nn.Embedding(tgt_vocab, n_in)
        self.enc_fwd = nn.ModuleList(Recurrent(cell, n_in if l == 0 else E, H, activation) for l in range(n_layers))
        self.enc_bwd = nn.ModuleList(Recurrent(cell, n_in if l == 0 else E, H, activation)
                                     for l in range(n_layers if bidirectional else 0))
        self.W_b = nn.ParameterList(nn.Parameter(torch.zeros(E, H)) for _ in range(n_layers if bidirectional else 0))
        self.b_b = nn.ParameterList(nn.Parameter(torch.zeros(H)) for _ in range(n_layers if bidirectional else 0))
        feed = {"none": 0, "bahdanau": E}.get(attention, H)       # c_t (Bahdanau) or h̃_{t-1} (Luong)
        self.dec = nn.ModuleList(Recurrent(cell, n_in + feed if l == 0 else H, H, activation) for l in range(n_layers))
        if attention == "bahdanau":
            self.W_q, self.W_k, self.v = (nn.Parameter(torch.zeros(*s)) for s in ((H, H), (E, H), (H,)))
        elif attention == "luong_general":
            self.W_a = nn.Parameter(torch.zeros(E, H))
        if attention != "none":
            self.W_c = nn.Parameter(torch.zeros(H + E, H))
        self.W_y = nn.Parameter(torch.zeros(H, tgt_vocab))
        self.b_y = nn.Parameter(torch.zeros(tgt_vocab))
        bridged_c = n_layers if bidirectional and cell in ("lstm", "lnlstm") else 0   # last: the others' draws stay
        self.W_bc = nn.ParameterList(nn.Parameter(torch.zeros(E, H)) for _ in range(bridged_c))
        self.b_bc = nn.ParameterList(nn.Parameter(torch.zeros(H)) for _ in range(bridged_c))
        self.enc_record, self.dec_record = [], []

    # -- encoder ------------------------------------------------------------------------------
    def encode(self, src, lengths):
        """src (T_s, B) ids → Memory and the decoder's initial states (a list of per-layer tuples)."""
        T, self.src_len = src.shape[0], lengths
        x = self.src_embedding(src)
        back = reversal(lengths, T) if self.bidirectional else None
        self.enc_record, initial = [], []
        for l in range(self.n_layers):
            fwd, gates = self.enc_fwd[l].states(x)                     # (h,) or (h, c), each (T_s, B, H)
            hf = fwd[0]
            self.enc_record.append((f"enc{l}f" if self.bidirectional else f"enc{l}", self.enc_fwd[l], hf, gates, None))
            last = [at_last(s, lengths) for s in fwd]
            if self.bidirectional:
                bwd_rev, gates_rev = self.enc_bwd[l].states(gather_time(x, back))
                hb = gather_time(bwd_rev[0], back)
                self.enc_record.append((f"enc{l}b", self.enc_bwd[l], hb,
                                        {k: gather_time(v, back) for k, v in gates_rev.items()}, back))
                bridges = [(self.W_b[l], self.b_b[l])] + ([(self.W_bc[l], self.b_bc[l])] if len(fwd) == 2 else [])
                last = [torch.tanh(torch.cat([f, at_last(b, lengths)], dim=1) @ W + bias)   # h, then c
                        for f, b, (W, bias) in zip(last, bwd_rev, bridges)]
                hf = torch.cat([hf, hb], dim=2)
            initial.append(tuple(last))
            x = hf
        mask = torch.arange(T, device=src.device)[:, None] < lengths[None, :]
        keys = {"bahdanau": lambda: x @ self.W_k, "luong_general": lambda: x @ self.W_a}.get(self.attention, lambda: x)()
        return Memory(x, keys, mask), initial

    # -- attention and output -----------------------------------------------------------------
    def align(self, s, memory):
        """Queries s (T_d, B, H) against the memory → weights a (T_d, B, T_s), context c (T_d, B, E)."""
        if self.attention == "bahdanau":
            keys = memory.keys.transpose(0, 1)                               # (B, T_s, H)
            scores = torch.tanh((s @ self.W_q)[:, :, None, :] + keys[None]) @ self.v
        else:
            scores = torch.einsum("dbh,sbh->dbs", s, memory.keys)
        scores = scores.masked_fill(~memory.mask.t()[None], -math.inf)
        weights = torch.softmax(scores, dim=-1)
        return weights, torch.einsum("dbs,sbe->dbe", weights, memory.values)

    def readout(self, s, context):
        """Logits from the top state s and the context c (None without attention), and h̃ (or None)."""
        if context is None:
            return s @ self.W_y + self.b_y, None
        attentional = torch.tanh(torch.cat([s, context], dim=-1) @ self.W_c)    # h̃_t
        return attentional @ self.W_y + self.b_y, attentional

    # -- decoder --------------------------------------------------------------------------------
    def start(self, initial, batch, like):
        """The decoder's state before its first step: per-layer states, and h̃_0 = 0 (Luong)."""
        return initial, (like.new_zeros(batch, self.n_hidden) if self.feeding else None)

    def step(self, tokens, state, memory):
        """One decoder step for every row: tokens y_{t-1} (B,), state (per-layer tuples, h̃_{t-1}) →
        logits (B, V), the new state, attention weights (B, T_s) or None, and per layer (h_t, gates)."""
        layers, feed = state
        x = self.tgt_embedding(tokens)
        weights = context = None
        if self.attention == "bahdanau":                 # c_t from s_{t-1}, before the step
            weights, context = (v[0] for v in self.align(layers[-1][0][None], memory))
            x = torch.cat([x, context], dim=1)
        elif self.feeding:                               # Luong: h̃_{t-1}
            x = torch.cat([x, feed], dim=1)
        new, outs = [], []
        for layer, st in zip(self.dec, layers):
            st, gates = cell_step(layer, x, st)
            new.append(st)
            outs.append((st[0], gates))
            x = st[0]
        if self.feeding:                                 # Luong: attention with s_t, after the step
            weights, context = (v[0] for v in self.align(x[None], memory))
        logits, attentional = self.readout(x, context)
        return logits, (new, attentional if self.feeding else None), weights, outs

    def forward(self, src, src_len, tgt_in, tgt_len, teacher=None):
        """Teacher-forced (or scheduled-sampling) decoding of a batch. `teacher` (T_d, B) bool: feed
        the target token at step t (True) or the model's own previous argmax (False); None: all
        target tokens. Returns Output(logits (T_d, B, V), top h (T_d, B, H), its gates, weights)."""
        memory, initial = self.encode(src, src_len)
        self.tgt_len = tgt_len
        if self.attention == "none" and (teacher is None or bool(teacher.all())):   # inputs known: one call
            x = self.tgt_embedding(tgt_in)
            self.dec_record = []
            for layer, st in zip(self.dec, initial):
                x, gates, _ = layer(x, st)
                self.dec_record.append((layer, x, gates, None))
            logits, _ = self.readout(x, None)
            return Output(logits, x, gates, None)
        T, B = tgt_in.shape
        state = self.start(initial, B, memory.values)
        steps, all_logits, all_weights = [], [], []
        tokens = tgt_in[0]
        for t in range(T):
            if t > 0:
                own = all_logits[-1].detach().argmax(dim=-1)
                tokens = tgt_in[t] if teacher is None else torch.where(teacher[t], tgt_in[t], own)
            logits, state, weights, outs = self.step(tokens, state, memory)
            for h, _ in outs:
                if h.requires_grad:
                    h.retain_grad()
            steps.append(outs)
            all_logits.append(logits)
            all_weights.append(weights)
        self.dec_record = [(layer, [s[l][0] for s in steps], {k: torch.stack([s[l][1][k] for s in steps]) for k in steps[0][l][1]},
                            "steps") for l, layer in enumerate(self.dec)]
        top = torch.stack([s[-1][0] for s in steps])
        weights = None if all_weights[0] is None else torch.stack(all_weights)
        return Output(torch.stack(all_logits), top, self.dec_record[-1][2], weights)

    # -- what the trainer reads -----------------------------------------------------------------
    def parts(self):
        """Encoder layers (each direction, in source time order) then decoder layers, top decoder
        layer last; grad = ∂L/∂h_t of the last backward."""
        parts = []
        names = [f"enc{l}{d}" if self.bidirectional else f"enc{l}" for l in range(self.n_layers)
                 for d in ("fb" if self.bidirectional else "f")]
        record = self.enc_record or [(n, None, None, {}, None) for n in names]
        for name, layer, hs, gates, back in record:
            grad = None if layer is None else layer.hidden_grad
            if grad is not None and back is not None:
                grad = gather_time(grad, back)       # the backward twin's steps in source order
            parts.append(Part(name, self.cell, self.activation, hs, gates, grad,
                              getattr(self, "src_len", None), "start"))
        record = self.dec_record or [(None, None, {}, None)] * self.n_layers
        for l, (layer, hs, gates, mode) in enumerate(record):
            grad = None if layer is None else layer.hidden_grad
            if mode == "steps":
                grad = torch.stack([h.grad if h.grad is not None else torch.zeros_like(h) for h in hs])
                hs = torch.stack(hs).detach()
            parts.append(Part(f"dec{l}", self.cell, self.activation, hs, gates, grad,
                              getattr(self, "tgt_len", None), "start"))
        return parts

    def weights(self):
        out = {}
        for prefix, layers in (("enc", self.enc_fwd), ("encb", self.enc_bwd), ("dec", self.dec)):
            for l, layer in enumerate(layers):
                out.update({f"{prefix}{l}_{k}": v for k, v in layer.weights().items()})
        for name, p in self.named_parameters():
            if "." not in name or name.startswith(("W_b", "b_b")):
                out[name.replace(".", "_")] = p.detach()
        out["E_src"], out["E_tgt"] = self.src_embedding.weight.detach(), self.tgt_embedding.weight.detach()
        return out

    def recurrent_matrix(self):
        """The first encoder layer's state-carrying matrix (RNN/GRU W_hh, LSTM W_hc)."""
        return self.enc_fwd[0].weights()[RECURRENT_MATRIX[self.cell]]

    @property
    def recurrent_matrix_name(self):
        """That matrix's name in weights()."""
        return f"enc0_{RECURRENT_MATRIX[self.cell]}"


def build(cell, src_vocab, tgt_vocab, n_in, n_hidden, n_layers=1, bidirectional=False, attention="luong_general",
          activation="tanh", init="uniform", forget_bias=1.0, seed=0, dtype=torch.float32, device=None):
    """The model with weights uniform ±1/√H (recurrent blocks orthogonal with init="orthogonal"),
    embeddings N(0, 1), biases 0 (LSTM b_f = forget_bias), drawn from a private generator."""
    model = Seq2Seq(cell, src_vocab, tgt_vocab, n_in, n_hidden, n_layers, bidirectional, attention, activation)
    g = torch.Generator().manual_seed(seed)
    H = n_hidden
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embedding" in name:
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
            elif name.endswith((".b", "b_y")) or name.startswith("b_b"):
                p.zero_()
            else:
                p.copy_((torch.rand(p.shape, generator=g, dtype=torch.float64) * 2 - 1) / math.sqrt(H))
        for layer in [*model.enc_fwd, *model.enc_bwd, *model.dec]:
            if init == "orthogonal":
                layer.W_h.copy_(torch.cat([orthogonal(H, g) for _ in GATES[cell]], dim=1))
            if cell in ("lstm", "lnlstm"):
                layer.weights()["b_f"].fill_(forget_bias)
    return model.to(device=device, dtype=dtype)


# -- inference ------------------------------------------------------------------------------------
NORMS = ("none", "avg", "gnmt")


def normalised(logp, length, norm, alpha):
    """A hypothesis' score: log p, log p / length, or GNMT's log p / ((5 + length)^α / 6^α)."""
    if norm == "avg":
        return logp / length
    if norm == "gnmt":
        return logp / (((5 + length) / 6) ** alpha)
    return logp


def allowed(logits):
    """Log-probabilities with <pad> and <sos> ruled out as outputs."""
    logp = torch.log_softmax(logits, dim=-1)
    logp[:, PAD] = -math.inf
    logp[:, SOS] = -math.inf
    return logp


@torch.no_grad()
def greedy(model, src, src_len, max_steps):
    """Argmax decoding until <eos> or max_steps. Returns ids (B, L), summed log-probabilities (B,)
    up to and including <eos>, and attention weights (L, B, T_s) (None without attention)."""
    memory, initial = model.encode(src, src_len)
    B = src.shape[1]
    state = model.start(initial, B, memory.values)
    tokens = src.new_full((B,), SOS)
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    logp_sum = memory.values.new_zeros(B)
    out, weights = [], []
    for _ in range(max_steps):
        logits, state, w, _ = model.step(tokens, state, memory)
        logp = allowed(logits)
        tokens = logp.argmax(dim=-1)
        logp_sum += torch.where(done, 0.0, logp.gather(1, tokens[:, None])[:, 0])
        tokens = tokens.masked_fill(done, PAD)
        out.append(tokens)
        weights.append(w)
        done |= tokens == EOS
        if bool(done.all()):
            break
    return torch.stack(out, dim=1), logp_sum, None if weights[0] is None else torch.stack(weights)


def select(state, index):
    """Rows `index` of every tensor in a nest of lists, tuples (named too) and None."""
    if state is None or isinstance(state, torch.Tensor):
        return None if state is None else state[index]
    items = [select(s, index) for s in state]
    return type(state)(*items) if hasattr(state, "_fields") else type(state)(items)


@torch.no_grad()
def beam_search(model, src, src_len, beam_size, max_steps, norm="none", alpha=0.6, n_best=1):
    """Batched beam search. Every sequence keeps `beam_size` live prefixes ranked by log p; a
    prefix extended by <eos> among the best `beam_size` candidates is finished. A sequence stops
    when its `n_best` best finished scores are at least what any live prefix could still reach
    (log p only falls as a prefix grows, so that is the best live log p, normalised at the most
    favourable length, max_steps), or at max_steps, where the live prefixes finish unended.
    Returns per sequence its `n_best` hypotheses, best first by the normalised score:
    [(ids without <eos>, log p, score), ...]."""
    K = beam_size
    memory, initial = model.encode(src, src_len)
    B = src.shape[1]
    rows = torch.arange(B, device=src.device).repeat_interleave(K)
    memory = type(memory)(*(m[:, rows] for m in memory))             # time-first: rows are axis 1
    state = select(model.start(initial, B, memory.values), rows)
    score = memory.values.new_full((B, K), -math.inf)
    score[:, 0] = 0.0                                   # one live prefix at the start: <sos>
    tokens = src.new_full((B * K,), SOS)
    history = src.new_zeros(B * K, 0)
    finished = [[] for _ in range(B)]
    active = torch.ones(B, dtype=torch.bool)
    for t in range(max_steps):
        logits, state, _, _ = model.step(tokens, state, memory)
        logp = allowed(logits).view(B, K, -1)
        V = logp.shape[-1]
        cand = (score[:, :, None] + logp).view(B, K * V)
        top, index = cand.topk(min(2 * K, K * V), dim=1)
        origin, token = index // V, index % V
        is_eos = token == EOS
        rank = torch.arange(top.shape[1], device=src.device)[None]
        # finished: <eos> among the best K, with a finite score, for a sequence still searching
        for b, j in (is_eos & (rank < K) & torch.isfinite(top) & active[:, None].to(top.device)).nonzero().tolist():
            prefix = history[b * K + origin[b, j]].tolist()
            finished[b].append((prefix, top[b, j].item(), len(prefix) + 1))
        # live: the best K candidates that do not end in <eos>
        order = (rank + top.shape[1] * is_eos).argsort(dim=1)[:, :K]
        score = top.gather(1, order)
        flat = (torch.arange(B, device=src.device)[:, None] * K + origin.gather(1, order)).view(-1)
        tokens = token.gather(1, order).view(-1)
        history = torch.cat([history[flat], tokens[:, None]], dim=1)
        state = select(state, flat)
        best_live = score[:, 0].tolist()
        for b in range(B):
            if active[b]:
                reach = normalised(best_live[b], max_steps, norm, alpha) if norm != "none" else best_live[b]
                scores = sorted((normalised(lp, n, norm, alpha) for _, lp, n in finished[b]), reverse=True)
                active[b] = not (len(scores) >= n_best and scores[n_best - 1] >= reach)
        if not bool(active.any()):
            break
    for b in range(B):
        if active[b]:                     # max_steps reached: live prefixes finish unended
            for k in range(K):
                if math.isfinite(score[b, k].item()):
                    finished[b].append((history[b * K + k].tolist(), score[b, k].item(), t + 1))
    out = []
    for b in range(B):
        ranked = sorted(((ids, lp, normalised(lp, n, norm, alpha)) for ids, lp, n in finished[b]),
                        key=lambda h: -h[2])
        out.append(ranked[:n_best])
    return out
