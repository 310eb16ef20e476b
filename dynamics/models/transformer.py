"""A mini-Transformer (pre-LN; causal, or an encoder for classification), in the spirit of nanoGPT's model.py, with the harness's
diagnostics: per position, ‖∂L/∂x_t‖ of the residual stream after each block (the Transformer's
g_t, read by the same probes as ∂L/∂h_t of a recurrent layer), the attention entropy of every
head, the gradient norm of every block, and attention maps of a fixed example.

    x_0 = E(input) + P(position)
    x_l = x'_l + MLP(LN(x'_l)),  x'_l = x_{l-1} + Attention(LN(x_{l-1}))      l = 1..n_layers
    logits = LN(x_L) W_out + b_out          (every step, or the last step only, as the head says)

Inputs and outputs are time-major like the recurrent models: x (T, B, n_in) floats or (T, B)
token ids; inside, the blocks work on (B, T, d_model) as usual for attention.
"""
import math

import torch
from torch import nn

from .dropout import Dropout
from .recurrent import Output
from .part import Part

POSITIONS = ("learned", "sinusoidal")


class SelfAttention(nn.Module):
    """Multi-head causal self-attention; keeps the last forward's attention weights (detached)."""

    def __init__(self, d_model, n_heads, dropout):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.drop = Dropout(dropout)
        self.weights = None          # (B, heads, T, T) of the last forward

    def forward(self, x, padding=None):
        """x (B, T, C); `padding` (B, T) bool marks padded steps of an encoder's batch: with it
        every position sees every valid one (no causal mask), without it position t sees 0..t."""
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
                   for t in self.qkv(x).split(C, dim=2))             # (B, heads, T, head size)
        scores = q @ k.transpose(-2, -1) / math.sqrt(k.shape[-1])
        if padding is None:
            hidden = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)   # the future
        else:
            hidden = padding[:, None, None, :]                                     # padded keys
        att = scores.masked_fill(hidden, -math.inf).softmax(dim=-1)
        self.weights = att.detach()
        y = (self.drop(att) @ v).transpose(1, 2).reshape(B, T, C)
        return self.drop(self.proj(y))


class Block(nn.Module):
    def __init__(self, d_model, n_heads, dropout):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, n_heads, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model),
                                 Dropout(dropout))

    def forward(self, x, padding=None):
        x = x + self.attn(self.ln1(x), padding)
        return x + self.mlp(self.ln2(x))


def sinusoidal(n, d):
    """The fixed positions of Vaswani et al. (2017): sin and cos at geometric frequencies."""
    position = torch.arange(n, dtype=torch.float64)[:, None]
    frequency = torch.exp(torch.arange(0, d, 2, dtype=torch.float64) * (-math.log(10000.0) / d))
    table = torch.zeros(n, d, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, :d // 2]
    return table


class Transformer(nn.Module):
    """Embedding (ids) or input projection (floats) + positions → blocks → LN → head.

    `block_size` is the longest sequence it reads. As a language model it carries no state in
    training (every window is a full block); in evaluation `final_state` holds the last
    block_size − 1 ids, so that generation one token at a time sees its context."""

    cell = "transformer"

    def __init__(self, n_in, n_out, head, d_model, n_heads, n_layers, block_size, vocab_size=None,
                 dropout=0.0, positions="learned", tie_weights=False):
        super().__init__()
        self.head, self.block_size, self.n_heads = head, block_size, n_heads
        self.embed = nn.Embedding(vocab_size, d_model) if vocab_size else nn.Linear(n_in, d_model)
        if positions == "learned":
            self.pos = nn.Parameter(torch.zeros(block_size, d_model))
        else:
            self.register_buffer("pos", sinusoidal(block_size, d_model).float(), persistent=False)
        self.drop = Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, dropout) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, n_out)
        if tie_weights:
            self.out.weight = self.embed.weight     # (vocab, d_model) both
        self.residuals, self.grads = [], [None] * n_layers
        self.final_state, self.layer_outputs = None, []

    def forward(self, x, state=None):
        """x (T, B, n_in) or (T, B) ids; `state`: earlier ids (T0, B) read as context only."""
        n_new = x.shape[0]
        if state is not None and n_new < self.block_size:
            x = torch.cat([state[-(self.block_size - n_new):], x])
        x = x[-self.block_size:]
        T = x.shape[0]
        if not self.training and x.dtype == torch.long:
            self.final_state = x[-(self.block_size - 1):] if self.block_size > 1 else None
        else:
            self.final_state = None
        h = self.drop(self.embed(x.transpose(0, 1)) + self.pos[:T].to(dtype=self.out.weight.dtype))
        self.residuals = []
        for l, block in enumerate(self.blocks):
            h = block(h)
            if h.requires_grad:   # ∂L/∂x_l by position, without retaining any other grad
                h.register_hook(self._keep_grad(l))
            self.residuals.append(h)
        self.layer_outputs = [(r.detach().transpose(0, 1), {}) for r in self.residuals]
        top = self.ln_f(h)
        top = top[:, -n_new:] if self.head == "softmax" else top[:, -1]
        logits = self.out(top)
        if self.head == "softmax":
            logits = logits.transpose(0, 1)          # (T, B, n_out), time-major
        return Output(logits, self.layer_outputs[-1][0], {})

    def _keep_grad(self, l):
        def hook(grad):
            self.grads[l] = grad.detach().transpose(0, 1)   # (T, B, d_model)
        return hook

    @property
    def hidden_grad(self):
        """∂L/∂x_t of the top block's residual stream, (T, B, d_model), after backward."""
        return self.grads[-1]

    def parts(self):
        """One probe part per block ("block0", …), the top block last: hidden is the residual
        stream after the block, grad its ∂L/∂x_t."""
        outputs = self.layer_outputs or [(None, {})] * len(self.blocks)
        return [Part(f"block{l}", "transformer", None, hidden, {}, self.grads[l])
                for l, (hidden, _) in enumerate(outputs)]

    def weights(self):
        """Every parameter by its module path (views)."""
        return {name: p.detach() for name, p in self.named_parameters()}

    # -- per-check diagnostics beyond the parts: declared here, recorded by the trainer ----------
    def check_arrays(self, example):
        L, heads = len(self.blocks), self.n_heads
        T = min(example.shape[0], self.block_size)
        return {"attn_entropy": ((L, heads), "f8"), "block_grad_norm": ((L,), "f8"),
                "attn_map": ((L, heads, T, T), "f4")}

    @torch.no_grad()
    def check_values(self, example):
        """attn_entropy: mean entropy (nats) of the attention rows of each head, over the last
        training batch's positions and sequences (position t spreads over t + 1 keys: at most
        ln(t + 1)); block_grad_norm: ‖∂L/∂θ‖ of each block's parameters at the last update, as
        applied (after clipping); attn_map: the attention of every head on the fixed `example`."""
        entropy = [(-(b.attn.weights * torch.log(b.attn.weights.clamp_min(1e-30))).sum(-1)).mean(dim=(0, 2))
                   for b in self.blocks]
        norms = [torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in b.parameters() if p.grad is not None]))
                 for b in self.blocks]
        kept = (self.training, self.final_state, self.layer_outputs)
        self.eval()
        self(example)
        maps = [b.attn.weights[0] for b in self.blocks]
        self.train(kept[0])
        self.final_state, self.layer_outputs = kept[1], kept[2]
        return {"attn_entropy": torch.stack(entropy).double().cpu().numpy(),
                "block_grad_norm": torch.stack(norms).double().cpu().numpy(),
                "attn_map": torch.stack(maps).float().cpu().numpy()}


class Encoder(Transformer):
    """A Transformer encoder for sequence classification: a right-padded batch (ids (T, B),
    lengths (B,); dynamics.models.classifier.Batch) → blocks that attend over all valid steps
    (padded keys masked) → LN → the classifier's pooling over the valid steps → logits (B, K).
    Its parts carry the lengths and are aligned on each sequence's last token, as the
    recurrent classifier's."""

    def __init__(self, vocab_size, n_classes, d_model, n_heads, n_layers, block_size, dropout=0.0,
                 positions="learned", pooling="last"):
        super().__init__(None, n_classes, "last_softmax", d_model, n_heads, n_layers, block_size, vocab_size,
                         dropout, positions)
        self.pooling = pooling
        self.query = nn.Parameter(torch.zeros(d_model)) if pooling == "attention" else None
        self.attention = None      # (T, B) pooling weights of the last forward (attention pooling)
        self.lengths = None

    def forward(self, x):
        from .pooling import pool
        ids, lengths = x.ids, x.lengths
        T = ids.shape[0]
        if T > self.block_size:
            raise ValueError(f"a batch of {T} steps is longer than the encoder's block_size={self.block_size}")
        padding = torch.arange(T, device=ids.device)[None, :] >= lengths[:, None]     # (B, T)
        h = self.drop(self.embed(ids.t()) + self.pos[:T])
        self.residuals, self.lengths = [], lengths
        for l, block in enumerate(self.blocks):
            h = block(h, padding)
            if h.requires_grad:
                h.register_hook(self._keep_grad(l))
            self.residuals.append(h)
        self.layer_outputs = [(r.detach().transpose(0, 1), {}) for r in self.residuals]
        pooled, weights = pool(self.ln_f(h).transpose(0, 1), lengths, self.pooling, self.query)
        self.attention = None if weights is None else weights.detach()
        return Output(self.out(pooled), self.layer_outputs[-1][0], {})

    def parts(self):
        return [p._replace(lengths=self.lengths, align="end") for p in super().parts()]


def initialise(model, generator, n_layers=None):
    """nanoGPT's: weights N(0, 0.02²), the residual projections N(0, (0.02/√(2L))²), biases 0,
    layer norms 1 and 0; learned positions N(0, 0.02²). L: `n_layers`, or the model's blocks."""
    L = n_layers or len(model.blocks)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln" in name or name.startswith("ln_"):
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                std = 0.02 / math.sqrt(2 * L) if name.endswith(("proj.weight", "mlp.2.weight")) else 0.02
                p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64) * std)


def build_encoder(c, vocab_size, n_classes, block_size, device=None, dtype=torch.float32):
    """The classification Encoder of a run's config `c`, its weights drawn from the run's seed."""
    model = Encoder(vocab_size, n_classes, c.d_model, c.n_heads, c.n_layers, block_size, c.dropout, c.positions,
                    c.pooling)
    initialise(model, torch.Generator().manual_seed(c.seed))
    if model.query is not None:
        with torch.no_grad():
            model.query.zero_()    # uniform pooling weights at the start, as the recurrent classifier's
    return model.to(device=device, dtype=dtype)


def build_transformer(c, n_in, n_out, head, block_size, vocab_size=None, device=None, dtype=torch.float32):
    """The Transformer of a run's config `c`, its weights drawn from the run's seed."""
    model = Transformer(n_in, n_out, head, c.d_model, c.n_heads, c.n_layers, block_size, vocab_size,
                        c.dropout, c.positions, c.tie_weights)
    initialise(model, torch.Generator().manual_seed(c.seed))
    return model.to(device=device, dtype=dtype)
