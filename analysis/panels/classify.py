"""Panels of classification runs (family `classify`): the confusion matrix, per-class recall over
training, and attention weights over the tokens of fixed validation examples. (A classifier's
key config is in canvas.config_parts; its g_t, end-aligned, is labelled by canvas.time_label.)"""
import numpy as np
from matplotlib import cm

from ..canvas import Panel, check_label, percent_axis, x_limits


def _classes(snap, K):
    names = snap.static.get("classes")
    return [str(c) for c in names] if names is not None else [f"class {k}" for k in range(K)]


def _last(snap, name):
    rows = snap.arrays.get(name)
    return None if rows is None or len(rows) == 0 else rows[-1]


CLASS_STYLES = ("-", "--", "-.", ":")
CLASS_MARKERS = ("o", "s", "^", "v", "D")


def _has_confusion(snap):
    return _last(snap, "confusion") is not None


def draw_confusion(ax, snap):
    C = np.asarray(_last(snap, "confusion"), dtype=float)
    K = len(C)
    share = C / np.maximum(C.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(K):
        for j in range(K):
            ax.text(j, i, f"{int(C[i, j])}", ha="center", va="center", fontsize="small",
                    color="white" if share[i, j] > 0.6 else "black")
    names = _classes(snap, K)
    ax.set_xticks(range(K), names, rotation=30 if max(map(len, names)) > 5 else 0, ha="right")
    ax.set_yticks(range(K), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    cb = ax.get_figure(root=False).colorbar(image, ax=ax, pad=0.02, fraction=0.05)
    cb.set_label("share of the true class (row)")
    ax.set_title(f"Confusion, last check (counts; {int(C.sum())} validation sequences)")


def _has_recall(snap):
    rows = snap.arrays.get("recall")
    return rows is not None and len(rows) > 0


def draw_recall(ax, snap):
    recall = np.asarray(snap.arrays["recall"], dtype=float)
    x = snap.check_x[:len(recall)]
    names = _classes(snap, recall.shape[1])
    colors = cm.tab10(np.arange(len(names)) % 10)
    for k, name in enumerate(names):          # a style and a marker per class: recalls often cross
        ax.plot(x, recall[:, k], color=colors[k], lw=1.3, ls=CLASS_STYLES[k % len(CLASS_STYLES)],
                marker=CLASS_MARKERS[k % len(CLASS_MARKERS)], ms=4, markevery=max(1, len(x) // 10),
                label=f"{name}: {recall[-1, k]:.3g}%")
    f1 = snap.check.get("macro_f1")
    if f1 is not None:
        ax.plot(x, f1[:len(x)], "k--", lw=1.6, label=f"macro-F1: {f1[len(x) - 1]:.3g}%")
    percent_axis(ax)
    x_limits(ax, snap, x)
    ax.set_xlabel(check_label(snap))
    ax.set_ylabel("recall per class (%)")
    ax.legend(loc="lower right", fontsize="small", title="last check", title_fontsize="small")
    ax.set_title("Per-class recall over training")


def _has_attention(snap):
    return _last(snap, "attention") is not None and "example_tokens" in snap.static


def draw_attention(ax, snap):
    weights = np.asarray(_last(snap, "attention"), dtype=float)
    tokens = np.asarray(snap.static["example_tokens"]).astype(str)
    labels = snap.static.get("example_labels")
    n, T = weights.shape
    image = ax.imshow(np.ma.masked_invalid(weights), cmap="viridis", aspect="auto", vmin=0,
                      vmax=max(float(np.nanmax(weights)), 1e-9), interpolation="nearest")
    words = max(len(t) for t in tokens.ravel()) > 1
    size = 8                 # points, the least that reads in print; words are written upright
    for i in range(n):
        for t in range(T):
            if tokens[i, t]:
                bright = weights[i, t] > 0.6 * np.nanmax(weights)
                ax.text(t, i, tokens[i, t], ha="center", va="center", fontsize=size,
                        rotation=90 if words else 0, color="black" if bright else "white")
    names = _classes(snap, int(np.max(labels)) + 1 if labels is not None else 1)
    ylabels = [f"{names[int(labels[i])]} (#{i})" if labels is not None else f"#{i}" for i in range(n)]
    ax.set_yticks(range(n), ylabels)
    ax.set_ylabel("validation example (true class)")
    ax.set_xlabel("token position (tokens written in the cells; grey: padding)")
    ax.set_facecolor("0.85")
    cb = ax.get_figure(root=False).colorbar(image, ax=ax, pad=0.01, fraction=0.04)
    cb.set_label("attention weight")
    ax.set_title("Attention over the tokens of fixed validation examples, last check")


PANELS = [
    Panel("confusion", _has_confusion, draw_confusion),
    Panel("recall", _has_recall, draw_recall),
    Panel("attention", _has_attention, draw_attention, span=2),
]

FIGURES = {"classification": ("classification", [p.key for p in PANELS])}
