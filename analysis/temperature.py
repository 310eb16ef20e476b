"""The figure of `dynamics temperature`: diversity and coherence of a text run's samples against
the sampling temperature (the table of dynamics/temperature.py)."""
from .canvas import new_figure, save


def plot_table(table, path, title):
    t = [r["temperature"] for r in table]
    fig = new_figure(9, 3.6)
    left, right = fig.subplots(1, 2)
    for key, label, marker in (("distinct_1", "distinct words (distinct-1)", "o"),
                               ("distinct_2", "distinct word pairs (distinct-2)", "s")):
        left.plot(t, [100 * r[key] for r in table], marker=marker, label=label)
    left.set(xlabel="sampling temperature", ylabel="distinct n-grams (% of all)", title="Diversity")
    left.legend(fontsize=8)
    right.plot(t, [r["own_loss"] for r in table], marker="o", color="#d62728")
    right.set(xlabel="sampling temperature", ylabel="model's own loss on its samples (nats/char)",
              title="Coherence (lower: more expected)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.set_xticks(t)
    fig.suptitle(title, fontsize=10)
    save(fig, path, dpi=110)
