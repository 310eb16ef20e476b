"""A Transformer encoder–decoder (pre-LN) for the seq2seq tasks, from the blocks of
dynamics/models/transformer.py, with the interface of the recurrent encoder–decoder of
dynamics/models/seq2seq.py (encode, start, step, forward, parts), so that the seq2seq source,
greedy decoding, batched beam search and `dynamics translate` run it unchanged.

    encoder   x_0 = E_src(src) + P_src(j)
              x_l = x'_l + MLP(LN(x'_l)),  x'_l = x_{l-1} + SelfAttn(LN(x_{l-1}))    padded source keys masked
              m = LN(x_L)                                                           the memory
    decoder   y_0 = E_tgt(tgt_in) + P_tgt(t)
              y'_l  = y_{l-1} + CausalSelfAttn(LN(y_{l-1}))                         step t sees steps 0..t
              y''_l = y'_l + CrossAttn(LN(y'_l), m)                                 queries y, keys and values m
              y_l   = y''_l + MLP(LN(y''_l))
    logits_t = LN(y_L,t) W_out + b_out

Decoding one step at a time, the decoder's state is a cache of the keys and values of its
self-attention at the steps so far, per layer ((B, heads, t, head size) each): reordering it by
beam index is indexing its first axis, as for a recurrent state. The cross-attention keys and
values of the memory are projected once per source (Memory.keys, (T_s, B, layers, 2, d_model)).

Teacher forcing below 1 (scheduled sampling) runs in two passes (Mihaylova & Liu, 2019): a
teacher-forced pass without gradient gives the model's argmax at every step; where the coin says
so, the input at step t is that argmax of step t − 1 instead of the target token; the second pass,
with gradient, reads the mixed inputs. A Transformer trains all steps at once, so its own tokens
come from the teacher-forced prefix, not from its own earlier choices as in the recurrent decoder.
"""
import math

import torch
from torch import nn

from tasks.errors import InputError

from .dropout import Dropout
from .seq2seq import Memory, Output
from .transformer import Block, SelfAttention, initialise, sinusoidal
from .part import Part


def split_heads(x, n_heads):
    """(B, T, C) → (B, heads, T, C / heads)."""
    B, T, C = x.shape
    return x.view(B, T, n_heads, C // n_heads).transpose(1, 2)


def merge_heads(y):
    """(B, heads, T, head size) → (B, T, C)."""
    B, H, T, D = y.shape
    return y.transpose(1, 2).reshape(B, T, H * D)


def attend(q, k, v, hidden, drop):
    """softmax(q kᵀ / √d) v with the `hidden` keys at −∞; the weights (B, heads, T, S) as well."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(k.shape[-1])
    att = scores.masked_fill(hidden, -math.inf).softmax(dim=-1)
    return drop(att) @ v, att


class CachedSelfAttention(SelfAttention):
    """Causal self-attention that also runs one step at a time: the keys and values of earlier
    steps come from `cache` ((B, heads, t0, head size) each) and the new ones are appended."""

    def forward(self, x, cache=None):
        B, T, C = x.shape
        q, k, v = (split_heads(t, self.n_heads) for t in self.qkv(x).split(C, dim=2))
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        S = k.shape[2]                  # new step i is step S − T + i: it sees keys 0..S − T + i
        hidden = torch.ones(T, S, dtype=torch.bool, device=x.device).triu(S - T + 1)
        y, att = attend(q, k, v, hidden, self.drop)
        self.weights = att.detach()
        return self.drop(self.proj(merge_heads(y))), (k, v)


class CrossAttention(nn.Module):
    """Decoder queries over the memory; `keys_values` projects the memory once per source."""

    def __init__(self, d_model, n_heads, dropout):
        super().__init__()
        self.n_heads = n_heads
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.drop = Dropout(dropout)
        self.weights = None             # (B, heads, T, S) of the last forward

    def keys_values(self, memory):
        """memory (B, S, C) → (B, S, 2, C): keys and values."""
        B, S, C = memory.shape
        return self.kv(memory).view(B, S, 2, C)

    def forward(self, x, keys_values, padding):
        """x (B, T, C), keys_values (B, S, 2, C), padding (B, S) True at padded source steps."""
        q = split_heads(self.q(x), self.n_heads)
        k, v = (split_heads(keys_values[:, :, i], self.n_heads) for i in (0, 1))
        y, att = attend(q, k, v, padding[:, None, None, :], self.drop)
        self.weights = att.detach()
        return self.drop(self.proj(merge_heads(y)))


class DecoderBlock(nn.Module):
    def __init__(self, d_model, n_heads, dropout):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CachedSelfAttention(d_model, n_heads, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.cross = CrossAttention(d_model, n_heads, dropout)
        self.ln3 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model),
                                 Dropout(dropout))

    def forward(self, y, keys_values, padding, cache=None):
        a, cache = self.attn(self.ln1(y), cache)
        y = y + a
        y = y + self.cross(self.ln2(y), keys_values, padding)
        return y + self.mlp(self.ln3(y)), cache


class TransformerSeq2Seq(nn.Module):
    """`src_size` and `tgt_size` are the longest source and the most decoder steps (the position
    tables' lengths)."""

    cell = "transformer"

    def __init__(self, src_vocab, tgt_vocab, d_model, n_heads, n_layers, src_size, tgt_size, dropout=0.0,
                 positions="learned"):
        super().__init__()
        self.n_heads, self.n_layers, self.d_model = n_heads, n_layers, d_model
        self.src_size, self.tgt_size = src_size, tgt_size
        self.src_embed = nn.Embedding(src_vocab, d_model)
        self.tgt_embed = nn.Embedding(tgt_vocab, d_model)
        if positions == "learned":
            self.src_pos = nn.Parameter(torch.zeros(src_size, d_model))
            self.tgt_pos = nn.Parameter(torch.zeros(tgt_size, d_model))
        else:
            self.register_buffer("src_pos", sinusoidal(src_size, d_model).float(), persistent=False)
            self.register_buffer("tgt_pos", sinusoidal(tgt_size, d_model).float(), persistent=False)
        self.drop = Dropout(dropout)
        self.enc_blocks = nn.ModuleList(Block(d_model, n_heads, dropout) for _ in range(n_layers))
        self.ln_enc = nn.LayerNorm(d_model)
        self.dec_blocks = nn.ModuleList(DecoderBlock(d_model, n_heads, dropout) for _ in range(n_layers))
        self.ln_dec = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, tgt_vocab)
        # what parts() reads: residual streams after each block (T, B, C), their ∂L/∂x by hooks
        self.enc_record, self.dec_record, self.grads = [], [], {}
        self.src_len = self.tgt_len = None

    # -- encoder ------------------------------------------------------------------------------
    def encode(self, src, lengths):
        """src (T_s, B) ids → Memory(values m (T_s, B, C), each decoder layer's cross-attention
        keys and values (T_s, B, layers, 2, C), valid (T_s, B)) and the decoder's initial state:
        an empty self-attention cache per layer."""
        T, B = src.shape
        if T > self.src_size:
            raise InputError(f"a source of {T} characters is not allowed: this Transformer reads at most "
                             f"{self.src_size} (its source positions)")
        self.src_len = lengths
        padding = torch.arange(T, device=src.device)[None, :] >= lengths[:, None]          # (B, T)
        x = self.drop(self.src_embed(src.t()) + self.src_pos[:T].to(self.out.weight.dtype))
        self.enc_record = []
        for l, block in enumerate(self.enc_blocks):
            x = block(x, padding)
            self.enc_record.append(self._record(x, f"enc{l}"))
        m = self.ln_enc(x)
        kv = torch.stack([b.cross.keys_values(m) for b in self.dec_blocks], dim=2)        # (B, T, L, 2, C)
        empty = m.new_zeros(B, self.n_heads, 0, self.d_model // self.n_heads)
        memory = Memory(m.transpose(0, 1), kv.transpose(0, 1), ~padding.t())
        return memory, [(empty, empty)] * self.n_layers

    def _record(self, x, name):
        """Keep the residual stream x (B, T, C) for the probes and hook its ∂L/∂x."""
        if x.requires_grad:
            x.register_hook(lambda g: self.grads.__setitem__(name, g.detach().transpose(0, 1)))
        return x.detach().transpose(0, 1)

    # -- decoder --------------------------------------------------------------------------------
    def decode(self, tgt_in, memory, caches=None, record=False):
        """tgt_in (T, B) ids at steps t0.. (t0 the caches' length) → logits (T, B, V), the top
        layer's cross-attention weights averaged over heads (T, B, T_s), the top residual stream
        (B, T, C) and the caches with these steps appended."""
        T = tgt_in.shape[0]
        t0 = 0 if caches is None else caches[0][0].shape[2]
        kv, padding = memory.keys.transpose(0, 1), ~memory.mask.t()
        y = self.drop(self.tgt_embed(tgt_in.t()) + self.tgt_pos[t0:t0 + T].to(self.out.weight.dtype))
        new = []
        for l, block in enumerate(self.dec_blocks):
            y, cache = block(y, kv[:, :, l], padding, None if caches is None else caches[l])
            new.append(cache)
            if record:
                self.dec_record.append(self._record(y, f"dec{l}"))
        logits = self.out(self.ln_dec(y)).transpose(0, 1)
        weights = self.dec_blocks[-1].cross.weights.mean(dim=1).transpose(0, 1)
        return logits, weights, y, new

    def start(self, initial, batch, like):
        return initial, None

    def step(self, tokens, state, memory):
        """One decoder step for every row: tokens (B,) → logits (B, V), the state with this
        step's keys and values appended, the top layer's cross-attention (B, T_s)."""
        caches, _ = state
        if caches[0][0].shape[2] >= self.tgt_size:
            raise ValueError(f"decoding beyond the {self.tgt_size} target positions")
        logits, weights, _, caches = self.decode(tokens[None], memory, caches)
        return logits[0], (caches, None), weights[0], []

    def forward(self, src, src_len, tgt_in, tgt_len, teacher=None):
        """Teacher-forced decoding of a batch (two passes where `teacher` (T_d, B) bool says to
        feed the model's own argmax at some steps). Returns Output(logits (T_d, B, V), the top
        residual stream (T_d, B, C), no gates, top cross-attention (T_d, B, T_s))."""
        memory, _ = self.encode(src, src_len)
        self.tgt_len = tgt_len
        if teacher is not None and not bool(teacher.all()):
            with torch.no_grad():
                own = self.decode(tgt_in, memory)[0].argmax(dim=-1)              # step t's choice
            tgt_in = torch.cat([tgt_in[:1], torch.where(teacher[1:], tgt_in[1:], own[:-1])])
        self.dec_record = []
        logits, weights, y, _ = self.decode(tgt_in, memory, record=True)
        return Output(logits, y.transpose(0, 1), {}, weights)

    # -- what the trainer reads -----------------------------------------------------------------
    def parts(self):
        """One part per block, encoder ("enc0", …) then decoder ("dec0", …, the top one last):
        hidden is the residual stream after the block, grad its ∂L/∂x_t of the last backward."""
        parts = []
        for prefix, record, lengths in (("enc", self.enc_record, self.src_len), ("dec", self.dec_record, self.tgt_len)):
            for l in range(self.n_layers):
                name = f"{prefix}{l}"
                hidden = record[l] if record else None
                parts.append(Part(name, "transformer", None, hidden, {}, self.grads.get(name) if record else None,
                                  lengths, "start"))
        return parts

    def weights(self):
        """Every parameter by its module path (views)."""
        return {name: p.detach() for name, p in self.named_parameters()}

    # -- per-check diagnostics beyond the parts: declared here, recorded by the trainer ----------
    def check_arrays(self, example):
        L, H = self.n_layers, self.n_heads
        return {"enc_attn_entropy": ((L, H), "f8"), "dec_attn_entropy": ((L, H), "f8"),
                "cross_attn_entropy": ((L, H), "f8"), "block_grad_norm": ((2 * L,), "f8")}

    @torch.no_grad()
    def check_values(self, example):
        """Of the last training batch: the mean entropy (nats) of the attention rows of each head
        over the valid query steps of every sequence — encoder self-attention (step j spreads
        over the source's n valid steps: at most ln n), decoder self-attention (step t over
        t + 1: at most ln(t + 1)) and cross-attention (at most ln n); block_grad_norm: ‖∂L/∂θ‖
        of each block's parameters, encoder blocks then decoder blocks, as applied (after
        clipping). `example` is not read: the cross-attention maps are the source's."""
        def entropy(weights, lengths):                    # (B, heads, T, S), lengths (B,) → (heads,)
            rows = -(weights * torch.log(weights.clamp_min(1e-30))).sum(-1)
            valid = (torch.arange(rows.shape[-1], device=rows.device)[None, :] < lengths[:, None]).to(rows.dtype)
            return (rows * valid[:, None]).sum(dim=(0, 2)) / valid.sum()
        src, tgt = self.src_len, self.tgt_len
        out = {"enc_attn_entropy": [entropy(b.attn.weights, src) for b in self.enc_blocks],
               "dec_attn_entropy": [entropy(b.attn.weights, tgt) for b in self.dec_blocks],
               "cross_attn_entropy": [entropy(b.cross.weights, tgt) for b in self.dec_blocks],
               "block_grad_norm": [torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in b.parameters()
                                                                         if p.grad is not None]))
                                   for b in [*self.enc_blocks, *self.dec_blocks]]}
        return {k: torch.stack(v).double().cpu().numpy() for k, v in out.items()}


def validate(c):
    """What a Transformer seq2seq run refuses beyond the family's checks."""
    from tasks.errors import bad_value
    if not 1 <= c.n_layers <= 6:
        raise bad_value("n_layers", c.n_layers, "1 to 6 for a transformer on a seq2seq task")


def build(c, task, max_steps, device=None, dtype=torch.float32):
    """The model of a run's config `c` for a Seq2SeqTask, its weights drawn from the run's seed
    (nanoGPT's initialisation, dynamics.models.transformer.initialise); the decoder's positions
    cover `max_steps`, as far as decoding may run."""
    model = TransformerSeq2Seq(len(task.source_vocab), len(task.target_vocab), c.d_model, c.n_heads, c.n_layers,
                               task.longest_source(), max_steps, c.dropout, c.positions)
    initialise(model, torch.Generator().manual_seed(c.seed), n_layers=c.n_layers)
    return model.to(device=device, dtype=dtype)
