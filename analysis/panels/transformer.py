"""Panels and figures of a Transformer run (cell "transformer"): the attention entropy of every
head and the gradient norm of every block over training (dashboard panels), and the attention
maps of the fixed example at the last check (a figure of its own, <name>_attention.png)."""
import numpy as np
from matplotlib import cm, colors

from .. import stats
from ..canvas import BLOCK_MARKERS, Panel, check_label, new_figure, title, x_limits


def _has(name):
    return lambda snap: name in snap.arrays and len(snap.arrays[name]) > 0


def _block_colors(n):
    return cm.viridis(np.linspace(0, 0.85, max(n, 1)))


# the Transformer encoder–decoder's three kinds of attention (dynamics/models/transformer_seq2seq.py)
SEQ2SEQ_ENTROPY = {"enc_attn_entropy": "Encoder self-attention entropy",
                   "dec_attn_entropy": "Decoder self-attention entropy (causal)",
                   "cross_attn_entropy": "Cross-attention entropy (decoder → source)"}


def draw_attn_entropy(ax, snap, name="attn_entropy", what="Attention entropy"):
    """Mean attention entropy (nats) per head over checks: one colour per block, one line per head."""
    ent = snap.arrays[name]                        # (K, blocks, heads)
    x = snap.check_x[:len(ent)]
    blocks = _block_colors(ent.shape[1])
    for l in range(ent.shape[1]):          # a marker per block: the blocks' colours are shades of one map
        for h in range(ent.shape[2]):
            ax.plot(x, ent[:, l, h], color=blocks[l], lw=1.2, alpha=0.85, ms=4,
                    marker=BLOCK_MARKERS[l % len(BLOCK_MARKERS)], label=f"block {l}" if h == 0 else None)
    x_limits(ax, snap, x)
    ax.set_xlabel(check_label(snap))
    ax.set_ylabel("attention entropy (nats, mean over\nvalid positions and sequences)")
    ax.set_title(f"{what}, {ent.shape[2]} heads per block", fontsize="medium")
    ax.set_ylim(bottom=0)
    ax.legend(loc="best", fontsize="small")


def seq2seq_entropy_drawer(name):
    return lambda ax, snap: draw_attn_entropy(ax, snap, name, SEQ2SEQ_ENTROPY[name])


def draw_block_grad_norm(ax, snap):
    """‖∂L/∂θ‖ per block over checks; an encoder–decoder's blocks are its parts, encoder first."""
    norms = snap.arrays["block_grad_norm"]          # (K, blocks)
    x = snap.check_x[:len(norms)]
    n = norms.shape[1]
    if "enc_attn_entropy" in snap.arrays:           # encoder blocks in blues, decoder blocks in oranges
        half = n // 2
        names = [f"encoder block {l}" for l in range(half)] + [f"decoder block {l}" for l in range(half)]
        shades = np.linspace(0.45, 0.9, max(half, 1))
        tints = [cm.Blues(v) for v in shades] + [cm.Oranges(v) for v in shades]
    else:
        names, tints = [f"block {l}" for l in range(n)], _block_colors(n)
    for l in range(n):
        ax.plot(x, np.where(norms[:, l] > 0, norms[:, l], np.nan), color=tints[l], lw=1.4, ms=4,
                marker=BLOCK_MARKERS[l % len(BLOCK_MARKERS)], label=names[l])
    ax.set_yscale("log")
    x_limits(ax, snap, x)
    ax.set_xlabel(check_label(snap))
    ax.set_ylabel(r"$\|\partial L/\partial\theta_{block}\|_2$ (update of the check)")
    ax.set_title("Gradient norm per block")
    ax.legend(loc="best", fontsize="small")


def figure_attention(snap):
    """Attention maps (query position × key position) of every head and block on the fixed
    example at the last check; None when the run has none."""
    maps = snap.arrays.get("attn_map")
    k = None if maps is None else stats.last_row(maps.reshape(len(maps), -1))
    if k is None:
        return None
    maps = maps[k]                                   # (blocks, heads, T, T)
    L, H = maps.shape[:2]
    width, height = 2.6 * H + 1.2, 2.6 * L + 1.3
    fig = new_figure(width, height)
    axes = np.atleast_2d(fig.subplots(L, H, squeeze=False))
    for l in range(L):
        for h in range(H):
            ax = axes[l, h]
            im = ax.imshow(maps[l, h], cmap="magma", norm=colors.PowerNorm(0.5, vmin=0, vmax=1),
                           interpolation="nearest")
            ax.set_title(f"block {l}, head {h}", fontsize="small")
            if l == L - 1:
                ax.set_xlabel("key position")
            if h == 0:
                ax.set_ylabel("query position")
    fig.colorbar(im, ax=axes, shrink=0.8, label="attention weight (square-root scale)")
    at = int(snap.check_x[k]) if len(snap.check_x) > k else k
    fig.suptitle(title(snap, f"attention on the fixed example at update {at}", width), fontsize="medium")
    return fig


PANELS = [
    Panel("attn_entropy", _has("attn_entropy"), draw_attn_entropy),
    *(Panel(name, _has(name), seq2seq_entropy_drawer(name)) for name in SEQ2SEQ_ENTROPY),
    Panel("block_grad_norm", _has("block_grad_norm"), draw_block_grad_norm),
]

FIGURES = {"attention": ("attention entropy and gradient per block",
                         ["attn_entropy", *SEQ2SEQ_ENTROPY, "block_grad_norm"])}
