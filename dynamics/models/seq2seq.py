"""Encoder–decoder with attention, built from the hand-written recurrent layers.

Encoder: embedding → n_layers of Recurrent, each optionally with a backward twin that reads every
sequence reversed within its own length (a gather), so that it starts at the sequence's last token.
The top layer's outputs h_j (T_s, B, E), E = H or 2H, are the attention memory.

Decoder: embedding → n_layers of Recurrent of the same cell, started from the encoder's final
states (at each sequence's own last step; through a learned bridge tanh(W_b [h→; h←] + b_b) when
bidirectional). An LSTM decoder starts from c_0 = 0, because the LSTM kernel hands out no
differentiable cell state. With s_t the top decoder state:

    none:           logits_t = s_t W_y + b_y
    bahdanau:       e_tj = vᵀ tanh(s_t W_q + h_j W_k)         (additive, scored with the current state)
    luong_dot:      e_tj = s_t · h_j
    luong_general:  e_tj = s_t W_a h_jᵀ
    a_t = softmax_j(e_tj) over valid source steps (padding: e = −∞, a = 0), c_t = Σ_j a_tj h_j,
    h̃_t = tanh([s_t; c_t] W_c),  logits_t = h̃_t W_y + b_y.

Luong attention uses input feeding: the decoder's input at step t is [embed(y_{t-1}); h̃_{t-1}].
Without input feeding and with every input the target's (teacher forcing), the decoder's inputs
are known in advance: the whole sequence goes through each layer in one call, attention after.
Otherwise (input feeding, scheduled sampling, inference) the decoder runs one step at a time:
T = 1 calls of the same layers carrying the state, ∂L/∂s_t read off each step's state tensor.
"""
import math
from collections import namedtuple

import torch
from torch import nn

from ..init import orthogonal
from ..model import GATES, RECURRENT, Recurrent

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
        feed = H if self.feeding else 0
        self.dec = nn.ModuleList(Recurrent(cell, n_in + feed if l == 0 else H, H, activation) for l in range(n_layers))
        if attention == "bahdanau":
            self.W_q, self.W_k, self.v = (nn.Parameter(torch.zeros(*s)) for s in ((H, H), (E, H), (H,)))
        elif attention == "luong_general":
            self.W_a = nn.Parameter(torch.zeros(E, H))
        if attention != "none":
            self.W_c = nn.Parameter(torch.zeros(H + E, H))
        self.W_y = nn.Parameter(torch.zeros(H, tgt_vocab))
        self.b_y = nn.Parameter(torch.zeros(tgt_vocab))
        self.enc_record, self.dec_record = [], []

    # -- encoder ------------------------------------------------------------------------------
    def encode(self, src, lengths):
        """src (T_s, B) ids → Memory and the decoder's initial states (a list of per-layer tuples)."""
        T, self.src_len = src.shape[0], lengths
        x = self.src_embedding(src)
        back = reversal(lengths, T) if self.bidirectional else None
        self.enc_record, initial = [], []
        for l in range(self.n_layers):
            hf, gates, _ = self.enc_fwd[l](x)
            self.enc_record.append((f"enc{l}f" if self.bidirectional else f"enc{l}", self.enc_fwd[l], hf, gates, None))
            last = at_last(hf, lengths)
            if self.bidirectional:
                hb_rev, gates_rev, _ = self.enc_bwd[l](gather_time(x, back))
                hb = gather_time(hb_rev, back)
                self.enc_record.append((f"enc{l}b", self.enc_bwd[l], hb,
                                        {k: gather_time(v, back) for k, v in gates_rev.items()}, back))
                last = torch.tanh(torch.cat([last, at_last(hb_rev, lengths)], dim=1) @ self.W_b[l] + self.b_b[l])
                hf = torch.cat([hf, hb], dim=2)
            initial.append((last, torch.zeros_like(last)) if self.cell in ("lstm", "lnlstm") else (last,))
            x = hf
        mask = torch.arange(T, device=src.device)[:, None] < lengths[None, :]
        keys = {"bahdanau": lambda: x @ self.W_k, "luong_general": lambda: x @ self.W_a}.get(self.attention, lambda: x)()
        return Memory(x, keys, mask), initial

    # -- attention and output -----------------------------------------------------------------
    def attend(self, s, memory):
        """s (T_d, B, H) → logits (T_d, B, V) and attention weights (T_d, B, T_s) (None without)."""
        if self.attention == "none":
            return s @ self.W_y + self.b_y, None
        if self.attention == "bahdanau":
            keys = memory.keys.transpose(0, 1)                               # (B, T_s, H)
            scores = torch.tanh((s @ self.W_q)[:, :, None, :] + keys[None]) @ self.v
        else:
            scores = torch.einsum("dbh,sbh->dbs", s, memory.keys)
        scores = scores.masked_fill(~memory.mask.t()[None], -math.inf)
        weights = torch.softmax(scores, dim=-1)
        context = torch.einsum("dbs,sbe->dbe", weights, memory.values)
        out = torch.tanh(torch.cat([s, context], dim=-1) @ self.W_c)        # h̃_t
        self.attentional = out
        return out @ self.W_y + self.b_y, weights

    # -- decoder --------------------------------------------------------------------------------
    def step(self, tokens, state, memory):
        """One decoder step for every row: tokens (B,), state (per-layer tuples, h̃_{t-1}) →
        logits (B, V), the new state, attention weights (B, T_s) or None, and the layers' h_t."""
        layers, feed = state
        x = self.tgt_embedding(tokens)
        if self.feeding:
            x = torch.cat([x, feed], dim=1)
        new, outs = [], []
        for layer, st in zip(self.dec, layers):
            hs, gates, final = layer(x[None], st)
            h = hs[0]
            new.append((h, final[1]) if self.cell in ("lstm", "lnlstm") else (h,))   # c_t carries no gradient
            outs.append((h, {k: v[0] for k, v in gates.items()}))
            x = h
        logits, weights = self.attend(x[None], memory)
        feed = self.attentional[0] if self.feeding else None
        return logits[0], (new, feed), None if weights is None else weights[0], outs

    def start(self, initial, batch, like):
        return initial, (like.new_zeros(batch, self.n_hidden) if self.feeding else None)

    def forward(self, src, src_len, tgt_in, tgt_len, teacher=None):
        """Teacher-forced (or scheduled-sampling) decoding of a batch. `teacher` (T_d, B) bool: feed
        the target token at step t (True) or the model's own previous argmax (False); None: all
        target tokens. Returns Output(logits (T_d, B, V), top h (T_d, B, H), its gates, weights)."""
        memory, initial = self.encode(src, src_len)
        self.tgt_len = tgt_len
        if not self.feeding and (teacher is None or bool(teacher.all())):
            x = self.tgt_embedding(tgt_in)
            self.dec_record = []
            for layer, st in zip(self.dec, initial):
                x, gates, _ = layer(x, st)
                self.dec_record.append((layer, x, gates, None))
            logits, weights = self.attend(x, memory)
            return Output(logits, x, gates, weights)
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
        from ..sources import Part
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
        return self.enc_fwd[0].weights()[RECURRENT[self.cell]]


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
    layers, feed = state
    return [tuple(s[index] for s in st) for st in layers], None if feed is None else feed[index]


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
    memory = Memory(memory.values[:, rows], memory.keys[:, rows], memory.mask[:, rows])
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
